#!/usr/bin/env node
// `npm run pack:release`: writes into release/ exactly the tarball a registry would serve — dist/ compiled
// and one stripped prebuild per entry of lib/addon/libtorch.ts's `libtorchVariants` (torch 2.13 CPU, torch 2.14
// CUDA 13), each built against that libtorch, installed into the per-user cache first when missing.
// Both prebuilds ride in the one tarball: each is a few MB because libtorch is not bundled (install puts
// the matching libtorch into the cache), so per-variant optional packages would save the user nothing.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importLib } from './import-lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const release = join(root, 'release');

function run(command, args, { capture = false } = {}) {
  console.log(`$ ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, encoding: 'utf8', stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', maxBuffer: 64 << 20 });
  if (result.status !== 0) throw new Error(`\`${[command, ...args].join(' ')}\` exited with ${result.status ?? result.signal}`);
  return result.stdout ?? '';
}

async function main() {
  const started = performance.now();
  const { libtorchVariantNames } = await importLib('addon/libtorch');
  const { formatBytes } = await importLib('io/files');
  // Only this release's prebuilds and compiled modules go into the tarball: none left over from another torch
  // or from a module since moved or removed.
  rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  rmSync(release, { recursive: true, force: true });
  mkdirSync(release, { recursive: true });
  run('npm', ['run', 'build:ts']);
  for (const variant of libtorchVariantNames) run(process.execPath, [join(root, 'scripts', 'prebuild.mjs'), '--variant', variant]);
  // --ignore-scripts: dist/ was compiled above, and prepack's output would corrupt the JSON.
  const out = run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', release], { capture: true });
  const pack = JSON.parse(out.slice(out.indexOf('[')))[0];
  const prebuilds = pack.files.filter((f) => f.path.startsWith('prebuilds/') && f.path.endsWith('.node'));
  console.log(`\nrelease/${pack.filename}: ${pack.files.length} files, ${formatBytes(pack.size)} packed, ${formatBytes(pack.unpackedSize)} unpacked`);
  for (const f of prebuilds) console.log(`  ${f.path}: ${formatBytes(f.size)}`);
  console.log(`in ${((performance.now() - started) / 1000).toFixed(0)} s; release/ holds ${readdirSync(release).map((f) => `${f} (${formatBytes(statSync(join(release, f)).size)})`).join(', ')}`);
}

try {
  await main();
} catch (err) {
  console.error(`comeba pack:release: ${err.message}`);
  process.exitCode = 1;
}
