// `comeba libtorch install|which`: fill the per-user libtorch cache from a torch wheel, or show
// which libtorch the loader would use.

import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { formatBytes } from '../io/files.js';
import { chooseVariant, formatRejected, installLibtorch, libtorchCacheRoot, libtorchVariants, type LibtorchVariant } from '../addon/libtorch.js';
import { resolveNative } from '../addon/native.js';
import { progressLine } from './progress.js';

export const summary = 'install libtorch into the per-user cache, or show which libtorch is used';

const usage = `usage: comeba libtorch install [--variant cpu|cuda] [--version X] [--force]
       comeba libtorch which

install   downloads torch==X with pip and unpacks its libtorch into
          ${libtorchCacheRoot()}/<version>-<variant>/
          --variant: default COMEBA_VARIANT, else cuda where an NVIDIA driver ≥ ${libtorchVariants.cuda.minDriver} runs, else cpu
          --version: default cpu → ${libtorchVariants.cpu.version} (about ${formatBytes(libtorchVariants.cpu.downloadBytes)}), cuda → ${libtorchVariants.cuda.version} (about ${formatBytes(libtorchVariants.cuda.downloadBytes)} with its CUDA runtime)
          pip index: COMEBA_PIP_INDEX_URL, else pip's configuration plus PyTorch's index for the variant
which     prints the libtorch the addon loads with (the first of COMEBA_LIBTORCH or LIBTORCH, python3's
          torch, the cache entries, for which a build exists) and why other candidates were skipped`;

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'install') return install(rest);
  if (sub === 'which') {
    parseArgs({ args: rest, options: {} });  // takes no options: refuse any
    return which();
  }
  if (sub === '--help' || sub === '-h') {
    console.log(usage);
    return 0;
  }
  throw new InvalidArgumentError(`${sub === undefined ? 'a subcommand is needed' : `unknown subcommand '${sub}'`}: use install or which (see comeba libtorch --help)`);
}

async function install(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { variant: { type: 'string' }, version: { type: 'string' }, force: { type: 'boolean', default: false } },
  });
  if (values.variant !== undefined && values.variant !== 'cpu' && values.variant !== 'cuda') {
    throw new InvalidArgumentError(`--variant must be cpu or cuda, not '${values.variant}'`);
  }
  // The version names a cache folder and a pip requirement: only a plain torch version, e.g. 2.13.0 or 2.13.0+cpu.
  if (values.version !== undefined && !/^\d+\.\d+(\.\d+)?(\+[A-Za-z0-9.]+)?$/.test(values.version)) {
    throw new InvalidArgumentError(`--version must be a torch version such as ${libtorchVariants.cpu.version}, not '${values.version}'`);
  }
  let variant = values.variant as LibtorchVariant | undefined;
  if (variant === undefined) {
    const choice = chooseVariant();
    if (choice.warning) console.error(`warning: ${choice.warning}`);
    console.log(`variant ${choice.variant} (${choice.reason})`);
    variant = choice.variant;
  }
  const progress = progressLine('downloading');
  const installed = await installLibtorch({
    variant, version: values.version, force: values.force, log: (line) => progress.log(line), onProgress: (bytes) => progress.update(bytes),
  }).finally(() => progress.end());
  // The loader takes the first libtorch a build fits: say so when another one still wins.
  const { libtorch } = resolveNative();
  if (libtorch && libtorch.dir !== installed.dir) {
    console.log(`note: the addon loads with libtorch from ${libtorch.source} (${libtorch.dir}); set COMEBA_LIBTORCH=${installed.dir} to use this one`);
  }
  return 0;
}

function which(): number {
  const { libtorch, addon, libtorchRejected } = resolveNative();
  if (libtorch) console.log(`${libtorch.dir}\n  ${libtorch.version} (${libtorch.variant}, cxx11 ABI: ${libtorch.cxx11Abi ? 'yes' : 'no'}) from ${libtorch.source}`);
  if (libtorch) console.log(addon ? `  addon: ${addon.path} (${addon.kind})` : '  no comeba build for it yet: `npx comeba build` compiles one');
  if (libtorchRejected.length > 0) console.log(`skipped:\n${formatRejected(libtorchRejected)}`);
  if (!libtorch) console.log('no libtorch found: run `npx comeba libtorch install` or set COMEBA_LIBTORCH');
  return libtorch ? 0 : 1;
}
