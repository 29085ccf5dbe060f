#!/usr/bin/env node
// The package's `install` script. npm blocks it for consumers by default; in a clone it runs on
// `npm install` and leaves a working checkout: dist/ compiled, libtorch present (installed into the
// per-user cache when none is found), and an addon that fits it (a matching prebuild, else a source
// build). Every step says what it does; any failure ends the install with a non-zero exit.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importLib } from './import-lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const log = (line) => console.log(`comeba: ${line}`);

function newestMtime(dir) {
  return readdirSync(dir, { recursive: true })
    .filter((file) => file.endsWith('.ts'))
    .reduce((newest, file) => Math.max(newest, statSync(join(dir, file)).mtimeMs), 0);
}

// Only a checkout has lib/ and typescript; an installed package ships dist/ ready-made.
function compileTypescript() {
  const lib = join(root, 'lib');
  const dist = join(root, 'dist');
  if (!existsSync(lib)) return;
  let tsc;
  try {
    tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
  } catch {
    return;
  }
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestMtime(lib)) return;
  log('compiling lib/ to dist/ (tsc -p tsconfig.build.json)');
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error('tsc failed; fix the errors above and run `npm install` (or `npm run build:ts`) again');
}

async function ensureAddon() {
  const { searchLibtorch, installLibtorch } = await importLib('libtorch');
  let { found: libtorch } = searchLibtorch();
  if (!libtorch) {
    log('no libtorch found (COMEBA_LIBTORCH, python3 torch, cache): installing the CPU wheel into the per-user cache');
    libtorch = installLibtorch({ variant: 'cpu', log });
  }
  log(`libtorch ${libtorch.version} (${libtorch.variant}) from ${libtorch.source}: ${libtorch.dir}`);
  const { chooseAddon } = await importLib('native');
  const { choice } = chooseAddon(libtorch);
  if (choice) {
    log(`using ${choice.kind} ${choice.path}`);
    return;
  }
  log('no prebuild or source build fits this libtorch: building from source (a few minutes)');
  const { buildFromSource } = await importLib('cli/build');
  await buildFromSource({ verbose: false, log });
}

try {
  compileTypescript();
  await ensureAddon();
} catch (err) {
  console.error(`comeba install failed: ${err.message}`);
  process.exitCode = 1;
}
