// Parity with Hugging Face transformers on the tiny fixtures: tokenizer ids, logits under both paddings,
// and greedy generation through the KV cache.
import test from 'ava';
import { HookedModel } from '../lib/index.js';
import { loadReference, maxDiffAtRow, tinyGpt2, tinyGptj } from './helpers.js';

for (const [name, dir] of [['gpt2', tinyGpt2], ['gptj', tinyGptj]] as const) {
  const ref = loadReference(dir);

  test(`${name}: tokenizer gives transformers' ids`, async (t) => {
    await using model = await HookedModel.load(dir);
    t.deepEqual(ref.prompts.map((p) => model.tokenizer.encode(p)), ref.inputIds);
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
