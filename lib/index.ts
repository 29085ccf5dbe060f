// comeba's public API.
export { HookedModel } from './HookedModel.js';
export type {
  Device, Dtype, Padding, LoadOptions, ModelInfo, Tensor, Hook, RunOptions, RunResult, GenerateOptions, Generation,
} from './HookedModel.js';
export { Tokenizer } from './Tokenizer.js';
export * from './errors.js';
