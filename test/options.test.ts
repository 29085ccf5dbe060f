// Hyperparameter resolution: METHOD.md §7 presets, the layer and λ rules for other sizes, a checkpoint's comeba.json
// defaults, then explicit options, each overriding the one before.
import test from 'ava';
import { defaultLayers, InvalidArgumentError } from '../lib/index.js';
import type { ModelInfo } from '../lib/model/HookedModel.js';
import { lambdaFor, resolveHyperparameters } from '../lib/edit/options.js';

const info = (architecture: 'gpt2' | 'gptj', nLayer: number, dModel: number): ModelInfo => ({
  architecture, nLayer, dModel, dFf: 4 * dModel, nHead: 16, vocabSize: 50257, contextLength: 1024, eosTokenId: 50256,
  bosTokenId: 50256, editedModule: '', editedWeightShape: [dModel, 4 * dModel], device: 'cpu', dtype: 'float32',
});
const gpt2xl = info('gpt2', 48, 1600);
const gptj = info('gptj', 28, 4096);

test('the paper presets for GPT2-XL and GPT-J', (t) => {
  t.like(resolveHyperparameters(gpt2xl, { mode: 'memit' }), { layers: [13, 14, 15, 16, 17], lambda: 20000, vSteps: 20, clampNormFactor: 0.75 });
  t.like(resolveHyperparameters(gptj, {}), { mode: 'comeba-hk', layers: [3, 4, 5, 6, 7, 8], lambda: 15000, vSteps: 25, alphaZ: 2.2 });
});

test('other sizes: the reference layers scaled to the same relative depth', (t) => {
  t.deepEqual(defaultLayers(info('gpt2', 12, 768)), [3, 4]);
  t.deepEqual(defaultLayers(info('gpt2', 36, 1280)), [10, 11, 12, 13]);
  t.deepEqual(defaultLayers(info('gptj', 6, 256)), [1, 2]);
});

test('other sizes: the paper\'s λ scaled by d_ff / the reference\'s d_ff, the identity on every reference model', (t) => {
  const gpt2 = info('gpt2', 12, 768);                                   // GPT-2 small: d_ff 3072 of GPT2-XL's 6400
  t.is(resolveHyperparameters(gpt2, {}).lambda, 15000 * 3072 / 6400);
  t.is(resolveHyperparameters(gpt2, { mode: 'memit' }).lambda, 20000 * 3072 / 6400);
  t.is(resolveHyperparameters(gpt2, {}, {}, 5000).lambda, 5000 * 3072 / 6400, 'a protocol\'s reference λ is scaled too');
  t.is(lambdaFor({ architecture: 'gptj', dFf: 16384 }, 'memit').lambda, 15000, 'GPT-J keeps its published MEMIT λ');
  t.deepEqual(lambdaFor({ architecture: 'gpt2', dFf: 1024 }, 'comeba-hk'), { lambda: 2400, reference: { name: 'GPT2-XL', dFf: 6400, lambda: 15000 } });
  // Mistral borrows Llama-3-8B's reference (same d_ff 14336): the identity.
  t.is(lambdaFor({ architecture: 'mistral', dFf: 14336 }, 'comeba-hk').lambda, 15000);
  t.is(lambdaFor({ architecture: 'qwen3', dFf: 18944 / 2 }, 'memit').lambda, 7500);
  t.is(resolveHyperparameters(gpt2, { lambda: 123 }).lambda, 123, 'an explicit λ is used as given');
  t.is(resolveHyperparameters(gpt2, {}, { lambda: { 'comeba-hk': 456 } }).lambda, 456, 'so is comeba.json\'s');
});

test("a checkpoint's comeba.json overrides presets, explicit options override it", (t) => {
  const defaults = { layers: [0, 1, 2], lambda: { 'comeba-hk': 1000 }, values: { vSteps: 60, clampNormFactor: 2, unknown: 1 } as object };
  const fromCheckpoint = resolveHyperparameters(gpt2xl, {}, defaults);
  t.like(fromCheckpoint, { layers: [0, 1, 2], lambda: 1000, vSteps: 60, clampNormFactor: 2, vLr: 0.5 });
  t.false('unknown' in fromCheckpoint);
  t.like(resolveHyperparameters(gpt2xl, { mode: 'memit' }, defaults), { lambda: 20000, vSteps: 60 }); // no memit λ given
  t.like(resolveHyperparameters(gpt2xl, { vSteps: 5, layers: [3] }, defaults), { vSteps: 5, layers: [3], clampNormFactor: 2 });
});

test('invalid hyperparameters are typed errors', (t) => {
  t.throws(() => resolveHyperparameters(gpt2xl, { layers: [5, 4] }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveHyperparameters(gpt2xl, { layers: [48] }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveHyperparameters(gpt2xl, { lambda: -1 }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveHyperparameters(gpt2xl, {}, { values: { vSteps: 0.5 } }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveHyperparameters(gpt2xl, { mode: 'rome' as never }), { instanceOf: InvalidArgumentError });
});

test('the editing scope: the paper\'s by default, the calibrated one with its defaults, only for comeba-hk', (t) => {
  t.like(resolveHyperparameters(gpt2xl, {}), { scope: 'paper', scopeKappa: 0, alphaFloor: 0 });
  const calibrated = resolveHyperparameters(gpt2xl, { scope: 'calibrated' });
  t.is(calibrated.scope, 'calibrated');
  t.true(calibrated.scopeKappa > 0 && calibrated.alphaFloor > 0 && calibrated.alphaFloor <= calibrated.alphaZ);
  t.like(resolveHyperparameters(gpt2xl, { scope: 'calibrated', scopeKappa: 7 }), { scopeKappa: 7, alphaFloor: calibrated.alphaFloor });
  t.throws(() => resolveHyperparameters(gpt2xl, { scope: 'calibrated', mode: 'memit' }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveHyperparameters(gpt2xl, { scope: 'wide' as never }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveHyperparameters(gpt2xl, { scope: 'calibrated', scopeKappa: -1 }), { instanceOf: InvalidArgumentError });
});
