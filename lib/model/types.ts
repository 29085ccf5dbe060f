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
  /**
   * Sampling: softmax(logits / temperature); 0 (the default) is greedy unless topK or topP asks for sampling,
   * which then runs at temperature 1.
   */
  temperature?: number;
  /** Sample among the k most likely tokens (0: no limit). */
  topK?: number;
  /** Sample among the smallest set of tokens whose probability reaches p (nucleus sampling; 1: no limit). */
  topP?: number;
  /** Seed of the sampler: the same seed gives the same tokens. */
  seed?: number;
  /** Stop once the text contains one of these; the text ends before it, the tokens with the one that completed it. */
  stop?: readonly string[];
  /**
   * How comeba-hk's validated hooks decide as the sequence grows (docs/method.md "Generation: exact and settled decisions"). `exact`: every
   * position's z-score over the whole sequence so far, as a full recomputation of the sequence decides it (an earlier
   * position whose decision flips with a new token is recomputed). `settled` (ours): a position's decision is taken
   * once, when it enters the sequence, from its z-score over the sequence up to it; nothing is recomputed.
   */
  decisions?: Decisions;
  /** Aborts the generation: the promise rejects with AbortError (a stream ends with it). */
  signal?: AbortSignal;
  /** Called with each new token and the text it adds (held back while it ends inside a UTF-8 character). */
  onToken?: (piece: GeneratedPiece) => void;
}

/** One generated token and the text it adds to the generation. */
export interface GeneratedPiece {
  token: number;
  text: string;
}

/** The one table of generation defaults (HookedModel.generate, `comeba generate`; the addon requires the numeric ones). */
export type Decisions = 'exact' | 'settled';
export const decisionRules: readonly Decisions[] = ['exact', 'settled'];

export const generateDefaults = { maxNewTokens: 20, stopAtEos: true, temperature: 0, topK: 0, topP: 1, seed: 0, decisions: 'exact' } as const satisfies GenerateOptions;

export interface Generation {
  tokens: number[];
  text: string;
  /** Why it ended: maxNewTokens reached, the EOS token, or a stop string. */
  finishReason: 'length' | 'eos' | 'stop';
}
