// What a checkpoint folder is, read from config.json and the safetensors headers alone (no weights): its
// architecture and sizes (the one TS table of config keys per family) and its parameters.
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidCheckpointError } from '../errors.js';
import { isRegularFile } from './files.js';
import type { NativeModelInfo as ModelInfo } from '../addon/types.js';

export type CheckpointSizes = Pick<ModelInfo, 'architecture' | 'nLayer' | 'dModel' | 'dFf' | 'nHead' | 'vocabSize' | 'contextLength'>;

// config.json keys per family: GPT-2 style (gpt2, gptj) or Llama style.
const sizeKeys = {
  gpt: { nLayer: 'n_layer', dModel: 'n_embd', nHead: 'n_head', contextLength: 'n_positions', dFf: 'n_inner' },
  llama: { nLayer: 'num_hidden_layers', dModel: 'hidden_size', nHead: 'num_attention_heads', contextLength: 'max_position_embeddings', dFf: 'intermediate_size' },
} as const;
const families: Record<string, keyof typeof sizeKeys> = { gpt2: 'gpt', gptj: 'gpt', llama: 'llama', mistral: 'llama', qwen2: 'llama', qwen3: 'llama' };

/** A checkpoint folder's architecture and sizes from its config.json, for every supported family (no weights read). */
export function readCheckpointSizes(dir: string): CheckpointSizes {
  const configPath = join(dir, 'config.json');
  if (!isRegularFile(configPath)) throw new InvalidCheckpointError(`invalid checkpoint ${dir}: no config.json`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(configPath, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new InvalidCheckpointError(`${configPath} is not valid JSON`, { cause: err });
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new InvalidCheckpointError(`${configPath} is not a JSON object`);
  const architecture = String(config.model_type);
  const family = Object.hasOwn(families, architecture) ? families[architecture] : undefined;
  if (!family) throw new InvalidCheckpointError(`model_type '${architecture}' in ${configPath} is not supported (${Object.keys(families).join(', ')})`);
  const keys = sizeKeys[family];
  const int = (key: string, fallback?: number) => {
    const v = config[key];
    if (Number.isInteger(v) && (v as number) > 0) return v as number;
    if (fallback !== undefined) return fallback;
    throw new InvalidCheckpointError(`invalid checkpoint ${dir}: config.json needs a positive integer '${key}'`);
  };
  const dModel = int(keys.dModel);
  return {
    architecture: architecture as ModelInfo['architecture'], nLayer: int(keys.nLayer), dModel, nHead: int(keys.nHead),
    vocabSize: int('vocab_size'), contextLength: int(keys.contextLength), dFf: int(keys.dFf, 4 * dModel),
  };
}

/** Parameters and stored dtypes counted from every safetensors header of `dir`. */
export function countParameters(dir: string): { parameters: number; storedDtypes: string[] } {
  let parameters = 0;
  const stored = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort()) {
    const path = join(dir, file);
    for (const [name, entry] of Object.entries(readSafetensorsHeader(path))) {
      if (name === '__metadata__') continue;
      const { dtype, shape } = (entry ?? {}) as { dtype?: unknown; shape?: unknown };
      if (typeof dtype !== 'string' || !Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new InvalidCheckpointError(`${path}: tensor ${JSON.stringify(name)} has no valid dtype and shape in the safetensors header`);
      }
      parameters += shape.reduce((a: number, b: number) => a * b, 1);
      stored.add(dtype);
    }
  }
  return { parameters, storedDtypes: [...stored].sort() };
}

/**
 * The raw JSON header of a safetensors file, read without the data. A FIFO would block the read and a directory
 * throw EISDIR, so anything but a regular file is refused first; the length is checked against the file before
 * anything is allocated (a corrupt length must not ask for gigabytes).
 */
export function safetensorsHeaderBytes(path: string): Buffer {
  if (!isRegularFile(path)) throw new InvalidCheckpointError(`${path} is not a regular file`);
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < 8) throw new InvalidCheckpointError(`${path} is too short to be a safetensors file (${size} bytes)`);
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = len.readBigUInt64LE(0);
    if (n > BigInt(Math.min(100 << 20, size - 8))) throw new InvalidCheckpointError(`${path}: a header of ${n} bytes does not fit the file (${size} bytes)`);
    const header = Buffer.alloc(Number(n));
    readSync(fd, header, 0, header.length, 8);
    return header;
  } finally {
    closeSync(fd);
  }
}

/** The JSON header of a safetensors file as an object (names → entries, and `__metadata__`). */
export function readSafetensorsHeader(path: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(safetensorsHeaderBytes(path).toString('utf8'));
  } catch (err) {
    if (err instanceof InvalidCheckpointError) throw err;
    throw new InvalidCheckpointError(`${path}: the header is not valid JSON`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidCheckpointError(`${path}: the safetensors header is not a JSON object`);
  return parsed as Record<string, unknown>;
}
