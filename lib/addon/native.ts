// The only loader of comeba.node. Order: list the libtorch installs (lib/addon/libtorch.ts), take the first one
// for which a build exists (made for its torch minor, ABI and variant), preload its libraries so the
// addon's sonames resolve without LD_LIBRARY_PATH or RUNPATH, load the build, and check the torch version
// it reports against the one preloaded.

import { constants } from 'node:os';
import { createRequire } from 'node:module';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AddonNotFoundError, ComebaError, LibtorchNotFoundError, LibtorchVersionMismatchError } from '../errors.js';
import { libtorchNotFound, listLibtorch, minorOf, type LibtorchInfo, type LibtorchVariant, type RejectedCandidate } from './libtorch.js';
import type { NativeAddon } from './types.js';

/** Written beside every comeba.node by scripts/build.mjs and scripts/prebuild.mjs. */
export interface BuildInfo {
  torchVersion: string;
  torchMinor: string;
  cxx11Abi: boolean;
  variant: LibtorchVariant;
  /** Newest GLIBC_x.y symbol version the binary needs. */
  glibc: string;
  napi: number;
  builtAt: string;
}

export interface AddonChoice {
  path: string;
  kind: 'source' | 'prebuild';
  buildInfo: BuildInfo;
}

export interface RejectedAddon {
  path: string;
  reason: string;
  /** Set when the build is for another torch minor. */
  torchVersion?: string;
}

/** Which libtorch and which build go together, and why the others were passed over. */
export interface NativeResolution {
  /** The libtorch the build was chosen for; with no build, the first usable one (what a source build targets). */
  libtorch?: LibtorchInfo;
  libtorchRejected: RejectedCandidate[];
  addon?: AddonChoice;
  /** The builds rejected for `libtorch`. */
  addonRejected: RejectedAddon[];
}

/** Everything `comeba inspect` shows; filled as far as loading got. */
export interface NativeDescription extends NativeResolution {
  packageRoot: string;
  runtime?: { buildInfo: ReturnType<NativeAddon['buildInfo']>; cuda: ReturnType<NativeAddon['cudaInfo']> };
  error?: { name: string; code?: string; message: string };
}

// lib/addon/native.ts under tsx and dist/addon/native.js once compiled both sit two levels below the package root.
export const packageRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));

const RTLD_NODELETE = 0x1000; // Linux value; not exported by os.constants.dlopen
/** The N-API version the addon is built for: package.json's `binary.napi_versions`, the one place it is written. */
export const napiVersion: number = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { binary: { napi_versions: number[] } }).binary.napi_versions[0];

interface PrebuildTags { file: string; runtime?: string; napi?: boolean; libc?: string }
interface NodeGypBuild {
  resolve(dir: string): string;
  parseTags(file: string): PrebuildTags | undefined;
  matchTags(runtime: string, abi: string | undefined): (tags: PrebuildTags | undefined) => boolean;
}
const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as NodeGypBuild;

let loaded: NativeAddon | undefined;
let progress: NativeResolution = { libtorchRejected: [], addonRejected: [] };

/**
 * The first libtorch, in discovery order, for which a build in `root` fits; each libtorch passed over for
 * want of a build is listed with the builds it had. Never throws for a missing libtorch or build.
 */
export function resolveNative(root: string = packageRoot): NativeResolution {
  const { candidates, rejected } = listLibtorch();
  const libtorchRejected = [...rejected];
  let first: { libtorch: LibtorchInfo; addonRejected: RejectedAddon[] } | undefined;
  for (const libtorch of candidates) {
    const { choice, rejected: addonRejected } = chooseAddon(libtorch, root);
    if (choice) return { libtorch, libtorchRejected, addon: choice, addonRejected };
    first ??= { libtorch, addonRejected };
    libtorchRejected.push({ source: libtorch.source, dir: libtorch.dir, reason: `torch ${libtorch.version} (${libtorch.variant}): ${noBuildReason(addonRejected)}` });
  }
  // No build fits any: report the first libtorch as the one to build for, without listing it as skipped.
  return first
    ? { ...first, libtorchRejected: libtorchRejected.filter((r) => r.dir !== first!.libtorch.dir) }
    : { libtorchRejected, addonRejected: [] };
}

function noBuildReason(rejected: RejectedAddon[]): string {
  const others = [...new Set(rejected.map((r) => r.torchVersion).filter(Boolean))];
  return others.length > 0 ? `no comeba build for it (builds exist for torch ${others.join(', ')})` : 'no comeba build for it';
}

