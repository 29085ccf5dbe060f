#!/usr/bin/env node
// Feeds binding.gyp (node-gyp, driven by prebuildify) from the same sources as CMakeLists.txt: every
// native/**/*.cpp and the libtorch lib/libtorch.ts finds (COMEBA_LIBTORCH first). One word per line,
// for gyp's `<!@(node scripts/gyp-config.mjs <key>)` list expansion, which runs in the package root.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { importLib } from './import-lib.mjs';

const key = process.argv[2];

function sources() {
  return readdirSync('native', { recursive: true })
    .filter((file) => file.endsWith('.cpp'))
    .map((file) => join('native', file))
    .sort();
}

const torchOutputs = {
  // -isystem, not include_dirs: warnings inside torch's headers are not ours to fix.
  cflags_cc: (torch) => [
    torch.versionMinor.localeCompare('2.14', undefined, { numeric: true }) >= 0 ? '-std=c++20' : '-std=c++17',
    ...torch.includeDirs.flatMap((dir) => ['-isystem', dir]),
  ],
  defines: (torch) => [`_GLIBCXX_USE_CXX11_ABI=${torch.cxx11Abi ? 1 : 0}`],
  // --no-as-needed keeps libtorch.so, which pulls in the backends; see CMakeLists.txt.
  libraries: (torch) => ['-Wl,--no-as-needed', ...['libtorch.so', 'libtorch_cpu.so', 'libc10.so'].map((lib) => join(torch.libDir, lib)), '-Wl,--as-needed'],
};

if (key === 'sources') {
  console.log(sources().join('\n'));
} else if (key in torchOutputs) {
  const { findLibtorch } = await importLib('libtorch');
  console.log(torchOutputs[key](findLibtorch().libtorch).join('\n'));
} else {
  console.error(`usage: gyp-config.mjs sources|${Object.keys(torchOutputs).join('|')}`);
  process.exit(2);
}
