#!/usr/bin/env node
// `npm run build`: the same as `npx comeba build` (lib/cli/build.ts), usable before dist/ exists.
import { importLib } from './import-lib.mjs';

try {
  const { run } = await importLib('cli/build');
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  console.error(`comeba build: ${err.message}`);
  process.exitCode = 1;
}