/** Loads the addon once per process; later calls return the same object. Failures are not cached. */
export function loadNative(): NativeAddon {
  if (loaded) return loaded;
  progress = { libtorchRejected: [], addonRejected: [] }; // what describeNative shows if resolving throws
  progress = resolveNative();
  const { libtorch, addon: choice, libtorchRejected, addonRejected } = progress;
  if (!libtorch) throw libtorchNotFound(libtorchRejected);
  if (!choice) throw noAddonError(libtorch, addonRejected);
  preloadLibtorch(libtorch);
  const addon = dlopenAddon(choice.path);
  checkRuntimeVersion(addon, libtorch, choice.path);
  loaded = addon;
  return addon;
}

/** Like loadNative, but reports instead of throwing: what was found, what was chosen, what failed. */
export function describeNative(): NativeDescription {
  try {
    const addon = loadNative();
    return { packageRoot, ...progress, runtime: { buildInfo: addon.buildInfo(), cuda: addon.cudaInfo() } };
  } catch (err) {
    const e = err as Error & { code?: string };
    return { packageRoot, ...progress, error: { name: e.name, code: e.code, message: e.message } };
  }
}

// libtorch.so alone would pull in the rest through its RUNPATH ($ORIGIN); preloading c10 and
// torch_cpu first also covers copies without one. RTLD_NODELETE keeps each library mapped after
// process.dlopen fails with "did not self-register" (none of them is a Node module).
function preloadLibtorch(torch: LibtorchInfo): void {
  for (const name of ['libc10.so', 'libtorch_cpu.so', 'libtorch.so']) {
    const path = join(torch.libDir, name);
    try {
      process.dlopen({ exports: {} }, path, constants.dlopen.RTLD_NOW | RTLD_NODELETE);
    } catch (err) {
      if ((err as Error).message.includes('did not self-register')) continue;
      throw new LibtorchNotFoundError(`libtorch at ${torch.dir} (${torch.source}) could not be loaded: ${(err as Error).message}`, { cause: err });
    }
  }
}

// RTLD_NOW turns a symbol missing from this libtorch into a catchable error here, not a crash later.
function dlopenAddon(path: string): NativeAddon {
  const module = { exports: {} as NativeAddon };
  try {
    process.dlopen(module, path, constants.dlopen.RTLD_NOW);
  } catch (err) {
    const message = (err as Error).message;
    const hint = 'rebuild it with `npx comeba build`';
    throw message.includes('undefined symbol')
      ? new LibtorchVersionMismatchError(`${path} does not match the libtorch loaded (${message}); ${hint}`, { cause: err })
      : new AddonNotFoundError(`${path} could not be loaded: ${message}; ${hint}`, { cause: err });
  }
  return module.exports;
}

function checkRuntimeVersion(addon: NativeAddon, torch: LibtorchInfo, path: string): void {
  const reported = addon.buildInfo();
  if (minorOf(reported.torchVersion) !== torch.versionMinor || reported.cxx11Abi !== torch.cxx11Abi) {
    throw new LibtorchVersionMismatchError(
      `${path} reports torch ${reported.torchVersion} (cxx11Abi=${reported.cxx11Abi}) but libtorch ${torch.version} ` +
      `(cxx11Abi=${torch.cxx11Abi}) was loaded from ${torch.dir}; its build-info JSON is wrong: rebuild with \`npx comeba build\``);
  }
}

// ---- choosing a build ------------------------------------------------------------------------

/**
 * A source build (build/Release, found the way node-gyp-build finds it) wins when it fits; otherwise a
 * prebuild for this platform and runtime with the same torch minor and ABI. A CUDA libtorch prefers a
 * CUDA build but accepts a CPU one (both link only the generic libtorch API, and the CUDA backend
 * comes with the preloaded libtorch.so); a CPU libtorch takes CPU builds only. `root` is the package
 * folder holding build/ and prebuilds/ (tests pass a temporary one).
 */
export function chooseAddon(torch: LibtorchInfo, root: string = packageRoot): { choice?: AddonChoice; rejected: RejectedAddon[] } {
  const rejected: RejectedAddon[] = [];
  const fitting: AddonChoice[] = [];
  for (const candidate of [...sourceBuilds(root), ...prebuilds(root)]) {
    const info = candidate.buildInfo;
    const reason = info ? incompatibility(info, torch) : `no build-info file ${buildInfoPath(candidate.path)}`;
    if (!reason) fitting.push(candidate as AddonChoice);
    else rejected.push({ path: candidate.path, reason, torchVersion: info && info.torchMinor !== torch.versionMinor ? info.torchVersion : undefined });
  }
  const choice = fitting.find((c) => c.kind === 'source') ?? fitting.find((c) => c.buildInfo.variant === torch.variant) ?? fitting[0];
  return { choice, rejected };
}

