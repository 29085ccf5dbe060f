// The addon loader's decisions, without compiling or loading anything: which libtorch is found and how
// it is described (fake libtorch folders), which build is chosen for it (fake package folders with
// prebuildify-named files and build-info JSON), and the errors, with their fixes, when none fits.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { AddonNotFoundError, InvalidArgumentError, LibtorchNotFoundError, LibtorchVersionMismatchError } from '../lib/errors.js';
import { chooseVariant, findLibtorch, libtorchVariants, searchLibtorch, type LibtorchInfo } from '../lib/addon/libtorch.js';
import {
  chooseAddon, createBuildInfo, noAddonError, packageRoot, prebuildFileName, resolveNative, writeBuildInfo, type BuildInfo,
} from '../lib/addon/native.js';
import { tempDir } from './helpers.js';

const platformDir = `prebuilds/${process.platform}-${process.arch}`;

function scratch(t: ExecutionContext): string {
  const dir = tempDir('comeba-loader-');
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function write(path: string, content: string | Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}

// ---- fake libtorch folders and the environment discovery reads --------------------------------

interface FakeTorch { version?: string; cxx11?: boolean; cuda?: boolean; versionFile?: 'version.py' | 'build-version' | 'none' }

// The files discovery requires. libc10.so carries one exported c10::Error constructor name: with the
// C++11 ABI its std::string is std::__cxx11::basic_string (`St7__cxx11`), with the old ABI `Ss`.
function fakeLibtorch(dir: string, { version = '2.13.0+cpu', cxx11 = true, cuda = false, versionFile = 'version.py' }: FakeTorch = {}): string {
  const symbol = cxx11
    ? '_ZN3c105ErrorC1ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE'
    : '_ZN3c105ErrorC1ENS_14SourceLocationESs';
  write(join(dir, 'lib/libc10.so'), Buffer.concat([Buffer.from('\x7fELF'), Buffer.alloc(60), Buffer.from(`${symbol}\0`)]));
  write(join(dir, 'lib/libtorch.so'), '\x7fELF fake');
  write(join(dir, 'lib/libtorch_cpu.so'), '\x7fELF fake');
  if (cuda) write(join(dir, 'lib/libtorch_cuda.so'), '\x7fELF fake');
  write(join(dir, 'include/torch/csrc/api/include/torch/torch.h'), '// fake\n');
  if (versionFile === 'version.py') write(join(dir, 'version.py'), `__version__ = '${version}'\ndebug = False\n`);
  if (versionFile === 'build-version') write(join(dir, 'build-version'), `${version}\n`);
  return dir;
}

/** A folder holding a `python3` that answers discovery's find_spec query with `torchDir` (or no torch). */
function fakePython(dir: string, torchDir: string | null): string {
  const answer = JSON.stringify(['/fake/bin/python3', torchDir && join(torchDir, '__init__.py')]);
  write(join(dir, 'python3'), `#!/bin/sh\nprintf '%s\\n' '${answer}'\n`);
  chmodSync(join(dir, 'python3'), 0o755);
  return dir;
}

/** An entry of the per-user cache as `comeba libtorch install` leaves it. */
function fakeCacheEntry(cacheHome: string, name: string, torch: FakeTorch & { installedAt: string }): string {
  const entry = join(cacheHome, 'comeba', 'libtorch', name);
  fakeLibtorch(join(entry, 'torch'), torch);
  write(join(entry, 'comeba-libtorch.json'), JSON.stringify({
    version: torch.version, variant: torch.cuda ? 'cuda' : 'cpu', cxx11Abi: torch.cxx11 ?? true, installedAt: torch.installedAt,
  }));
  return join(entry, 'torch');
}

type DiscoveryEnv = { COMEBA_LIBTORCH?: string; LIBTORCH?: string; COMEBA_VARIANT?: string; PATH: string; XDG_CACHE_HOME: string };

// Discovery reads the environment on each call and runs synchronously, so setting and restoring
// around the call cannot leak into the other tests of this file, which run concurrently.
function withEnv<T>(env: DiscoveryEnv, fn: () => T): T {
  const names = ['COMEBA_LIBTORCH', 'LIBTORCH', 'COMEBA_VARIANT', 'PATH', 'XDG_CACHE_HOME'] as const;
  const saved = names.map((n) => [n, process.env[n]] as const);
  const set = (n: string, v: string | undefined) => (v === undefined ? delete process.env[n] : (process.env[n] = v));
  for (const n of names) set(n, env[n]);
  try {
    return fn();
  } finally {
    for (const [n, v] of saved) set(n, v);
  }
}

/** PATH without any python3 and an empty cache: only what a test adds is found. */
function isolated(root: string): DiscoveryEnv {
  mkdirSync(join(root, 'empty-bin'), { recursive: true });
  return { PATH: join(root, 'empty-bin'), XDG_CACHE_HOME: join(root, 'empty-cache') };
}

// ---- libtorch discovery -------------------------------------------------------------------

test('a libtorch folder with version.py is described: version, minor, variant, C++11 ABI, paths', (t) => {
  const root = scratch(t);
  const dir = fakeLibtorch(join(root, 'torch'), { version: '2.13.0+cpu', cxx11: true });
  const { found, rejected } = withEnv({ ...isolated(root), COMEBA_LIBTORCH: dir }, searchLibtorch);
  t.deepEqual(rejected, []);
  t.deepEqual(found, {
    dir,
    libDir: join(dir, 'lib'),
    includeDirs: [join(dir, 'include'), join(dir, 'include/torch/csrc/api/include')],
    cmakePrefix: join(dir, 'share/cmake'),
    version: '2.13.0+cpu',
    versionMinor: '2.13',
    variant: 'cpu',
    cxx11Abi: true,
    source: 'env',
  });
});

test('the ABI is read from libc10.so: without the St7__cxx11 marker it is the pre-C++11 ABI', (t) => {
  const root = scratch(t);
  const dir = fakeLibtorch(join(root, 'torch'), { version: '2.12.1', cxx11: false });
  const { found } = withEnv({ ...isolated(root), COMEBA_LIBTORCH: dir }, searchLibtorch);
  t.is(found?.cxx11Abi, false);
  t.is(found?.versionMinor, '2.12');
});

test('libtorch_cuda.so makes a CUDA libtorch; a libtorch zip gives its version in build-version', (t) => {
  const root = scratch(t);
  const dir = fakeLibtorch(join(root, 'libtorch'), { version: '2.14.1+cu130', cuda: true, versionFile: 'build-version' });
  const { found } = withEnv({ ...isolated(root), COMEBA_LIBTORCH: dir }, searchLibtorch);
  t.like(found, { variant: 'cuda', version: '2.14.1+cu130', versionMinor: '2.14', cxx11Abi: true });
});

test('COMEBA_LIBTORCH at a folder that is no libtorch is refused, naming the fixes, with no fallback', (t) => {
  const root = scratch(t);
  const notTorch = join(root, 'not-torch');
  write(join(notTorch, 'README'), 'hello\n');
  // A usable python3 torch is on PATH: a silent fallback to it would hide the typo.
  const python = fakePython(join(root, 'bin'), fakeLibtorch(join(root, 'site-packages/torch')));
  const env = { ...isolated(root), PATH: python, COMEBA_LIBTORCH: notTorch };
  const { found, rejected } = withEnv(env, searchLibtorch);
  t.is(found, undefined);
  t.is(rejected.length, 1);
  t.like(rejected[0], { source: 'env', dir: notTorch });
  t.regex(rejected[0].reason, /^COMEBA_LIBTORCH is set but missing lib\/libtorch\.so, .*torch\.h; fix or unset it$/);
  const err = t.throws(() => withEnv(env, findLibtorch), { instanceOf: LibtorchNotFoundError });
  t.is(err!.code, 'LIBTORCH_NOT_FOUND');
  t.true(err!.message.includes(notTorch), err!.message);
  t.regex(err!.message, /npx comeba libtorch install/);
  t.regex(err!.message, /export COMEBA_LIBTORCH=/);
  t.false(/pip install/.test(err!.message), err!.message); // advice that would replace the user's torch
});

test('a folder with the libraries but no version file is refused', (t) => {
  const root = scratch(t);
  const dir = fakeLibtorch(join(root, 'torch'), { versionFile: 'none' });
  const { found, rejected } = withEnv({ ...isolated(root), LIBTORCH: dir }, searchLibtorch);
  t.is(found, undefined);
  t.deepEqual(rejected, [{ source: 'env', dir, reason: 'LIBTORCH is set but no version.py or build-version file; fix or unset it' }]);
});

test('COMEBA_LIBTORCH wins over LIBTORCH, and LIBTORCH alone is used', (t) => {
  const root = scratch(t);
  const comeba = fakeLibtorch(join(root, 'a'), { version: '2.13.0+cpu' });
  const plain = fakeLibtorch(join(root, 'b'), { version: '2.12.1+cpu' });
  t.is(withEnv({ ...isolated(root), COMEBA_LIBTORCH: comeba, LIBTORCH: plain }, searchLibtorch).found?.dir, comeba);
  t.is(withEnv({ ...isolated(root), LIBTORCH: plain }, searchLibtorch).found?.version, '2.12.1+cpu');
});

test('discovery order: environment, then python3 torch, then the newest per-user cache entry', (t) => {
  const root = scratch(t);
  const cacheHome = join(root, 'cache');
  fakeCacheEntry(cacheHome, '2.12.1-cpu', { version: '2.12.1', installedAt: '2026-01-01T00:00:00.000Z' });
  const newest = fakeCacheEntry(cacheHome, '2.13.0+cpu-cpu', { version: '2.13.0+cpu', installedAt: '2026-02-01T00:00:00.000Z' });
  const pythonTorch = fakeLibtorch(join(root, 'site-packages/torch'), { version: '2.14.1', cuda: true });
  const envTorch = fakeLibtorch(join(root, 'env-torch'), { version: '2.11.0' });
  const withPython = { PATH: fakePython(join(root, 'bin-torch'), pythonTorch), XDG_CACHE_HOME: cacheHome };
  const withoutTorch = { PATH: fakePython(join(root, 'bin-none'), null), XDG_CACHE_HOME: cacheHome };

  t.like(withEnv({ ...withPython, COMEBA_LIBTORCH: envTorch }, searchLibtorch).found, { source: 'env', dir: envTorch });
  t.like(withEnv(withPython, searchLibtorch), { found: { source: 'python', dir: pythonTorch, variant: 'cuda' }, rejected: [] });
  const fromCache = withEnv(withoutTorch, searchLibtorch);
  t.like(fromCache.found, { source: 'cache', dir: newest, version: '2.13.0+cpu' });
  t.deepEqual(fromCache.rejected, [{ source: 'python', reason: 'no torch package for /fake/bin/python3' }]);
});

test('no libtorch anywhere: LibtorchNotFoundError lists every candidate tried and the fixes', (t) => {
  const root = scratch(t);
  const env = isolated(root);
  const err = t.throws(() => withEnv(env, findLibtorch), { instanceOf: LibtorchNotFoundError });
  t.regex(err!.message, /python: python3 could not run: not on PATH/);
  t.true(err!.message.includes(`cache (${join(env.XDG_CACHE_HOME, 'comeba', 'libtorch')}): nothing installed`), err!.message);
  t.regex(err!.message, /Fix it with one of:\n {2}npx comeba libtorch install/);
});

// ---- choosing a build -------------------------------------------------------------------

function torch(version: string, { variant = 'cpu', cxx11Abi = true }: Partial<Pick<LibtorchInfo, 'variant' | 'cxx11Abi'>> = {}): LibtorchInfo {
  const dir = '/opt/fake-libtorch';
  return {
    dir, libDir: `${dir}/lib`, includeDirs: [`${dir}/include`], cmakePrefix: `${dir}/share/cmake`,
    version, versionMinor: version.split('.').slice(0, 2).join('.'), variant, cxx11Abi, source: 'env',
  };
}

function buildInfo(version: string, { variant = 'cpu', cxx11Abi = true }: Partial<Pick<BuildInfo, 'variant' | 'cxx11Abi'>> = {}): BuildInfo {
  return {
    torchVersion: version, torchMinor: version.split('.').slice(0, 2).join('.'), cxx11Abi, variant,
    glibc: '2.32', napi: 8, builtAt: '2026-01-01T00:00:00.000Z',
  };
}

/** A fake addon at `root/relPath` (never loaded here) with its build-info JSON, unless `info` is null. */
function addBuild(root: string, relPath: string, info: BuildInfo | null): string {
  const path = join(root, relPath);
  write(path, '\x7fELF not really an addon');
  if (info) write(path.replace(/\.node$/, '.json'), JSON.stringify(info));
  return path;
}

test('prebuilds are chosen by torch minor: the torch2_13 build for libtorch 2.13, the others rejected', (t) => {
  const root = scratch(t);
  const old = addBuild(root, `${platformDir}/node.napi.glibc.torch2_12.cpu.node`, buildInfo('2.12.1+cpu'));
  const fits = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu'));
  const newer = addBuild(root, `${platformDir}/node.napi.glibc.torch2_14.cpu.node`, buildInfo('2.14.1'));
  const { choice, rejected } = chooseAddon(torch('2.13.1+cpu'), root);
  t.deepEqual(choice, { path: fits, kind: 'prebuild', buildInfo: buildInfo('2.13.0+cpu') });
  t.deepEqual(rejected.sort((a, b) => a.path.localeCompare(b.path)), [
    { path: old, reason: 'built for torch 2.12.1+cpu, found 2.13.1+cpu', torchVersion: '2.12.1+cpu' },
    { path: newer, reason: 'built for torch 2.14.1, found 2.13.1+cpu', torchVersion: '2.14.1' },
  ]);
  t.is(chooseAddon(torch('2.12.0'), root).choice?.path, old);
});

test('variant: a CPU libtorch refuses a CUDA build; a CUDA libtorch prefers it and accepts a CPU one', (t) => {
  const root = scratch(t);
  const cpu = addBuild(root, `${platformDir}/node.napi.glibc.torch2_14.cpu.node`, buildInfo('2.14.1+cpu'));
  const cuda = addBuild(root, `${platformDir}/node.napi.glibc.torch2_14.cuda.node`, buildInfo('2.14.1', { variant: 'cuda' }));
  const onCpu = chooseAddon(torch('2.14.1+cpu'), root);
  t.is(onCpu.choice?.path, cpu);
  t.deepEqual(onCpu.rejected, [{ path: cuda, reason: 'a CUDA build needs a CUDA libtorch', torchVersion: undefined }]);
  const onCuda = chooseAddon(torch('2.14.1', { variant: 'cuda' }), root);
  t.is(onCuda.choice?.path, cuda);
  t.deepEqual(onCuda.rejected, []);

  rmSync(cuda);
  t.is(chooseAddon(torch('2.14.1', { variant: 'cuda' }), root).choice?.path, cpu);
});

test('ABI: a prebuild made with the other C++ ABI is rejected', (t) => {
  const root = scratch(t);
  const path = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu', { cxx11Abi: false }));
  const { choice, rejected } = chooseAddon(torch('2.13.0+cpu'), root);
  t.is(choice, undefined);
  t.deepEqual(rejected, [{ path, reason: 'built with cxx11Abi=false, libtorch has true', torchVersion: undefined }]);
  t.is(chooseAddon(torch('2.13.0+cpu', { cxx11Abi: false }), root).choice?.path, path);
});

test('a fitting source build in build/Release wins over a prebuild; an unfitting one gives way', (t) => {
  const root = scratch(t);
  const prebuild = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu'));
  const source = addBuild(root, 'build/Release/comeba.node', buildInfo('2.13.0+cpu'));
  t.like(chooseAddon(torch('2.13.0+cpu'), root).choice, { path: source, kind: 'source' });
  // Even a CUDA prebuild for a CUDA libtorch gives way to a fitting (CPU) source build: the user built it.
  const cudaPrebuild = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cuda.node`, buildInfo('2.13.0', { variant: 'cuda' }));
  t.like(chooseAddon(torch('2.13.0', { variant: 'cuda' }), root).choice, { path: source, kind: 'source' });
  rmSync(cudaPrebuild);

  writeFileSync(source.replace(/\.node$/, '.json'), JSON.stringify(buildInfo('2.12.1+cpu')));
  const { choice, rejected } = chooseAddon(torch('2.13.0+cpu'), root);
  t.like(choice, { path: prebuild, kind: 'prebuild' });
  t.deepEqual(rejected, [{ path: source, reason: 'built for torch 2.12.1+cpu, found 2.13.0+cpu', torchVersion: '2.12.1+cpu' }]);
});

test('builds for another platform, runtime or libc are no candidates; one without build info is rejected', (t) => {
  const root = scratch(t);
  const info = buildInfo('2.13.0+cpu');
  addBuild(root, 'prebuilds/otheros-otherarch/node.napi.glibc.torch2_13.cpu.node', info);
  addBuild(root, `${platformDir}/electron.napi.glibc.torch2_13.cpu.node`, info);
  addBuild(root, `${platformDir}/node.napi.musl.torch2_13.cpu.node`, info);
  addBuild(root, `${platformDir}/node.abi1.glibc.torch2_13.cpu.node`, info);
  const bare = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, null);
  const { choice, rejected } = chooseAddon(torch('2.13.0+cpu'), root);
  t.is(choice, undefined);
  t.deepEqual(rejected, [{ path: bare, reason: `no build-info file ${bare.replace(/\.node$/, '.json')}`, torchVersion: undefined }]);
});

test('a prebuild for another torch version is refused with an error that names the fix', (t) => {
  const root = scratch(t);
  const path = addBuild(root, `${platformDir}/node.napi.glibc.torch2_12.cpu.node`, buildInfo('2.12.1+cpu'));
  const libtorch = torch('2.13.0+cpu');
  const { choice, rejected } = chooseAddon(libtorch, root);
  t.is(choice, undefined);
  const err = noAddonError(libtorch, rejected);
  t.true(err instanceof LibtorchVersionMismatchError);
  t.is(err.code, 'LIBTORCH_VERSION_MISMATCH');
  t.true(err.message.includes(`${path}: built for torch 2.12.1+cpu, found 2.13.0+cpu`), err.message);
  t.regex(err.message, /Run `npx comeba build` to build from source against 2\.13\.0\+cpu/);
  t.regex(err.message, /`npx comeba libtorch install --variant cpu`/);
  t.false(/pip install/.test(err.message), err.message);
});

test('the advice for a CUDA torch without a build keeps CUDA: never a CPU torch in its place', (t) => {
  const root = scratch(t);
  addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu'));
  const libtorch = torch('2.11.0+cu128', { variant: 'cuda' });
  const err = noAddonError(libtorch, chooseAddon(libtorch, root).rejected);
  t.regex(err.message, /`npx comeba libtorch install --variant cuda`/);
  t.regex(err.message, /your own torch stays as it is/);
  t.false(/pip install|--variant cpu|torch==2\.13/.test(err.message), err.message);
});

test('no build at all: AddonNotFoundError saying to run `npx comeba build`', (t) => {
  const root = scratch(t);
  const libtorch = torch('2.13.0+cpu');
  const { choice, rejected } = chooseAddon(libtorch, root);
  t.is(choice, undefined);
  t.deepEqual(rejected, []);
  const err = noAddonError(libtorch, rejected);
  t.true(err instanceof AddonNotFoundError);
  t.is(err.code, 'ADDON_NOT_FOUND');
  t.is(err.message, 'no comeba build found for libtorch 2.13.0+cpu (cpu, cxx11Abi=true)\nRun `npx comeba build` to build it from source.');

  // Builds that fit no other torch minor either (here: the wrong ABI) give the same error, listing them.
  const path = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu', { cxx11Abi: false }));
  const listed = noAddonError(libtorch, chooseAddon(libtorch, root).rejected);
  t.true(listed instanceof AddonNotFoundError);
  t.true(listed.message.includes(`  - ${path}: built with cxx11Abi=false`), listed.message);
  t.regex(listed.message, /Run `npx comeba build`/);
});

test('the prebuild naming and build-info writer make a prebuild the chooser then picks', (t) => {
  const root = scratch(t);
  const libtorch = torch('2.13.0+cpu');
  t.is(prebuildFileName(libtorch), 'node.napi.glibc.torch2_13.cpu.node');
  t.is(prebuildFileName(torch('2.14.1', { variant: 'cuda' })), 'node.napi.glibc.torch2_14.cuda.node');

  // The glibc needed is the newest GLIBC_x.y string in the binary, compared as numbers: 2.32 over 2.17 and 2.4.
  const path = join(root, platformDir, prebuildFileName(libtorch));
  write(path, Buffer.concat([Buffer.from('\x7fELF'), Buffer.from('\0GLIBC_2.17\0GLIBC_2.4\0GLIBC_2.32\0GLIBC_2.2.5\0')]));
  const info = createBuildInfo(path, libtorch);
  t.like(info, { torchVersion: '2.13.0+cpu', torchMinor: '2.13', cxx11Abi: true, variant: 'cpu', glibc: '2.32', napi: 8 });
  writeBuildInfo(path, info);
  t.deepEqual(chooseAddon(libtorch, root), { choice: { path, kind: 'prebuild', buildInfo: info }, rejected: [] });
});

// ---- libtorch and build together ----------------------------------------------------------------

test('an incompatible python3 torch does not hide a cache install that a prebuild fits: it is skipped, with its reason', (t) => {
  const root = scratch(t);
  const cacheHome = join(root, 'cache');
  const pythonTorch = fakeLibtorch(join(root, 'site-packages/torch'), { version: '2.11.0+cu128', cuda: true });
  const cached = fakeCacheEntry(cacheHome, '2.13.0+cpu-cpu', { version: '2.13.0+cpu', installedAt: '2026-02-01T00:00:00.000Z' });
  const prebuild = addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu'));
  const env = { PATH: fakePython(join(root, 'bin'), pythonTorch), XDG_CACHE_HOME: cacheHome };
  const resolved = withEnv(env, () => resolveNative(root));
  t.like(resolved, { libtorch: { source: 'cache', dir: cached }, addon: { path: prebuild, kind: 'prebuild' } });
  t.deepEqual(resolved.libtorchRejected, [
    { source: 'python', dir: pythonTorch, reason: 'torch 2.11.0+cu128 (cuda): no comeba build for it (builds exist for torch 2.13.0+cpu)' },
  ]);
  // Without the prebuild nothing fits: the first libtorch (python's) is the one a source build would target.
  rmSync(prebuild);
  const unbuilt = withEnv(env, () => resolveNative(root));
  t.like(unbuilt, { libtorch: { source: 'python', dir: pythonTorch }, addon: undefined });
  t.deepEqual(unbuilt.libtorchRejected, [{ source: 'cache', dir: cached, reason: 'torch 2.13.0+cpu (cpu): no comeba build for it' }]);
});

test('COMEBA_VARIANT chooses among cache entries, skipping the other variant with its reason; it must be cpu or cuda', (t) => {
  const root = scratch(t);
  const cacheHome = join(root, 'cache');
  const cpu = fakeCacheEntry(cacheHome, '2.13.0+cpu-cpu', { version: '2.13.0+cpu', installedAt: '2026-03-01T00:00:00.000Z' });
  const cuda = fakeCacheEntry(cacheHome, '2.14.1-cuda', { version: '2.14.1', cuda: true, installedAt: '2026-02-01T00:00:00.000Z' });
  addBuild(root, `${platformDir}/node.napi.glibc.torch2_13.cpu.node`, buildInfo('2.13.0+cpu'));
  addBuild(root, `${platformDir}/node.napi.glibc.torch2_14.cuda.node`, buildInfo('2.14.1', { variant: 'cuda' }));
  const base = { ...isolated(root), XDG_CACHE_HOME: cacheHome };
  const onCuda = withEnv({ ...base, COMEBA_VARIANT: 'cuda' }, () => resolveNative(root));
  t.like(onCuda, { libtorch: { dir: cuda }, addon: { buildInfo: { variant: 'cuda' } } });
  t.deepEqual(onCuda.libtorchRejected.filter((r) => r.source === 'cache'), [{ source: 'cache', dir: cpu, reason: 'a cpu libtorch, and COMEBA_VARIANT=cuda' }]);
  t.like(withEnv({ ...base, COMEBA_VARIANT: 'cpu' }, () => resolveNative(root)), { libtorch: { dir: cpu }, addon: { buildInfo: { variant: 'cpu' } } });
  t.throws(() => withEnv({ ...base, COMEBA_VARIANT: 'rocm' }, () => resolveNative(root)), { instanceOf: InvalidArgumentError, message: /COMEBA_VARIANT must be cpu or cuda, not 'rocm'/ });
});

test('the variant install picks: CUDA where a driver new enough runs, else CPU; an old driver is one line that says what to do', (t) => {
  const min = libtorchVariants.cuda.minDriver!;
  t.like(chooseVariant(undefined, {}), { variant: 'cpu', reason: 'no NVIDIA driver found', warning: undefined });
  t.like(chooseVariant({ version: `${min}.95.05`, major: min }, {}), { variant: 'cuda', reason: `NVIDIA driver ${min}.95.05`, warning: undefined });
  const old = chooseVariant({ version: '535.104.05', major: 535 }, {});
  t.is(old.variant, 'cpu');
  t.false(old.warning!.includes('\n'));
  t.regex(old.warning!, new RegExp(`NVIDIA driver 535\\.104\\.05 is older than ${min}.*installing the CPU libtorch instead.*npx comeba libtorch install --variant cuda`));
  t.like(chooseVariant({ version: `${min}.1`, major: min }, { COMEBA_VARIANT: 'cpu' }), { variant: 'cpu', reason: 'COMEBA_VARIANT=cpu' });
  t.like(chooseVariant(undefined, { COMEBA_VARIANT: 'cuda' }), { variant: 'cuda', reason: 'COMEBA_VARIANT=cuda' });
});

// The real loader in a child process (it loads the addon once per process): a python3 on PATH whose torch
// (2.11, no build for it) comes first in discovery must not stop the cache install this checkout runs on.
test('loading: an incompatible python3 torch on PATH does not stop a working cache install from loading', (t) => {
  const here = resolveNative();
  if (here.libtorch?.source !== 'cache' || !here.addon) {
    t.log(`this checkout loads libtorch from ${here.libtorch?.source ?? 'nowhere'}, not the per-user cache: nothing to check`);
    t.pass();
    return;
  }
  const root = scratch(t);
  const pythonTorch = fakeLibtorch(join(root, 'site-packages/torch'), { version: '2.11.0+cpu' });
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${fakePython(join(root, 'bin'), pythonTorch)}:${process.env.PATH}` };
  for (const name of ['COMEBA_LIBTORCH', 'LIBTORCH', 'COMEBA_VARIANT']) delete env[name];
  const out = execFileSync(process.execPath, ['--import=tsx', join(packageRoot, 'lib/cli/main.ts'), 'inspect', '--json'], { env, encoding: 'utf8' });
  const description = JSON.parse(out);
  t.is(description.error, undefined);
  t.like(description, { libtorch: { source: 'cache', dir: here.libtorch.dir }, addon: { path: here.addon.path } });
  t.is(description.runtime.buildInfo.torchVersion.split('.').slice(0, 2).join('.'), here.libtorch.versionMinor); // it loaded
  t.true(description.libtorchRejected.some((r: { source: string; reason: string }) => r.source === 'python' && r.reason.startsWith('torch 2.11.0+cpu (cpu): no comeba build')),
    JSON.stringify(description.libtorchRejected));
});
