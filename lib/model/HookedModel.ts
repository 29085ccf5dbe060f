// HookedModel: a Hugging Face checkpoint running in libtorch, with native hooks at the edited MLP projection
// and at block outputs. Every heavy call is a Promise whose work runs off the JS thread.
import { callNative, DisposedError, InvalidArgumentError } from '../errors.js';
import { loadNative } from '../addon/native.js';
import type { NativeHookedModel, NativeHookSpec } from '../addon/types.js';
import type { Generation, GenerateOptions, Hook, LoadOptions, ModelInfo, Padding, RunOptions, RunResult, Tensor } from './types.js';
import { Tokenizer } from './Tokenizer.js';
import { checkpointFingerprint } from '../io/fingerprint.js';

import { generateDefaults } from './types.js';

export type { Device, Dtype, Generation, GenerateOptions, Hook, LoadOptions, ModelInfo, Padding, RunOptions, RunResult, Tensor } from './types.js';

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

  /** Decoding with a KV cache: greedy, or top-k sampling with a seed. Goes through an attached editor's hooks. */
  async generate(prompt: string | readonly number[], options: GenerateOptions = {}): Promise<Generation> {
    const native = this.#require();
    if (options === null || typeof options !== 'object') throw new InvalidArgumentError('generate options must be an object (or left out)');
    const integer = (name: keyof GenerateOptions, least: number) => {
      const v = options[name];
      if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= least)) {
        throw new InvalidArgumentError(`generate: ${name} must be an integer ≥ ${least}, not ${String(v)}`);
      }
    };
    integer('maxNewTokens', 1);
    integer('topK', 0);
    integer('seed', 0);
    const ids = typeof prompt === 'string' ? this.tokenizer.encodePrompt(prompt) : [...prompt];
    const tokens = await callNative(() =>
      native.generate(ids, { ...generateDefaults, ...definedOnly(options) }),
    );
    return { tokens, text: this.tokenizer.decode(tokens) };
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
