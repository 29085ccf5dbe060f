#!/usr/bin/env node
// prebuildify's --node-gyp: it runs `<this> rebuild --target=<node> --devdir=… --arch=x64 --release` and
// then takes build/Release/*.node. We answer with the cmake-js build of CMakeLists.txt (lib/cli/build.ts),
// which writes build/Release/comeba.node; an N-API build does not depend on the Node target.
import { importLib } from './import-lib.mjs';

const [command, ...flags] = process.argv.slice(2);
try {
  if (command !== 'rebuild') throw new Error(`expected prebuildify's \`rebuild\`, got '${command}'`);
  if (flags.includes('--debug')) throw new Error('debug prebuilds are not made');
  const { buildFromSource } = await importLib('cli/build');
  await buildFromSource({ verbose: false, log: (line) => console.log(line) });
} catch (err) {
  console.error(`comeba prebuild backend: ${err.message}`);
  process.exitCode = 1;
}
