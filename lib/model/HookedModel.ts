// HookedModel: a Hugging Face checkpoint running in libtorch, with native hooks at the edited MLP projection
// and at block outputs. Every heavy call is a Promise whose work runs off the JS thread.
import { AbortError, callNative, DisposedError, InvalidArgumentError } from '../errors.js';
import { loadNative } from '../addon/native.js';
import type { NativeHookedModel, NativeHookSpec } from '../addon/types.js';
import type { GeneratedPiece, Generation, GenerateOptions, Hook, LoadOptions, ModelInfo, Padding, RunOptions, RunResult, Tensor } from './types.js';
import { Tokenizer } from './Tokenizer.js';
import { checkpointFingerprint } from '../io/fingerprint.js';
import { oneOf } from '../args.js';

import { decisionRules, generateDefaults } from './types.js';

export type { Decisions, Device, Dtype, GeneratedPiece, Generation, GenerateOptions, Hook, LoadOptions, ModelInfo, Padding, RunOptions, RunResult, Tensor } from './types.js';

export class HookedModel implements AsyncDisposable {
  readonly tokenizer: Tokenizer;
  readonly info: ModelInfo;
  readonly dir: string;
  /** A digest of config.json and every byte of the weight files (lib/io/fingerprint.ts): saved state and cached statistics are tied to it. */
  readonly fingerprint: string;
  #native: NativeHookedModel | null;
  // Editors and statistics that use this model: disposed with it.
  #dependents = new Set<{ dispose(): Promise<void> }>();

  private constructor(dir: string, native: NativeHookedModel, tokenizer: Tokenizer, fingerprint: string) {
    this.dir = dir;
    this.#native = native;
    this.tokenizer = tokenizer;
    this.info = native.info();
    this.fingerprint = fingerprint;
  }

