// Strict parsing of command-line values, for the CLI and for the queue's jobs (which carry command lines). A bad value is an InvalidArgumentError that names the flag and what it
// accepts: `comeba` prints it on one line and exits with 2. Everything here runs before any model is loaded.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from './errors.js';
import { readCheckpointSizes } from './io/checkpoint.js';
import type { Device, Dtype } from './model/types.js';

export const dtypes = ['float32', 'float16', 'bfloat16'] as const satisfies readonly Dtype[];

/** Digits only: "1e3", "2.0", "0x10" and "" are refused rather than read as something else. */
export function positiveInteger(flag: string, text: string, { zero = false } = {}): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < (zero ? 0 : 1)) {
    throw new InvalidArgumentError(`${flag} must be a ${zero ? 'whole number ≥ 0' : 'positive integer'}, not '${text}'`);
  }
  return n;
}

/** A finite number > 0, or ≥ 0 with `{ zero: true }`. */
export function positiveNumber(flag: string, text: string, { zero = false } = {}): number {
  const x = Number(text);
  if (text.trim() === '' || !Number.isFinite(x) || x < 0 || (x === 0 && !zero)) {
    throw new InvalidArgumentError(`${flag} must be a ${zero ? 'number ≥ 0' : 'positive number'}, not '${text}'`);
  }
  return x;
}

export function oneOf<T extends string>(flag: string, text: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text)) throw new InvalidArgumentError(`${flag} must be one of ${choices.join(', ')}, not '${text}'`);
  return text as T;
}

export function device(text: string): Device {
  if (!/^(cpu|cuda(:\d+)?)$/.test(text)) throw new InvalidArgumentError(`--device must be cpu, cuda or cuda:N, not '${text}'`);
  return text as Device;
}

// existsSync, unlike stat, is false (not an error) for a path under a regular file.
const isFile = (path: string) => existsSync(path) && statSync(path).isFile();

export function existingFile(flag: string, path: string): string {
  if (!isFile(path)) throw new InvalidArgumentError(`${flag} ${path}: no such file`);
  return path;
}

/** The layer count in a checkpoint folder's config.json (any supported architecture), read without loading the model. */
export function checkpointLayerCount(dir: string): number {
  if (!isFile(join(dir, 'config.json'))) {
    throw new InvalidArgumentError(`--model ${dir} is not a checkpoint folder (it has no config.json): pass a Hugging Face checkpoint folder`);
  }
  return readCheckpointSizes(dir).nLayer;
}

/**
 * `3,4,5`, `3-5` or a mix, increasing and each below `nLayer`. Bounds are checked before a range is expanded,
 * so `1-1e9` is an error, not a billion-element array.
 */
export function parseLayers(text: string, nLayer: number): number[] {
  const layers: number[] = [];
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new InvalidArgumentError(`--layers: '${part}' is not a layer or a range a-b; write e.g. 3,4,5 or 3-5`);
    const [first, last] = [Number(m[1]), Number(m[2] ?? m[1])];
    if (last >= nLayer) throw new InvalidArgumentError(`--layers: layer ${m[2] ?? m[1]} does not exist (the model has ${nLayer} layers, 0-${nLayer - 1})`);
    if (first > last || (layers.length > 0 && first <= layers[layers.length - 1])) {
      throw new InvalidArgumentError(`--layers must list layers in increasing order without repeats, not '${text}'`);
    }
    for (let l = first; l <= last; l++) layers.push(l);
  }
  return layers;
}
