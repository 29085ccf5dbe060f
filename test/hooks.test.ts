// The native hook primitives: weight replacement, recording module inputs/outputs, adding vectors.
import test from 'ava';
import { HookedModel, InvalidArgumentError } from '../lib/index.js';
import { fixtureModels, float32Of, loadReference, randomFloats, maxDiffAtRow, readSafetensors, tinyGpt2, tinyGptj } from './helpers.js';
import { join } from 'node:path';

const w0Gpt2 = () => float32Of(readSafetensors(join(tinyGpt2, 'model.safetensors')).tensors.get('transformer.h.1.mlp.c_proj.weight')!);

test('replacing an MLP output by W0·x + b leaves logits bit-identical', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const ref = loadReference(tinyGpt2);
  const plain = await model.logits(ref.inputIds);
  const hooked = await model.run(ref.inputIds, { hooks: [{ at: 'transformer.h.1.mlp.c_proj', replaceWeight: w0Gpt2() }] });
  t.deepEqual(hooked.logits.data, plain.data);
});

for (const [name, dir] of fixtureModels) {
  test(`${name}: a replaced weight W' gives transformers' logits with W' in the module`, async (t) => {
    await using model = await HookedModel.load(dir);
    const ref = loadReference(dir);
    const { logits } = await model.run(ref.inputIds, {
      padding: 'left',
      hooks: [{ at: ref.hookModule, replaceWeight: { data: ref.hookWeight, shape: ref.hookWeightShape } }],
    });
    const seq = logits.shape[1];
    ref.inputIds.forEach((ids, row) => {
      const diff = maxDiffAtRow(logits, row, seq - ids.length, ref.hookLogitsOf(row));
      t.true(diff <= 1e-4, `row ${row}: max |diff| = ${diff}`);
    });
  });
}

test('recorded input and output of c_proj satisfy y = xW + b at the chosen positions, whatever the padding', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const st = readSafetensors(join(tinyGpt2, 'model.safetensors')).tensors;
  const W = w0Gpt2();
  const b = float32Of(st.get('transformer.h.1.mlp.c_proj.bias')!);
  const batch = [model.tokenizer.encode('The city of Paris'), model.tokenizer.encode('Hello,')];
  const positions = [[0, 3], [1]];
  const records: Float32Array[][] = [];
  for (const padding of ['right', 'left'] as const) {
    const { records: [x, y] } = await model.run(batch, {
      padding,
      hooks: [
        { at: 'transformer.h.1.mlp.c_proj', record: 'input', positions },
        { at: 'transformer.h.1.mlp.c_proj', record: 'output', positions },
      ],
    });
    t.deepEqual(x!.shape, [3, 256]);
    t.deepEqual(y!.shape, [3, 64]);
    for (let r = 0; r < 3; r++) {
      for (let j = 0; j < 64; j++) {
        let acc = b[j];
        for (let i = 0; i < 256; i++) acc += x!.data[r * 256 + i] * W[i * 64 + j];
        t.true(Math.abs(acc - y!.data[r * 64 + j]) < 1e-4);
      }
    }
    records.push([x!.data, y!.data]);
  }
  // Same tokens, same positions: the recording does not depend on padding.
  for (let k = 0; k < 2; k++) {
    const diff = records[0][k].reduce((m, v, i) => Math.max(m, Math.abs(v - records[1][k][i])), 0);
    t.true(diff < 1e-5, `padding changed a recording by ${diff}`);
  }
});

test('adding a vector to a block output changes only later positions of that row', async (t) => {
  await using model = await HookedModel.load(tinyGptj);
  const batch = [model.tokenizer.encode('Alice works as a doctor in London.'), model.tokenizer.encode('The city of Paris')];
  const base = await model.logits(batch);
  const add = randomFloats(64, 7, 1); // not constant: layer norm would remove a uniform shift
  const hooked = await model.run(batch, { hooks: [{ at: 'transformer.h.0', add, positions: [[2], []] }] });
  const [, seq, vocab] = base.shape;
  const rowDiff = (row: number, pos: number) => {
    let m = 0;
    for (let v = 0; v < vocab; v++) {
      const i = (row * seq + pos) * vocab + v;
      m = Math.max(m, Math.abs(base.data[i] - hooked.logits.data[i]));
    }
    return m;
  };
  t.is(rowDiff(0, 0), 0);
  t.is(rowDiff(0, 1), 0);
  t.true(rowDiff(0, 2) > 1e-3);
  t.true(rowDiff(0, 5) > 1e-3);
  for (let p = 0; p < batch[1].length; p++) t.is(rowDiff(1, p), 0);
});

test('bad hooks are rejected with a typed error that names them', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const batch = [[1, 2, 3]];
  const cases = [
    { hooks: [{ at: 'transformer.h.9.mlp.c_proj', record: 'input' as const, positions: [[0]] }], msg: /layer 9 does not exist/ },
    { hooks: [{ at: 'transformer.h.0.mlp.c_fc', record: 'input' as const, positions: [[0]] }], msg: /unknown hook point/ },
    { hooks: [{ at: 'transformer.h.0', record: 'output' as const, positions: [[3]] }], msg: /position 3 is outside row 0/ },
    { hooks: [{ at: 'transformer.h.0', add: [1, 2], positions: [[0]] }], msg: /d_model = 64/ },
    { hooks: [{ at: 'transformer.h.0.mlp.c_proj', replaceWeight: new Float32Array(10) }], msg: /has 10 values/ },
  ];
  for (const c of cases) {
    const err = await t.throwsAsync(model.run(batch, { hooks: c.hooks }), { instanceOf: InvalidArgumentError });
    t.regex(err!.message, c.msg);
  }
});