  /** Loads config.json, the safetensors weights (single or sharded) and the tokenizer from a local folder. */
  static async load(dir: string, options: LoadOptions = {}): Promise<HookedModel> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidArgumentError('HookedModel.load expects a folder path');
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('HookedModel.load options must be an object (or left out)');
    const addon = loadNative();
    // The fingerprint streams the weight files while the addon loads them.
    const fingerprint = checkpointFingerprint(dir);
    fingerprint.catch(() => undefined); // awaited below; a failed load reports the addon's error instead
    const native = await callNative(() =>
      addon.NativeHookedModel.load(dir, { device: options.device ?? 'cpu', dtype: options.dtype ?? 'float32' }),
    );
    try {
      return new HookedModel(dir, native, Tokenizer.fromFolder(dir), await fingerprint);
    } catch (err) {
      native.dispose();
      throw err;
    }
  }

  /** The HF name of the edited MLP projection of `layer`. */
  editedModule(layer: number): string {
    return this.info.editedModule.replace('{}', String(layer));
  }

  /** Logits of a batch of token rows, padded by the library. */
  async logits(batch: readonly (readonly number[])[], options: { padding?: Padding; logits?: 'all' | 'last' } = {}): Promise<Tensor> {
    return (await this.run(batch, options)).logits;
  }

  /** A forward pass with hooks: records, additions and weight replacements, all applied natively. */
  async run(batch: readonly (readonly number[])[], options: RunOptions = {}): Promise<RunResult> {
    const native = this.#require();
    const hooks = (options.hooks ?? []).map((hook, i) => this.#toNativeHook(hook, i));
    const result = await callNative(() =>
      native.forward(batch as number[][], { padding: options.padding ?? 'right', hooks, logits: options.logits ?? 'all' }),
    );
    return { logits: { data: result.data, shape: result.shape }, records: result.records };
  }

  /**
   * Decoding with a KV cache: greedy, or sampling (temperature, top-k, top-p) with a seed; stop strings, an
   * AbortSignal and a per-token callback. Goes through an attached editor's hooks.
   */
  async generate(prompt: string | readonly number[], options: GenerateOptions = {}): Promise<Generation> {
    const native = this.#require();
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('generate options must be an object (or left out)');
    const integer = (name: 'maxNewTokens' | 'topK' | 'seed', least: number) => {
      const v = options[name];
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= least)) throw new InvalidArgumentError(`generate: ${name} must be an integer ≥ ${least}, not ${String(v)}`);
    };
    integer('maxNewTokens', 1);
    integer('topK', 0);
    integer('seed', 0);
    const { temperature, topP, stop = [], signal, onToken } = options;
    if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0)) throw new InvalidArgumentError(`generate: temperature must be a number ≥ 0, not ${String(temperature)}`);
    if (topP !== undefined && !(Number.isFinite(topP) && topP > 0 && topP <= 1)) throw new InvalidArgumentError(`generate: topP must be a number in (0, 1], not ${String(topP)}`);
    if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s === '')) throw new InvalidArgumentError('generate: stop must be a list of non-empty strings');
    if (signal?.aborted) throw new AbortError('the generation was aborted before it started');
    const ids = typeof prompt === 'string' ? this.tokenizer.encodePrompt(prompt) : [...prompt];
    const { maxNewTokens, stopAtEos, temperature: t, topK, topP: p, seed, decisions } = { ...generateDefaults, ...definedOnly(options) };
    oneOf('generate: decisions', String(decisions), decisionRules);
    const settings = { maxNewTokens, stopAtEos, temperature: t, topK, topP: p, seed, decisions };
    const finish = (tokens: number[]): Generation['finishReason'] => (stopAtEos && tokens.at(-1) === this.info.eosTokenId ? 'eos' : 'length');
    if (stop.length === 0 && !signal && !onToken) {
      const tokens = await callNative(() => native.generate(ids, settings));
      return { tokens, text: this.tokenizer.decode(tokens), finishReason: finish(tokens) };
    }
    // Token by token: the native loop waits for this callback after each token; false stops it there.
    const tokens: number[] = [];
    let shown = '';  // the text handed out so far
    let stoppedAt: number | undefined;
    let failure: { error: unknown } | undefined;
    const longestStop = Math.max(...stop.map((s) => s.length), 0);
    const next = (token: number): boolean => {
      try {
        tokens.push(token);
        if (stop.length === 0 && !onToken) return !signal?.aborted;  // an abort alone needs no text
        const text = this.tokenizer.decode(tokens);
        const hits = stop.map((s) => text.indexOf(s, Math.max(0, shown.length - longestStop))).filter((i) => i >= 0);
        if (hits.length > 0) stoppedAt = Math.min(...hits);
        // Held back while the text ends inside a multi-byte character (decoded as U+FFFD until it is complete).
        const end = Math.max(shown.length, stoppedAt ?? (text.endsWith('\uFFFD') ? shown.length : text.length));
        onToken?.({ token, text: text.slice(shown.length, end) });
        shown = text.slice(0, end);
        return stoppedAt === undefined && !signal?.aborted;
      } catch (error) {  // a throwing onToken stops the generation and becomes its rejection
        failure = { error };
        return false;
      }
    };
    await callNative(() => native.generate(ids, settings, next));
    if (failure) throw failure.error;
    if (signal?.aborted) throw new AbortError('the generation was aborted', { cause: signal.reason });
    if (stoppedAt !== undefined) return { tokens, text: this.tokenizer.decode(tokens).slice(0, stoppedAt), finishReason: 'stop' };
    return { tokens, text: this.tokenizer.decode(tokens), finishReason: finish(tokens) };
  }

  /**
   * generate() as an async iterator of the pieces it produces, token by token. Leaving the loop early (break,
   * return, a throw) stops the generation.
   */
  async *generateStream(prompt: string | readonly number[], options: Omit<GenerateOptions, 'onToken'> = {}): AsyncGenerator<GeneratedPiece, Generation> {
    const pieces: GeneratedPiece[] = [];
    let wake = () => {};
    let settled = false;
    const consumerGone = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, consumerGone.signal]) : consumerGone.signal;
    const done = this.generate(prompt, { ...options, signal, onToken: (piece) => { pieces.push(piece); wake(); } });
    done.then(() => { settled = true; wake(); }, () => { settled = true; wake(); });
    try {
      for (;;) {
        while (pieces.length > 0) yield pieces.shift()!;
        if (settled) return await done;
        await new Promise<void>((resolve) => { wake = resolve; });
      }
    } finally {
      if (!settled) {
        consumerGone.abort();
        await done.catch(() => undefined);
      }
    }
  }

  get disposed(): boolean {
    return this.#native === null;
  }

  /**
   * Frees the native weights, and first disposes what depends on them: the attached editor and the
   * statistics collected or loaded for this model. Calls already running finish first; later calls on any
   * of them throw DisposedError.
   */
  async dispose(): Promise<void> {
    for (const dependent of [...this.#dependents]) await dependent.dispose();
    this.#dependents.clear();
    this.#native?.dispose();
    this.#native = null;
  }

  /** @internal An editor or statistics object that must be disposed with this model. */
  adopt(dependent: { dispose(): Promise<void> }): void {
    this.#require();
    this.#dependents.add(dependent);
  }

  /** @internal Called by a dependent that was disposed on its own. */
  release(dependent: { dispose(): Promise<void> }): void {
    this.#dependents.delete(dependent);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** @internal The native handle, for the editor and evaluator. */
  get native(): NativeHookedModel {
    return this.#require();
  }

  #require(): NativeHookedModel {
    if (!this.#native) throw new DisposedError('HookedModel');
    return this.#native;
  }

  #toNativeHook(hook: Hook, index: number): NativeHookSpec {
    if ('record' in hook) {
      if (hook.record !== 'input' && hook.record !== 'output') {
        throw new InvalidArgumentError(`hooks[${index}].record must be 'input' or 'output'`);
      }
      return { point: hook.at, action: hook.record === 'input' ? 'recordInput' : 'recordOutput', positions: hook.positions };
    }
    if ('add' in hook) {
      const data = hook.add instanceof Float32Array ? hook.add : Float32Array.from(hook.add);
      return { point: hook.at, action: 'add', positions: hook.positions, data, shape: [data.length] };
    }
    if ('replaceWeight' in hook) {
      const w = hook.replaceWeight;
      const data = w instanceof Float32Array ? w : w.data;
      const shape = w instanceof Float32Array ? this.info.editedWeightShape : w.shape;
      return { point: hook.at, action: 'replaceWeight', data, shape };
    }
    throw new InvalidArgumentError(`hooks[${index}] must have one of record, add or replaceWeight`);
  }
}

/** `options` without its undefined fields, so that spreading it over defaults keeps them. */
function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}
