// `comeba libtorch install|which`: fill the per-user libtorch cache from a torch wheel, or show
// which libtorch the loader would use.

import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { defaultVersions, formatRejected, installLibtorch, libtorchCacheRoot, searchLibtorch, type LibtorchVariant } from '../libtorch.js';

export const summary = 'install libtorch into the per-user cache, or show which libtorch is used';

const usage = `usage: comeba libtorch install [--variant cpu|cuda] [--version X] [--force]
       comeba libtorch which

install   downloads torch==X with pip (honouring COMEBA_PIP_INDEX_URL) and unpacks its libtorch into
          ${libtorchCacheRoot()}/<version>-<variant>/
          defaults: cpu → ${defaultVersions.cpu}, cuda → ${defaultVersions.cuda}
which     prints the libtorch the addon would load (COMEBA_LIBTORCH or LIBTORCH, then python3's torch,
          then the cache) and why other candidates were skipped`;

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

function install(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: { variant: { type: 'string', default: 'cpu' }, version: { type: 'string' }, force: { type: 'boolean', default: false } },
  });
  const variant = values.variant;
  if (variant !== 'cpu' && variant !== 'cuda') throw new InvalidArgumentError(`--variant must be cpu or cuda, not '${variant}'`);
  // The version names a cache folder and a pip requirement: only a plain torch version, e.g. 2.13.0 or 2.13.0+cpu.
  if (values.version !== undefined && !/^\d+\.\d+(\.\d+)?(\+[A-Za-z0-9.]+)?$/.test(values.version)) {
    throw new InvalidArgumentError(`--version must be a torch version such as ${defaultVersions.cpu}, not '${values.version}'`);
  }
  const installed = installLibtorch({ variant: variant as LibtorchVariant, version: values.version, force: values.force, log: (line) => console.log(line) });
  // The cache comes last in the search order: say so when something else still wins.
  const { found } = searchLibtorch();
  if (found && found.dir !== installed.dir) {
    console.log(`note: libtorch from ${found.source} (${found.dir}) takes precedence; set COMEBA_LIBTORCH=${installed.dir} to use this one`);
  }
  return 0;
}

function which(): number {
  const { found, rejected } = searchLibtorch();
  if (found) console.log(`${found.dir}\n  ${found.version} (${found.variant}, cxx11 ABI: ${found.cxx11Abi ? 'yes' : 'no'}) from ${found.source}`);
  if (rejected.length > 0) console.log(`skipped:\n${formatRejected(rejected)}`);
  if (!found) console.log('no libtorch found: run `npx comeba libtorch install` or set COMEBA_LIBTORCH');
  return found ? 0 : 1;
}
