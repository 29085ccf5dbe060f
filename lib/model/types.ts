// The model's public types: what HookedModel takes and returns. Imports only the native boundary's shapes.
import type { NativeModelInfo } from '../addon/types.js';

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type Dtype = 'float32' | 'float16' | 'bfloat16';
export type Padding = 'left' | 'right';

export interface LoadOptions {
  /** Where the weights live. Default 'cpu'. */
  device?: Device;
  /** The weights' dtype after loading (they are converted). Default 'float32'. */
  dtype?: Dtype;
}

export type ModelInfo = NativeModelInfo;

/** A float32 tensor in row-major order. */
export interface Tensor {
  data: Float32Array;
  shape: number[];
}

/**
 * A native hook. `at` is an HF module name: the edited projection (`transformer.h.{l}.mlp.c_proj` on GPT-2,
 * `transformer.h.{l}.mlp.fc_out` on GPT-J) or a block output (`transformer.h.{l}`). Positions index each
 * row's own tokens (0 = its first real token), whatever the padding.
 */
export type Hook =
  | { at: string; record: 'input' | 'output'; positions: number[][] }
  | { at: string; add: Float32Array | readonly number[]; positions: number[][] }
  | { at: string; replaceWeight: Float32Array | Tensor };

export interface RunOptions {
  /** How rows of different lengths are padded. Logits at real tokens do not depend on it. Default 'right'. */
  padding?: Padding;
  hooks?: readonly Hook[];
  /** 'last': only each row's last real token's logits, [batch, vocab] (next-token scores; no [batch, seq, vocab] copy). Default 'all'. */
  logits?: 'all' | 'last';
}

export interface RunResult {
  /** [batch, seq, vocab] (values at padded positions are unspecified), or [batch, vocab] with logits 'last'. */
  logits: Tensor;
  /** One entry per hook: the recorded rows [positions, dim] for `record` hooks, null for the others. */
  records: (Tensor | null)[];
}

export interface GenerateOptions {
  /** Default: generateDefaults. */
  maxNewTokens?: number;
  /** Stop after the model emits its EOS token. */
  stopAtEos?: boolean;
  /** Sample among the k most likely tokens instead of taking the argmax (0: greedy). */
  topK?: number;
  /** Seed of the sampler: the same seed gives the same tokens. */
  seed?: number;
}

/** The one table of generation defaults (HookedModel.generate, `comeba generate`; the addon requires them). */
export const generateDefaults: Readonly<Required<GenerateOptions>> = { maxNewTokens: 20, stopAtEos: true, topK: 0, seed: 0 };

export interface Generation {
  tokens: number[];
  text: string;
}
