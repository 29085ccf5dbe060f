#!/usr/bin/env node
// `npm run build:prebuild [-- --variant cpu|cuda]`: one stripped N-API prebuild, made by prebuildify
// driving our one build description (CMakeLists.txt through cmake-js; scripts/prebuild-backend.mjs stands
// in for node-gyp), then renamed with our torch-minor and variant tags, e.g.
// prebuilds/linux-x64/node.napi.glibc.torch2_13.cpu.node, with its build-info JSON beside it.
// With --variant, against that variant's libtorch from lib/addon/libtorch.ts's table (installed into the per-user
// cache when missing); without, against the libtorch found. The cmake build folder is the source build's
// (build/cmake-torch<minor>-<variant>), so a prebuild after `npm install` compiles only what changed.
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { importLib } from './import-lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(join(root, 'package.json'));

async function libtorchFor(variant) {
  const { findLibtorch, installLibtorch } = await importLib('addon/libtorch');
  if (variant === undefined) return findLibtorch().libtorch;
  return installLibtorch({ variant, log: (line) => console.log(line) });
}

async function main() {
  const { values } = parseArgs({ options: { variant: { type: 'string' } } });
  if (values.variant !== undefined && values.variant !== 'cpu' && values.variant !== 'cuda') throw new Error(`--variant must be cpu or cuda, not '${values.variant}'`);
  const libtorch = await libtorchFor(values.variant);
  const { createBuildInfo, prebuildFileName, writeBuildInfo, buildInfoPath } = await importLib('addon/native');
  console.log(`prebuilding against libtorch ${libtorch.version} (${libtorch.variant}, ${libtorch.source}: ${libtorch.dir})`);
  const env = { ...process.env, COMEBA_LIBTORCH: libtorch.dir }; // the backend must build against this one
  delete env.COMEBA_VARIANT;
  const prebuildify = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
  const backend = join(root, 'scripts', 'prebuild-backend.mjs');
  const result = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', `--node-gyp=${backend}`], { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`prebuildify failed (exit ${result.status ?? result.signal})`);

  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const produced = join(dir, 'comeba.node'); // prebuildify names N-API builds after the package
  const target = join(dir, prebuildFileName(libtorch));
  writeBuildInfo(target, createBuildInfo(produced, libtorch));
  renameSync(produced, target);
  // prebuildify moved build/Release/comeba.node away; its build-info would describe nothing.
  const leftover = buildInfoPath(join(root, 'build', 'Release', 'comeba.node'));
  if (existsSync(leftover)) rmSync(leftover);
  console.log(`wrote ${target}`);
}

try {
  await main();
} catch (err) {
  console.error(`comeba prebuild: ${err.message}`);
  process.exitCode = 1;
}
