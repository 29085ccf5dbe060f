#!/usr/bin/env node
// `npm run build:prebuild`: a stripped N-API prebuild for the libtorch found (COMEBA_LIBTORCH first), made by
// prebuildify through node-gyp and binding.gyp, then renamed with our torch-minor and variant tags,
// e.g. prebuilds/linux-x64/node.napi.glibc.torch2_13.cpu.node, with its build-info JSON beside it.
// prebuildify runs `node-gyp rebuild`, which deletes build/ (and with it any source build).
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importLib } from './import-lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(join(root, 'package.json'));

// npm sets npm_config_node_gyp for scripts; run directly, use the node-gyp bundled with npm.
function nodeGypPath() {
  const bundled = resolve(process.execPath, '../../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  const found = [process.env.PREBUILD_NODE_GYP, process.env.npm_config_node_gyp, bundled].find((p) => p && existsSync(p));
  if (!found) throw new Error('node-gyp not found: set PREBUILD_NODE_GYP to node-gyp.js');
  return found;
}

// node-gyp downloads Node's headers unless told where the installed ones are; this keeps it offline.
function nodeHeadersDir() {
  const prefix = resolve(process.execPath, '../..');
  return existsSync(join(prefix, 'include/node/node_api.h')) ? prefix : undefined;
}

async function main() {
  const { libtorch } = (await importLib('libtorch')).findLibtorch();
  const { createBuildInfo, prebuildFileName, writeBuildInfo } = await importLib('native');
  console.log(`prebuilding against libtorch ${libtorch.version} (${libtorch.variant}, ${libtorch.source}: ${libtorch.dir})`);
  const env = {
    ...process.env,
    COMEBA_LIBTORCH: libtorch.dir, // binding.gyp's expansions must see the same libtorch
    JOBS: process.env.JOBS ?? String(Math.min(2, availableParallelism())),
    ...(process.env.npm_config_nodedir || !nodeHeadersDir() ? {} : { npm_config_nodedir: nodeHeadersDir() }),
  };
  const prebuildify = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
  const result = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', `--node-gyp=${nodeGypPath()}`], { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`prebuildify failed (exit ${result.status ?? result.signal})`);

  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  const produced = join(dir, 'comeba.node'); // prebuildify names N-API builds after the package
  const target = join(dir, prebuildFileName(libtorch));
  writeBuildInfo(target, createBuildInfo(produced, libtorch));
  renameSync(produced, target);
  console.log(`wrote ${target}`);
}

try {
  await main();
} catch (err) {
  console.error(`comeba prebuild: ${err.message}`);
  process.exitCode = 1;
}
