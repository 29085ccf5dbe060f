#!/usr/bin/env node
// The package's `install` script, for a consumer's `npm install comeba` and for a clone's `npm install`
// alike. It leaves a libtorch with an addon that fits it:
//   1. a libtorch already found (COMEBA_LIBTORCH, python3's torch, the per-user cache) with a prebuild or
//      build that fits: nothing to do, nothing downloads, no compiler runs;
//   2. else (and unless COMEBA_LIBTORCH names one) the CUDA or CPU libtorch, by the NVIDIA driver or
//      COMEBA_VARIANT, into the per-user cache, which the package's prebuild for it fits;
//   3. else a source build with cmake-js (a dependency) against the libtorch found.
// In a clone it first compiles lib/ to dist/. Every step says what it does; a failure exits non-zero.
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

function using({ libtorch, addon }) {
  log(`using the ${addon.kind} ${addon.path}`);
  log(`  with libtorch ${libtorch.version} (${libtorch.variant}) from ${libtorch.source}: ${libtorch.dir}`);
}

async function ensureAddon() {
  const { resolveNative } = await importLib('addon/native');
  const { chooseVariant, formatRejected, installLibtorch, libtorchCacheRoot, libtorchNotFound } = await importLib('addon/libtorch');
  let found = resolveNative();
  if (found.addon) return using(found);
  if (found.libtorchRejected.length > 0) log(`libtorch candidates without a fitting build:\n${formatRejected(found.libtorchRejected)}`);
  // A libtorch named explicitly is the user's choice: build for it rather than download another.
  if (!process.env.COMEBA_LIBTORCH && !process.env.LIBTORCH) {
    const variant = chooseVariant();
    if (variant.warning) log(`warning: ${variant.warning}`);
    log(`installing the ${variant.variant} libtorch (${variant.reason}; COMEBA_VARIANT=cpu|cuda chooses) into ${libtorchCacheRoot()}`);
    const { progressLine } = await importLib('cli/progress');
    const progress = progressLine('comeba: downloading');
    await installLibtorch({ variant: variant.variant, log: (line) => progress.log(`comeba: ${line}`), onProgress: (bytes) => progress.update(bytes) })
      .finally(() => progress.end());
    found = resolveNative();
    if (found.addon) return using(found);
  }
  if (!found.libtorch) throw libtorchNotFound(found.libtorchRejected);
  log(`no prebuild fits libtorch ${found.libtorch.version} (${found.libtorch.variant}): building from source with cmake-js ` +
    '(needs CMake ≥ 3.18, g++ and make; a few minutes)');
  const { buildFromSource } = await importLib('cli/build');
  await buildFromSource({ verbose: false, log, libtorch: found.libtorch });
}

try {
  compileTypescript();
  await ensureAddon();
} catch (err) {
  console.error(`comeba install failed: ${err.message}`);
  process.exitCode = 1;
}
