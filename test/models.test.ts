// Parity with Hugging Face transformers on the tiny fixtures: tokenizer ids, logits under both paddings,
// and greedy generation through the KV cache.
import test from 'ava';
import { HookedModel } from '../lib/index.js';
import { prepareRequest } from '../lib/requests.js';
import { fixtureModels, loadReference, maxDiffAtRow, tinyGpt2, tinyGptj, tinyLlama } from './helpers.js';

for (const [name, dir] of fixtureModels) {
  const ref = loadReference(dir);

  test(`${name}: tokenizer gives transformers' ids`, async (t) => {
    await using model = await HookedModel.load(dir);
    t.deepEqual(ref.prompts.map((p) => model.tokenizer.encodePrompt(p)), ref.inputIds);
    t.is(model.tokenizer.decode(ref.inputIds[2]), ref.prompts[2]);
  });

  for (const padding of ['right', 'left'] as const) {
    test(`${name}: logits match transformers within 1e-4 in a ${padding}-padded batch`, async (t) => {
      await using model = await HookedModel.load(dir);
      t.true(ref.prompts.length >= 4);
      const logits = await model.logits(ref.inputIds, { padding });
      const seq = Math.max(...ref.inputIds.map((r) => r.length));
      t.deepEqual(logits.shape, [ref.inputIds.length, seq, ref.vocabSize]);
      ref.inputIds.forEach((ids, row) => {
        const offset = padding === 'left' ? seq - ids.length : 0;
        const diff = maxDiffAtRow(logits, row, offset, ref.logitsOf(row));
        t.true(diff <= 1e-4, `row ${row} (${ids.length} tokens): max |diff| = ${diff}`);
      });
    });
  }

  test(`${name}: greedy generation of 20 tokens equals transformers'`, async (t) => {
    await using model = await HookedModel.load(dir);
    for (const item of ref.generation.items) {
      const out = await model.generate(ref.inputIds[item.prompt], { maxNewTokens: ref.generation.maxNewTokens });
      t.deepEqual(out.tokens, item.newTokens, `prompt ${item.prompt}`);
    }
  });
}

test('model info describes the checkpoint', async (t) => {
  await using model = await HookedModel.load(tinyGptj);
  t.like(model.info, { architecture: 'gptj', nLayer: 3, dModel: 64, dFf: 256, vocabSize: 512, device: 'cpu', dtype: 'float32' });
  t.is(model.editedModule(2), 'transformer.h.2.mlp.fc_out');
  t.deepEqual(model.info.editedWeightShape, [64, 256]);
});

test('a Llama tokenizer prepends <s> to prompts, not to continuations, and its subject index counts it', async (t) => {
  await using model = await HookedModel.load(tinyLlama);
  const bos = model.tokenizer.bos!;
  t.is(bos, model.info.bosTokenId);
  t.is(model.tokenizer.encodePrompt('The city')[0], bos);
  t.not(model.tokenizer.encode(' Paris')[0], bos);
  t.is(model.tokenizer.decode(model.tokenizer.encodePrompt('The city of Paris')), 'The city of Paris');
  const prepared = prepareRequest(model.tokenizer, { prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }, ['{}'], 0, 128);
  const row = prepared.contexts[0];
  t.is(row[0], bos);
  t.is(model.tokenizer.decode(row.slice(0, prepared.subjectLast[0] + 1)), 'The city of Paris');
  t.deepEqual(prepared.target, model.tokenizer.encode(' Spain'));
});

test('Llama-family hook points have Hugging Face names', async (t) => {
  await using model = await HookedModel.load(tinyLlama);
  t.like(model.info, { architecture: 'llama', nLayer: 3, dModel: 64, dFf: 128 });
  t.is(model.editedModule(2), 'model.layers.2.mlp.down_proj');
  t.deepEqual(model.info.editedWeightShape, [64, 128]);
  const { records } = await model.run([[1, 5, 9]], { hooks: [
    { at: 'model.layers.1.mlp.down_proj', record: 'input', positions: [[0, 2]] },
    { at: 'model.layers.2', record: 'output', positions: [[1]] },
  ] });
  t.deepEqual(records.map((r) => r!.shape), [[2, 128], [1, 64]]);
  await t.throwsAsync(model.run([[1]], { hooks: [{ at: 'transformer.h.1', record: 'output', positions: [[0]] }] }), { message: /model\.layers\.\{l\}/ });
});

test('float16 and bfloat16 weights give logits close to float32', async (t) => {
  const ref = loadReference(tinyGpt2);
  for (const dtype of ['bfloat16', 'float16'] as const) {
    await using model = await HookedModel.load(tinyGpt2, { dtype });
    t.is(model.info.dtype, dtype);
    const logits = await model.logits([ref.inputIds[3]]);
    const diff = maxDiffAtRow(logits, 0, 0, ref.logitsOf(3));
    // Relative to logits of magnitude ~10, half precision keeps two to three significant digits.
    t.true(diff < 0.5, `${dtype}: max |diff| = ${diff}`);
  }
});
