// Finds the libtorch the addon is built against and loaded with, tch-rs style: an explicit directory
// from the environment, then an installed Python torch, then the per-user cache that
// `comeba libtorch install` fills from a torch wheel. Nothing here imports torch or needs CUDA.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { LibtorchNotFoundError } from './errors.js';
import { comebaCacheDir } from './files.js';

export type LibtorchVariant = 'cpu' | 'cuda';
export type LibtorchSource = 'env' | 'python' | 'cache';

export interface LibtorchInfo {
  /** Directory holding lib/, include/ and share/cmake/. */
  dir: string;
  libDir: string;
  includeDirs: string[];
  /** CMAKE_PREFIX_PATH entry for find_package(Torch). */
  cmakePrefix: string;
  /** Full version, e.g. "2.13.0+cpu". */
  version: string;
  /** "major.minor": one addon build per torch minor. */
  versionMinor: string;
  variant: LibtorchVariant;
  cxx11Abi: boolean;
  source: LibtorchSource;
}

export interface RejectedCandidate {
  source: LibtorchSource;
  dir?: string;
  reason: string;
}

export interface LibtorchSearch {
  found?: LibtorchInfo;
  rejected: RejectedCandidate[];
}

/** What `installLibtorch` writes beside an unpacked wheel in the cache. */
interface CacheManifest {
  version: string;
  variant: LibtorchVariant;
  cxx11Abi: boolean;
  installedAt: string;
}

const envVars = ['COMEBA_LIBTORCH', 'LIBTORCH'] as const;
const manifestName = 'comeba-libtorch.json';
export const defaultVersions: Record<LibtorchVariant, string> = { cpu: '2.13.0+cpu', cuda: '2.14.1' };

/** Probes every candidate in order and never throws; `found` is the first usable one. */
export function searchLibtorch(): LibtorchSearch {
  const rejected: RejectedCandidate[] = [];
  for (const candidate of [envCandidate, pythonCandidate, cacheCandidate]) {
    const found = candidate(rejected);
    if (found) return { found, rejected };
    // An explicit variable is authoritative: falling back would hide a typo behind another torch.
    if (rejected.some((r) => r.source === 'env')) break;
  }
  return { rejected };
}

/** The libtorch to use, plus why earlier candidates were passed over; throws if there is none. */
export function findLibtorch(): { libtorch: LibtorchInfo; rejected: RejectedCandidate[] } {
  const { found, rejected } = searchLibtorch();
  if (!found) throw libtorchNotFound(rejected);
  return { libtorch: found, rejected };
}

export function formatRejected(rejected: RejectedCandidate[]): string {
  return rejected.map((r) => `  - ${r.source}${r.dir ? ` (${r.dir})` : ''}: ${r.reason}`).join('\n');
}

/** The error for a search that found nothing: what was tried, and the commands that fix it. */
export function libtorchNotFound(rejected: RejectedCandidate[]): LibtorchNotFoundError {
  return new LibtorchNotFoundError([
    'libtorch was not found. Tried:',
    formatRejected(rejected),
    'Fix it with one of:',
    '  npx comeba libtorch install            (downloads the CPU torch wheel into the per-user cache)',
    '  export COMEBA_LIBTORCH=/path/to/libtorch  (a libtorch zip or a python torch/ package directory)',
    `  python3 -m pip install torch==${defaultVersions.cpu}`,
  ].join('\n'));
}

function envCandidate(rejected: RejectedCandidate[]): LibtorchInfo | undefined {
  const name = envVars.find((n) => process.env[n]);
  if (!name) return undefined;
  const dir = process.env[name]!;
  const problem = libtorchDirProblem(dir);
  if (!problem) return describeDir(dir, 'env');
  rejected.push({ source: 'env', dir, reason: `${name} is set but ${problem}; fix or unset it` });
  return undefined;
}

// find_spec locates the package without importing it (~30 ms instead of ~2 s for `import torch`).
const findSpecScript =
  "import importlib.util, json, sys; s = importlib.util.find_spec('torch'); " +
  'print(json.dumps([sys.executable, s.origin if s else None]))';