type Candidate = Omit<AddonChoice, 'buildInfo'> & { buildInfo?: BuildInfo };

function sourceBuilds(root: string): Candidate[] {
  let path: string;
  try {
    path = nodeGypBuild.resolve(root);
  } catch {
    return []; // node-gyp-build throws "No native build was found" when there is neither kind
  }
  return relative(root, path).startsWith(`build${sep}`) ? [{ path, kind: 'source', buildInfo: readBuildInfo(path) }] : [];
}

// node-gyp-build's tag rules select the files valid for this platform and runtime; it ignores our
// own torch<maj>_<min> and cpu/cuda tags, which the build-info JSON answers instead.
function prebuilds(root: string): Candidate[] {
  const dir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((file) => nodeGypBuild.parseTags(file))
    .filter(nodeGypBuild.matchTags('node', process.versions.modules))
    .map((tags) => join(dir, tags!.file))
    .map((path) => ({ path, kind: 'prebuild', buildInfo: readBuildInfo(path) }));
}

function incompatibility(info: BuildInfo, torch: LibtorchInfo): string | undefined {
  if (info.torchMinor !== torch.versionMinor) return `built for torch ${info.torchVersion}, found ${torch.version}`;
  if (info.cxx11Abi !== torch.cxx11Abi) return `built with cxx11Abi=${info.cxx11Abi}, libtorch has ${torch.cxx11Abi}`;
  if (info.variant === 'cuda' && torch.variant === 'cpu') return 'a CUDA build needs a CUDA libtorch';
  return undefined;
}

/**
 * The error loadNative throws when no libtorch found has a fitting build: what was skipped, and the fixes.
 * The advice keeps the variant: a CUDA torch is never to be replaced by a CPU one.
 */
export function noAddonError(torch: LibtorchInfo, rejected: RejectedAddon[]): ComebaError {
  const listed = rejected.map((r) => `  - ${r.path}: ${r.reason}`).join('\n');
  const other = rejected.find((r) => r.torchVersion)?.torchVersion;
  if (other) {
    return new LibtorchVersionMismatchError(
      `no comeba build for libtorch ${torch.version} (${torch.variant}, ${torch.source}: ${torch.dir}); there is one for torch ${other}:\n${listed}\n` +
      `Run \`npx comeba build\` to build from source against ${torch.version}, or \`npx comeba libtorch install --variant ${torch.variant}\` ` +
      'to put a libtorch that a prebuild fits into the per-user cache (your own torch stays as it is).');
  }
  return new AddonNotFoundError(
    `no comeba build found for libtorch ${torch.version} (${torch.variant}, cxx11Abi=${torch.cxx11Abi})` +
    `${listed ? `:\n${listed}` : ''}\nRun \`npx comeba build\` to build it from source.`);
}

// ---- build-info files, shared with the build scripts -----------------------------------------

export function buildInfoPath(nodeFile: string): string {
  return nodeFile.replace(/\.node$/, '.json');
}

function readBuildInfo(nodeFile: string): BuildInfo | undefined {
  const path = buildInfoPath(nodeFile);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as BuildInfo) : undefined;
}

/** What `nodeFile`, just built against `torch`, needs at load time. */
export function createBuildInfo(nodeFile: string, torch: LibtorchInfo): BuildInfo {
  return {
    torchVersion: torch.version,
    torchMinor: torch.versionMinor,
    cxx11Abi: torch.cxx11Abi,
    variant: torch.variant,
    glibc: requiredGlibc(nodeFile),
    napi: napiVersion,
    builtAt: new Date().toISOString(),
  };
}

export function writeBuildInfo(nodeFile: string, info: BuildInfo): void {
  writeFileSync(buildInfoPath(nodeFile), JSON.stringify(info, null, 2) + '\n');
}

/** Prebuildify-style name with our extra tags, e.g. node.napi.glibc.torch2_13.cpu.node. */
export function prebuildFileName(torch: LibtorchInfo): string {
  return `node.napi.glibc.torch${torch.versionMinor.replace('.', '_')}.${torch.variant}.node`;
}

// The version strings of needed glibc symbols sit in the binary as plain `GLIBC_2.xx` text.
function requiredGlibc(nodeFile: string): string {
  const versions = [...readFileSync(nodeFile).toString('latin1').matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [+m[1], +m[2]]);
  const [major, minor] = versions.sort((a, b) => b[0] - a[0] || b[1] - a[1])[0] ?? [0, 0];
  return `${major}.${minor}`;
}
