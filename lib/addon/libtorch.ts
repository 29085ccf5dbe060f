// Finds the libtorch the addon is built against and loaded with, tch-rs style: an explicit directory
// from the environment, then an installed Python torch, then the per-user cache that
// `comeba libtorch install` (and the package's install script) fills from a torch wheel. Which of these
// the addon actually loads with is lib/addon/native.ts's choice: the first one a build fits.
// Nothing here imports torch or needs CUDA.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InvalidArgumentError, LibtorchNotFoundError } from '../errors.js';
import { comebaCacheDir, formatBytes } from '../io/files.js';

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

/** Every usable libtorch in discovery order, and why the others were passed over. */
export interface LibtorchCandidates {
  candidates: LibtorchInfo[];
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

export interface VariantSpec {
  /** The torch release installed by default, and the one the package ships a prebuild for. */
  version: string;
  /** PyTorch's own index for this variant (PyPI has no `+cpu` builds), used unless COMEBA_PIP_INDEX_URL is set. */
  pipIndex: string;
  /** What the download weighs (wheels, measured from the local index), to say before it starts. */
  downloadBytes: number;
  /** Lowest NVIDIA driver branch the variant's CUDA runtime runs on. */
  minDriver?: number;
}

/** The one table of supported libtorch builds: what install downloads, and what `pack:release` prebuilds. */
export const libtorchVariants: Record<LibtorchVariant, VariantSpec> = {
  cpu: { version: '2.13.0+cpu', pipIndex: 'https://download.pytorch.org/whl/cpu', downloadBytes: 191_794_682 },
  // CUDA 13.0 runtime wheels (nvidia-*-cu13): drivers of the 580 branch or newer.
  cuda: { version: '2.14.1', pipIndex: 'https://download.pytorch.org/whl/cu130', downloadBytes: 2_742_618_267, minDriver: 580 },
};

export const libtorchVariantNames = Object.keys(libtorchVariants) as LibtorchVariant[];

/** The first usable libtorch in discovery order, never throwing: what a source build compiles against. */
export function searchLibtorch(): LibtorchSearch {
  const { candidates, rejected } = listLibtorch();
  return { found: candidates[0], rejected };
}

/**
 * Every usable libtorch in discovery order: COMEBA_LIBTORCH (or LIBTORCH) alone when set, else python3's
 * torch, then each cache entry (the preferred variant first, then the newest). COMEBA_VARIANT drops the
 * other variant. The loader takes the first one for which a build exists.
 */
export function listLibtorch(env: NodeJS.ProcessEnv = process.env): LibtorchCandidates {
  const rejected: RejectedCandidate[] = [];
  const wanted = variantFromEnv(env);
  const keep = (info: LibtorchInfo | undefined): info is LibtorchInfo => {
    if (!info) return false;
    if (!wanted || info.variant === wanted) return true;
    rejected.push({ source: info.source, dir: info.dir, reason: `a ${info.variant} libtorch, and COMEBA_VARIANT=${wanted}` });
    return false;
  };
  const explicit = envCandidate(rejected);
  // An explicit variable is authoritative: falling back would hide a typo behind another torch.
  if (explicit || rejected.length > 0) return { candidates: [explicit].filter(keep), rejected };
  const python = pythonCandidate(rejected);
  const cached = cacheCandidates(rejected, wanted ?? (detectNvidiaDriver() ? 'cuda' : 'cpu'));
  return { candidates: [python, ...cached].filter(keep), rejected };
}

/** COMEBA_VARIANT, checked; undefined when unset. */
export function variantFromEnv(env: NodeJS.ProcessEnv = process.env): LibtorchVariant | undefined {
  const value = env.COMEBA_VARIANT;
  if (!value) return undefined;
  if (value === 'cpu' || value === 'cuda') return value;
  throw new InvalidArgumentError(`COMEBA_VARIANT must be cpu or cuda, not '${value}'`);
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
    '  npx comeba libtorch install            (the CUDA or CPU torch wheel, by the NVIDIA driver, into the per-user cache)',
    '  export COMEBA_LIBTORCH=/path/to/libtorch  (a libtorch zip or a python torch/ package directory)',
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

// The preferred variant first (a GPU machine's CUDA install before its CPU one), then the newest install.
function cacheCandidates(rejected: RejectedCandidate[], preferred: LibtorchVariant): LibtorchInfo[] {
  const root = libtorchCacheRoot();
  const rank = (m: CacheManifest) => (m.variant === preferred ? 0 : 1);
  const entries = listDirs(root)
    .map((name) => ({ entry: join(root, name), manifest: readManifest(join(root, name)) }))
    .filter((e): e is { entry: string; manifest: CacheManifest } => e.manifest !== undefined)
    .sort((a, b) => rank(a.manifest) - rank(b.manifest) || b.manifest.installedAt.localeCompare(a.manifest.installedAt));
  if (entries.length === 0) {
    rejected.push({ source: 'cache', dir: root, reason: 'nothing installed (run `npx comeba libtorch install`)' });
    return [];
  }
  return entries.map(({ entry }) => acceptDir(join(entry, 'torch'), 'cache', rejected)).filter((f): f is LibtorchInfo => f !== undefined);
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

// A manifest that does not parse is an entry half-written by hand or by another tool: not an install.
function readManifest(entry: string): CacheManifest | undefined {
  const text = readText(join(entry, manifestName));
  try {
    const manifest = text ? (JSON.parse(text) as CacheManifest) : undefined;
    return typeof manifest?.installedAt === 'string' && (manifest.variant === 'cpu' || manifest.variant === 'cuda') ? manifest : undefined;
  } catch {
    return undefined;
  }
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

// ---- which variant this machine gets ---------------------------------------------------------

export interface NvidiaDriver {
  version: string;
  /** The branch, e.g. 580 for 580.95.05: what CUDA's minimum-driver tables are written in. */
  major: number;
}

/**
 * The loaded NVIDIA kernel driver: /proc/driver/nvidia/version ("… Kernel Module  580.95.05  …"), else
 * `nvidia-smi`. Undefined on a machine without one (no GPU, or a container without the driver mounted).
 */
export function detectNvidiaDriver(): NvidiaDriver | undefined {
  const proc = readText('/proc/driver/nvidia/version');
  const version = proc?.match(/Kernel Module[^\d]*(\d+\.\d+(?:\.\d+)?)/)?.[1] ?? nvidiaSmiDriver();
  return version ? { version, major: Number(version.split('.')[0]) } : undefined;
}

function nvidiaSmiDriver(): string | undefined {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=driver_version', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
    return out.match(/^\s*(\d+\.\d+(?:\.\d+)?)/)?.[1];
  } catch {
    return undefined;
  }
}

export interface VariantChoice {
  variant: LibtorchVariant;
  /** Why, in words: what the install log says. */
  reason: string;
  /** Set when a GPU was found but cannot take the CUDA build: one line that says what to do. */
  warning?: string;
}

/** CPU or CUDA for this machine: COMEBA_VARIANT when set, else CUDA where an NVIDIA driver new enough for it runs. */
export function chooseVariant(driver: NvidiaDriver | undefined = detectNvidiaDriver(), env: NodeJS.ProcessEnv = process.env): VariantChoice {
  const wanted = variantFromEnv(env);
  if (wanted) return { variant: wanted, reason: `COMEBA_VARIANT=${wanted}` };
  if (!driver) return { variant: 'cpu', reason: 'no NVIDIA driver found' };
  const cuda = libtorchVariants.cuda;
  if (driver.major < cuda.minDriver!) {
    return {
      variant: 'cpu',
      reason: `NVIDIA driver ${driver.version} is too old for CUDA`,
      warning: `NVIDIA driver ${driver.version} is older than ${cuda.minDriver}, which torch ${cuda.version}'s CUDA 13 runtime needs: ` +
        `installing the CPU libtorch instead. Update the driver to ${cuda.minDriver} or newer, then run \`npx comeba libtorch install --variant cuda\`.`,
    };
  }
  return { variant: 'cuda', reason: `NVIDIA driver ${driver.version}` };
}

// ---- installing into the cache --------------------------------------------------------------

export interface InstallOptions {
  variant: LibtorchVariant;
  /** Defaults to `libtorchVariants[variant].version`. */
  version?: string;
  /** Replace an existing install of the same version and variant. */
  force?: boolean;
  log?: (line: string) => void;
  /** Called every few seconds during the download with the bytes received so far. */
  onProgress?: (bytes: number) => void;
}

// Only these parts of a wheel make up a libtorch; the rest is the Python package.
const wheelParts = ['torch/lib/', 'torch/include/', 'torch/share/cmake/', 'torch/version.py'];

/**
 * Downloads the torch wheel with pip (COMEBA_PIP_INDEX_URL, else PyTorch's index for the variant besides
 * whatever pip is configured with) and unpacks its libtorch into `<cache>/<version>-<variant>/torch/`.
 * The entry appears atomically. A CUDA wheel's libraries find the NVIDIA runtime through RUNPATH
 * `$ORIGIN/../../nvidia/...`, so its `nvidia-*` dependencies are unpacked beside it into `<entry>/nvidia/`.
 */
export async function installLibtorch(options: InstallOptions): Promise<LibtorchInfo> {
  const { variant, force = false, log = () => {} } = options;
  const version = options.version ?? libtorchVariants[variant].version;
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
    await fillEntry(staging, version, variant, log, options.onProgress);
    replaceDir(staging, entry);
    log(`installed libtorch ${version} (${variant}) in ${entry} (${formatBytes(treeBytes(entry))} on disk)`);
    return describeDir(join(entry, 'torch'), 'cache');
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

async function fillEntry(staging: string, version: string, variant: LibtorchVariant, log: (line: string) => void, onProgress?: (bytes: number) => void): Promise<void> {
  const downloads = join(staging, '.downloads');
  const spec = libtorchVariants[variant];
  const expected = version === spec.version ? ` (about ${formatBytes(spec.downloadBytes)} in all)` : '';
  log(`downloading torch==${version} with pip${variant === 'cuda' ? ' and its CUDA runtime wheels' : ''}${expected}`);
  const wheel = await pipDownloadTorch(version, variant, downloads, onProgress);
  log(`  ${basename(wheel)}: ${formatBytes(statSync(wheel).size)}`);
  log(`unpacking ${wheelParts.join(' ')}`);
  unzip(wheel, wheelParts, staging);
  const torchDir = join(staging, 'torch');
  const problem = libtorchDirProblem(torchDir);
  if (problem) throw new LibtorchNotFoundError(`the torch==${version} wheel does not hold a usable libtorch: ${problem}`);
  const info = describeDir(torchDir, 'cache');
  if (info.variant !== variant) {
    throw new LibtorchNotFoundError(`torch==${version} is a ${info.variant} build, not ${variant}: pass --version for a ${variant} wheel`);
  }
  if (variant === 'cuda') await installNvidiaLibraries(wheel, variant, downloads, staging, log, onProgress);
  rmSync(downloads, { recursive: true, force: true });
  const manifest: CacheManifest = { version: info.version, variant, cxx11Abi: info.cxx11Abi, installedAt: new Date().toISOString() };
  writeFileSync(join(staging, manifestName), JSON.stringify(manifest, null, 2) + '\n');
}

// The CUDA runtime comes as separate wheels, some through the `cuda-toolkit[...]` meta package: let
// pip resolve exactly the Linux CUDA requirements of this torch wheel, then keep their nvidia/ trees.
async function installNvidiaLibraries(torchWheel: string, variant: LibtorchVariant, downloads: string, staging: string, log: (line: string) => void, onProgress?: (bytes: number) => void): Promise<void> {
  const requirements = cudaRequirements(torchWheel);
  log(`downloading the CUDA runtime wheels: ${requirements.join(' ')}`);
  const dest = join(downloads, 'cuda');
  const torchBytes = treeBytes(downloads); // the torch wheel, received before
  await pip(['download', '--only-binary=:all:', '--quiet', '-d', dest, ...indexArgs(variant), ...requirements], dest,
    onProgress && ((bytes) => onProgress(torchBytes + bytes)));
  const wheels = listFiles(dest).filter((f) => f.endsWith('.whl'));
  log(`  ${wheels.length} wheels: ${formatBytes(wheels.reduce((sum, w) => sum + statSync(join(dest, w)).size, 0))}; unpacking their nvidia/ trees`);
  for (const wheel of wheels) unzip(join(dest, wheel), ['nvidia/'], staging);
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

// COMEBA_PIP_INDEX_URL replaces every index (a mirror, or a local one); otherwise PyTorch's index for the
// variant is added to pip's own configuration, since PyPI does not carry the `+cpu` wheels.
function indexArgs(variant: LibtorchVariant): string[] {
  const indexUrl = process.env.COMEBA_PIP_INDEX_URL;
  return indexUrl ? ['--index-url', indexUrl] : ['--extra-index-url', libtorchVariants[variant].pipIndex];
}

async function pipDownloadTorch(version: string, variant: LibtorchVariant, dest: string, onProgress?: (bytes: number) => void): Promise<string> {
  await pip(['download', '--no-deps', '--only-binary=:all:', '--quiet', '-d', dest, ...indexArgs(variant), `torch==${version}`], dest, onProgress);
  const wheel = listFiles(dest).find((f) => f.startsWith('torch-') && f.endsWith('.whl'));
  if (!wheel) throw new LibtorchNotFoundError(`pip download torch==${version} produced no wheel in ${dest}`);
  return join(dest, wheel);
}

/**
 * `python3 -m pip ARGS`, reporting progress as the bytes under `watch`: pip's temporary files go there
 * too (TMPDIR), so a wheel being received counts before pip moves it into place.
 */
function pip(args: string[], watch: string, onProgress?: (bytes: number) => void): Promise<void> {
  const tmp = join(watch, '.pip-tmp');
  mkdirSync(tmp, { recursive: true });
  return new Promise<void>((resolve, reject) => {
    const child = spawn('python3', ['-m', 'pip', ...args], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-8192)));
    const timer = onProgress && setInterval(() => onProgress(treeBytes(watch)), 2000);
    const done = (err?: Error) => {
      if (timer) clearInterval(timer);
      rmSync(tmp, { recursive: true, force: true });
      if (err) reject(err);
      else resolve();
    };
    child.on('error', (err) => done(new LibtorchNotFoundError(`installing libtorch failed: python3 -m pip could not run: ${firstLine(err)}`, { cause: err })));
    child.on('close', (code, signal) => done(code === 0 ? undefined : new LibtorchNotFoundError(
      `installing libtorch failed: python3 -m pip ${args.slice(0, 2).join(' ')} … exited with ${code ?? signal}: ` +
      `${stderr.trim().split('\n').filter(Boolean).at(-1) ?? '(no output)'}`)));
  });
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

/** Bytes of the regular files under `dir` (0 when it is missing or vanishes while being read). */
export function treeBytes(dir: string): number {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((d) => d.isFile())
      .reduce((sum, d) => sum + (statSync(join(d.parentPath ?? d.path, d.name), { throwIfNoEntry: false })?.size ?? 0), 0);
  } catch {
    return 0;
  }
}