function pythonCandidate(rejected: RejectedCandidate[]): LibtorchInfo | undefined {
  let out: string;
  try {
    out = execFileSync('python3', ['-c', findSpecScript], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    rejected.push({ source: 'python', reason: `python3 could not run: ${firstLine(err)}` });
    return undefined;
  }
  const [python, origin] = JSON.parse(out) as [string, string | null];
  if (!origin) {
    rejected.push({ source: 'python', reason: `no torch package for ${python}` });
    return undefined;
  }
  return acceptDir(dirname(origin), 'python', rejected);
}

// The newest install wins when several versions or variants are cached.
function cacheCandidate(rejected: RejectedCandidate[]): LibtorchInfo | undefined {
  const root = libtorchCacheRoot();
  const entries = listDirs(root)
    .map((name) => ({ entry: join(root, name), manifest: readManifest(join(root, name)) }))
    .filter((e): e is { entry: string; manifest: CacheManifest } => e.manifest !== undefined)
    .sort((a, b) => b.manifest.installedAt.localeCompare(a.manifest.installedAt));
  if (entries.length === 0) {
    rejected.push({ source: 'cache', dir: root, reason: 'nothing installed (run `npx comeba libtorch install`)' });
    return undefined;
  }
  for (const { entry } of entries) {
    const found = acceptDir(join(entry, 'torch'), 'cache', rejected);
    if (found) return found;
  }
  return undefined;
}

function acceptDir(dir: string, source: LibtorchSource, rejected: RejectedCandidate[]): LibtorchInfo | undefined {
  const problem = libtorchDirProblem(dir);
  if (!problem) return describeDir(dir, source);
  rejected.push({ source, dir, reason: problem });
  return undefined;
}

/** Why `dir` is not a usable libtorch, or undefined when it is. */
function libtorchDirProblem(dir: string): string | undefined {
  const required = ['lib/libtorch.so', 'lib/libtorch_cpu.so', 'lib/libc10.so', 'include/torch/csrc/api/include/torch/torch.h'];
  const missing = required.filter((p) => !existsSync(join(dir, p)));
  if (missing.length > 0) return `missing ${missing.join(', ')}`;
  if (!readVersion(dir)) return 'no version.py or build-version file';
  return undefined;
}

function describeDir(dir: string, source: LibtorchSource): LibtorchInfo {
  const version = readVersion(dir)!;
  const libDir = join(dir, 'lib');
  return {
    dir,
    libDir,
    includeDirs: [join(dir, 'include'), join(dir, 'include/torch/csrc/api/include')],
    cmakePrefix: join(dir, 'share/cmake'),
    version,
    versionMinor: minorOf(version),
    variant: existsSync(join(libDir, 'libtorch_cuda.so')) ? 'cuda' : 'cpu',
    cxx11Abi: detectCxx11Abi(join(libDir, 'libc10.so')),
    source,
  };
}

/** "2.13.0+cpu" → "2.13". */
export function minorOf(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}

// A python package has version.py (`__version__ = '2.13.0+cpu'`); a libtorch zip has build-version.
function readVersion(dir: string): string | undefined {
  const versionPy = readText(join(dir, 'version.py'));
  const fromPy = versionPy?.match(/^__version__\s*=\s*['"]([^'"]+)['"]/m)?.[1];
  return fromPy ?? (readText(join(dir, 'build-version'))?.trim() || undefined);
}

// Under the C++11 ABI std::string lives in std::__cxx11, so libc10's exported names (c10::Error takes
// strings) contain `St7__cxx11`; built with the old ABI, the dynamic symbol table has no such name.
// Reading the bytes avoids `import torch` and its `torch._C._GLIBCXX_USE_CXX11_ABI`.
function detectCxx11Abi(libc10: string): boolean {
  return readFileSync(libc10).includes('St7__cxx11');
}

export function libtorchCacheRoot(): string {
  return comebaCacheDir('libtorch');
}

function readManifest(entry: string): CacheManifest | undefined {
  const text = readText(join(entry, manifestName));
  return text ? (JSON.parse(text) as CacheManifest) : undefined;
}

function readText(path: string): string | undefined {
  return existsSync(path) ? readFileSync(path, 'utf8') : undefined;
}

function listDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((name) => !name.startsWith('.') && statSync(join(dir, name)).isDirectory());
}

function firstLine(err: unknown): string {
  const e = err as { code?: string; stderr?: string; message?: string };
  if (e.code === 'ENOENT') return 'not on PATH';
  const text = e.stderr?.trim() || e.message || String(err);
  return text.split('\n').filter(Boolean).at(-1) ?? text;
}

// ---- installing into the cache --------------------------------------------------------------

export interface InstallOptions {
  variant: LibtorchVariant;
  /** Defaults to `defaultVersions[variant]`. */
  version?: string;
  /** Replace an existing install of the same version and variant. */
  force?: boolean;
  log?: (line: string) => void;
}

// Only these parts of a wheel make up a libtorch; the rest is the Python package.
const wheelParts = ['torch/lib/', 'torch/include/', 'torch/share/cmake/', 'torch/version.py'];

/**
 * Downloads the torch wheel with pip (whatever index pip is configured with, or COMEBA_PIP_INDEX_URL)
 * and unpacks its libtorch into `<cache>/<version>-<variant>/torch/`. The entry appears atomically.
 * A CUDA wheel's libraries find the NVIDIA runtime through RUNPATH `$ORIGIN/../../nvidia/...`, so its
 * `nvidia-*` dependencies are unpacked beside it into `<entry>/nvidia/`.
 */
