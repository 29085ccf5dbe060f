// `comeba build`: compiles comeba.node from native/ with cmake-js (CMakeLists.txt, the one build
// description) against the libtorch that lib/addon/libtorch.ts finds, into build/Release/comeba.node plus its
// build-info JSON. The install script falls back to it where no prebuild fits, and scripts/prebuild.mjs
// makes the release's prebuilds with it.

import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { AddonNotFoundError } from '../errors.js';
import { findLibtorch, formatRejected, type LibtorchInfo } from '../addon/libtorch.js';
import { createBuildInfo, napiVersion, packageRoot, writeBuildInfo, type BuildInfo } from '../addon/native.js';

export const summary = 'build comeba.node from source against the libtorch found (cmake-js)';

const usage = `usage: comeba build [--verbose]

Finds libtorch (COMEBA_LIBTORCH, then python3's torch, then the comeba cache), compiles native/
with cmake-js into build/Release/comeba.node and writes build/Release/comeba.json beside it.
Needs CMake ≥ 3.18, a C++20 compiler (g++ ≥ 10) and make; no CUDA toolkit, even for a CUDA libtorch.
  -v, --verbose   stream the compiler output instead of keeping it in the build log`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { verbose: { type: 'boolean', short: 'v' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  await buildFromSource({ verbose: values.verbose ?? false, log: (line) => console.log(line) });
  return 0;
}

export interface BuildResult {
  path: string;
  buildInfo: BuildInfo;
}

/** Builds against `options.libtorch`, by default the first libtorch discovery finds. */
export async function buildFromSource(options: { verbose: boolean; log: (line: string) => void; libtorch?: LibtorchInfo }): Promise<BuildResult> {
  const { log } = options;
  let libtorch = options.libtorch;
  if (!libtorch) {
    const found = findLibtorch();
    if (found.rejected.length > 0) log(`skipped libtorch candidates:\n${formatRejected(found.rejected)}`);
    libtorch = found.libtorch;
  }
  requireTool('cmake', 'CMake ≥ 3.18 (apt install cmake, or pip install cmake)');
  requireTool('c++', 'a C++ compiler (apt install g++ make)');
  log(`building comeba.node against libtorch ${libtorch.version} (${libtorch.variant}, ${libtorch.source}: ${libtorch.dir})`);
  // One cmake build folder per torch minor and variant: CMake caches what it found per folder.
  const workDir = join(packageRoot, 'build', `cmake-torch${libtorch.versionMinor}-${libtorch.variant}`);
  mkdirSync(workDir, { recursive: true });
  const logFile = `${workDir}.log`;
  const started = Date.now();
  await runCmakeJs(libtorch, workDir, options.verbose ? undefined : logFile);
  const result = installArtifact(join(workDir, 'Release', 'comeba.node'), libtorch);
  log(`built ${result.path} in ${Math.round((Date.now() - started) / 1000)} s`);
  return result;
}

// `cmake-js build`, not `compile`: on a compile error `compile` wipes the folder and builds it all
// again, doubling the wait before the same error.
function runCmakeJs(torch: LibtorchInfo, workDir: string, logFile: string | undefined): Promise<void> {
  const defines = [
    `--CDCOMEBA_LIBTORCH_DIR=${torch.dir}`,
    `--CDCOMEBA_TORCH_VERSION=${torch.version}`,
    `--CDCOMEBA_CXX11_ABI=${torch.cxx11Abi ? 1 : 0}`,
    `--CDCOMEBA_NAPI_VERSION=${napiVersion}`];
  const configured = forgetStaleConfiguration(workDir, defines);
  const args = [cmakeJsBin(), 'build', '--directory', packageRoot, '--out', workDir, ...defines];
  // One torch translation unit takes ~1.4 GB and ~20 s: more than two jobs thrash small machines.
  const parallel = process.env.CMAKE_BUILD_PARALLEL_LEVEL ?? String(Math.min(2, availableParallelism()));
  const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: parallel };
  const log = logFile === undefined ? undefined : openSync(logFile, 'w');
  return new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: packageRoot, env, stdio: log === undefined ? 'inherit' : ['ignore', log, log] });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) {
        configured();
        resolve();
      } else {
        reject(new AddonNotFoundError(`cmake-js failed (exit ${code})${logFile ? `:\n${tail(logFile)}\nfull log: ${logFile}` : ''}`));
      }
    });
  }).finally(() => log !== undefined && closeSync(log));
}

// `cmake-js build` configures only a folder without a CMakeCache.txt and otherwise keeps the cached values: a
// libtorch moved to another path, or a define added since, would be ignored. The defines of the last configure
// are kept beside the cache (written once a build succeeded); when they differ, the cache goes and the build
// configures afresh (the objects stay, so only what the new values change recompiles).
function forgetStaleConfiguration(workDir: string, defines: string[]): () => void {
  const stamp = join(workDir, 'comeba-defines.json');
  const wanted = JSON.stringify(defines);
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== wanted) rmSync(join(workDir, 'CMakeCache.txt'), { force: true });
  return () => writeFileSync(stamp, wanted);
}

// cmake-js is one of the package's dependencies, so an installed package can build itself.
function cmakeJsBin(): string {
  try {
    const pkg = createRequire(join(packageRoot, 'package.json')).resolve('cmake-js/package.json');
    return join(pkg, '..', 'bin', 'cmake-js');
  } catch {
    throw new AddonNotFoundError(`building from source needs cmake-js, a dependency of comeba that is missing from ${packageRoot}: reinstall comeba`);
  }
}

function requireTool(command: string, what: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
  if (!found) throw new AddonNotFoundError(`building from source needs ${what}: \`${command}\` is not on PATH`);
}

// Copy then rename, so a concurrent loader never sees half a file.
function installArtifact(built: string, torch: LibtorchInfo): BuildResult {
  if (!existsSync(built)) throw new AddonNotFoundError(`cmake-js succeeded but ${built} is missing`);
  const buildInfo = createBuildInfo(built, torch);
  const path = join(packageRoot, 'build', 'Release', 'comeba.node');
  mkdirSync(dirname(path), { recursive: true });
  copyFileSync(built, `${path}.tmp`);
  writeBuildInfo(path, buildInfo);
  renameSync(`${path}.tmp`, path);
  return { path, buildInfo };
}

function tail(file: string, lines = 30): string {
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}
