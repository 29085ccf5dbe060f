// Lets the plain-JS build scripts use the TypeScript modules in lib/: through tsx in a dev checkout
// (always the current source, no stale dist/), through the compiled dist/ in an installed package,
// which ships dist/ but neither lib/ nor tsx.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function hasTsx() {
  try {
    require.resolve('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
}

/** importLib('addon/libtorch') → the module lib/addon/libtorch.ts (dev) or dist/addon/libtorch.js (installed). */
export async function importLib(name) {
  const source = new URL(`../lib/${name}.ts`, import.meta.url);
  if (existsSync(source) && hasTsx()) {
    const { tsImport } = await import('tsx/esm/api');
    return tsImport(source.href, import.meta.url);
  }
  const compiled = new URL(`../dist/${name}.js`, import.meta.url);
  if (existsSync(compiled)) return import(compiled.href);
  throw new Error(`neither lib/${name}.ts with tsx nor dist/${name}.js is available: run \`npm run build:ts\` (tsc -p tsconfig.build.json)`);
}