export function installLibtorch(options: InstallOptions): LibtorchInfo {
  const { variant, force = false, log = () => {} } = options;
  const version = options.version ?? defaultVersions[variant];
  const root = libtorchCacheRoot();
  const entry = join(root, `${version}-${variant}`);
  if (!force && readManifest(entry) && !libtorchDirProblem(join(entry, 'torch'))) {
    log(`libtorch ${version} (${variant}) is already installed in ${entry}`);
    return describeDir(join(entry, 'torch'), 'cache');
  }
  mkdirSync(root, { recursive: true });
  const staging = join(root, `.staging-${version}-${variant}-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  try {
    fillEntry(staging, version, variant, log);
    replaceDir(staging, entry);
    log(`installed libtorch ${version} (${variant}) in ${entry}`);
    return describeDir(join(entry, 'torch'), 'cache');
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function fillEntry(staging: string, version: string, variant: LibtorchVariant, log: (line: string) => void): void {
  const downloads = join(staging, '.downloads');
  log(`downloading torch==${version} with pip (wheel only, no dependencies)`);
  const wheel = pipDownloadTorch(version, downloads);
  log(`unpacking ${wheelParts.join(' ')} from ${wheel}`);
  unzip(wheel, wheelParts, staging);
  const torchDir = join(staging, 'torch');
  const problem = libtorchDirProblem(torchDir);
  if (problem) throw new LibtorchNotFoundError(`the torch==${version} wheel does not hold a usable libtorch: ${problem}`);
  const info = describeDir(torchDir, 'cache');
  if (info.variant !== variant) {
    throw new LibtorchNotFoundError(`torch==${version} is a ${info.variant} build, not ${variant}: pass --version for a ${variant} wheel`);
  }
  if (variant === 'cuda') installNvidiaLibraries(wheel, downloads, staging, log);
  rmSync(downloads, { recursive: true, force: true });
  const manifest: CacheManifest = { version: info.version, variant, cxx11Abi: info.cxx11Abi, installedAt: new Date().toISOString() };
  writeFileSync(join(staging, manifestName), JSON.stringify(manifest, null, 2) + '\n');
}

// The CUDA runtime comes as separate wheels, some through the `cuda-toolkit[...]` meta package: let
// pip resolve exactly the Linux CUDA requirements of this torch wheel, then keep their nvidia/ trees.
function installNvidiaLibraries(torchWheel: string, downloads: string, staging: string, log: (line: string) => void): void {
  const requirements = cudaRequirements(torchWheel);
  log(`downloading the CUDA runtime wheels: ${requirements.join(' ')}`);
  const dest = join(downloads, 'cuda');
  pip(['download', '--only-binary=:all:', '--quiet', '-d', dest, ...indexArgs(), ...requirements]);
  for (const wheel of listFiles(dest).filter((f) => f.endsWith('.whl'))) unzip(join(dest, wheel), ['nvidia/'], staging);
}

// `Requires-Dist: nvidia-nccl-cu13==2.30.7; platform_system == "Linux"` → `nvidia-nccl-cu13==2.30.7`;
// also `cuda-toolkit[cublas,...]==13.0.3`. Python-only extras (cuda-bindings, triton) are left out.
function cudaRequirements(wheel: string): string[] {
  const metadata = python(['-c', readMetadataScript, wheel]);
  return [...metadata.matchAll(/^Requires-Dist: ((?:nvidia-|cuda-toolkit)[^\s;]+)(?:\s*;\s*(.*))?$/gm)]
    .filter((m) => !m[2] || /platform_system\s*==\s*"Linux"/.test(m[2]))
    .map((m) => m[1]);
}

const readMetadataScript =
  'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); ' +
  "print(z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode())";

function indexArgs(): string[] {
  const indexUrl = process.env.COMEBA_PIP_INDEX_URL;
  return indexUrl ? ['--index-url', indexUrl] : [];
}

function pipDownloadTorch(version: string, dest: string): string {
  pip(['download', '--no-deps', '--only-binary=:all:', '--quiet', '-d', dest, ...indexArgs(), `torch==${version}`]);
  const wheel = listFiles(dest).find((f) => f.startsWith('torch-') && f.endsWith('.whl'));
  if (!wheel) throw new LibtorchNotFoundError(`pip download torch==${version} produced no wheel in ${dest}`);
  return join(dest, wheel);
}

function pip(args: string[]): string {
  return python(['-m', 'pip', ...args]);
}

// Python's zipfile, because `unzip` is not always installed; only members under `prefixes`.
const unzipScript =
  'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); p = tuple(sys.argv[3:]); ' +
  'z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith(p)])';

function unzip(wheel: string, prefixes: string[], dest: string): void {
  python(['-c', unzipScript, wheel, dest, ...prefixes]);
}

function python(args: string[]): string {
  try {
    return execFileSync('python3', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (err) {
    throw new LibtorchNotFoundError(`installing libtorch failed: python3 ${args.slice(0, 4).join(' ')} …: ${firstLine(err)}`, { cause: err });
  }
}

// Moves the old entry aside first: rename(2) cannot replace a non-empty directory.
function replaceDir(from: string, to: string): void {
  const old = join(dirname(to), `.old-${basename(to)}-${process.pid}`); // dot: never a search candidate
  if (existsSync(to)) renameSync(to, old);
  renameSync(from, to);
  rmSync(old, { recursive: true, force: true });
}

function listFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}
