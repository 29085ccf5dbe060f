// What an editor and a statistics object share: a native object that belongs to a model, disposed with it
// (HookedModel.dispose cascades) or on its own before it, after which every call throws DisposedError.
import { DisposedError } from '../errors.js';
import type { HookedModel } from './HookedModel.js';

export abstract class ModelDependent<Native extends { dispose(): void }> implements AsyncDisposable {
  readonly model: HookedModel;
  #native: Native | null;
  readonly #what: string;

  protected constructor(model: HookedModel, native: Native, what: string) {
    this.model = model;
    this.#native = native;
    this.#what = what;
    model.adopt(this);
  }

  get disposed(): boolean {
    return this.#native === null;
  }

  /** Frees the native object; the model goes on working. Calls already running finish first. */
  async dispose(): Promise<void> {
    this.#native?.dispose();
    this.#native = null;
    this.model.release(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** The native object, or DisposedError. */
  protected requireNative(): Native {
    if (!this.#native) throw new DisposedError(this.#what);
    return this.#native;
  }
}
