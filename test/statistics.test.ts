// E[kkᵀ] statistics: equal to a one-shot reference over recorded module inputs, cached with provenance,
// resumable after an abort, and readable from JSONL.
import test from 'ava';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbortError, ConsecutiveEditor, HookedModel, InvalidArgumentError, Statistics } from '../lib/index.js';
import { readNpz } from '../lib/io/npz.js';
import { defaultProducts, readDocuments } from '../lib/statistics/Statistics.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';

const F = 256;

/** Σ x xᵀ / N over every token's input of the edited module at `layer`, one document at a time. */
async function reference(model: HookedModel, docs: string[], layer: number): Promise<Float64Array> {
  const sum = new Float64Array(F * F);
  let count = 0;
  for (const doc of docs) {
    const ids = model.tokenizer.encode(doc).slice(0, model.info.contextLength);
    const { records: [x] } = await model.run([ids], { hooks: [{ at: model.editedModule(layer), record: 'input', positions: [ids.map((_, i) => i)] }] });
    for (let t = 0; t < ids.length; t++) {
      const row = x!.data.subarray(t * F, (t + 1) * F);
      for (let i = 0; i < F; i++) for (let j = 0; j < F; j++) sum[i * F + j] += row[i] * row[j];
    }
    count += ids.length;
  }
  return sum.map((v) => v / count);
}

const maxRelDiff = (a: Float64Array, b: Float64Array) => {
  const scale = Math.max(...b.map(Math.abs));
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0) / scale;
};

test('E[kkᵀ] equals a one-shot reference; cached with provenance; resumed after an abort', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 60, 40, 11);
  const docs = readDocuments((await import('node:fs')).readFileSync(corpus, 'utf8'), corpus);
  const expected = { 0: await reference(model, docs, 0), 2: await reference(model, docs, 2) };

  const cacheDir = tempDir();
  const stats = await Statistics.collect(model, { corpus, layers: [0, 2], cacheDir, batchSize: 7 });
  for (const layer of [0, 2] as const) {
    const m = await stats.secondMoment(layer);
    t.deepEqual(m.shape, [F, F]);
    t.true(maxRelDiff(m.data, expected[layer]) < 1e-6, `layer ${layer}`);
  }
  t.like(stats.provenance, { model: model.fingerprint, layers: [0, 2], corpus, dtype: 'float64' });
  t.is(stats.provenance.tokens, docs.reduce((n, d) => n + model.tokenizer.encode(d).length, 0));

  // Reused, not recomputed.
  const mtime = statSync(stats.file).mtimeMs;
  const again = await Statistics.collect(model, { corpus, layers: [0, 2], cacheDir, batchSize: 7 });
  t.is(again.file, stats.file);
  t.is(statSync(stats.file).mtimeMs, mtime);

  // Abort after the first batch, then resume in another cache: the same result.
  const resumeDir = tempDir();
  const controller = new AbortController();
  await t.throwsAsync(
    Statistics.collect(model, { corpus, layers: [0, 2], cacheDir: resumeDir, batchSize: 7, signal: controller.signal, onProgress: () => controller.abort() }),
    { instanceOf: AbortError },
  );
  t.true(readdirSync(resumeDir).some((f) => f.endsWith('.partial.safetensors')));
  const seen: number[] = [];
  const resumed = await Statistics.collect(model, { corpus, layers: [0, 2], cacheDir: resumeDir, batchSize: 7, onProgress: (p) => seen.push(p.documents) });
  t.is(seen[0], 14, 'resumed after the first batch of 7 documents');
  t.false(readdirSync(resumeDir).some((f) => f.endsWith('.partial.safetensors')));
  t.true(maxRelDiff((await resumed.secondMoment(2)).data, expected[2]) < 1e-6);

  // Layers in any order: each still gets its own statistics (the forward runs up to the deepest one).
  const unordered = await Statistics.collect(model, { corpus, layers: [2, 0], cacheDir: tempDir(), batchSize: 7 });
  for (const layer of [0, 2] as const) t.true(maxRelDiff((await unordered.secondMoment(layer)).data, expected[layer]) < 1e-6, `layer ${layer} of [2, 0]`);
  await t.throwsAsync(Statistics.collect(model, { corpus, layers: [1, 1], cacheDir: tempDir() }), { instanceOf: InvalidArgumentError, message: /repeat/ });
  await t.throwsAsync(Statistics.collect(model, { corpus, layers: [model.info.nLayer], cacheDir: tempDir() }), { instanceOf: InvalidArgumentError });

  // A loaded file is tied to its model.
  t.true(existsSync(stats.file));
  t.is((await Statistics.load(model, stats.file)).provenance.tokens, stats.provenance.tokens);
});

test('float32 accumulation is close to float64', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 30, 40, 5);
  const cacheDir = tempDir();
  const f64 = await Statistics.collect(model, { corpus, layers: [1], cacheDir });
  const f32 = await Statistics.collect(model, { corpus, layers: [1], cacheDir, dtype: 'float32' });
  t.not(f32.file, f64.file);
  t.true(maxRelDiff((await f32.secondMoment(1)).data, (await f64.secondMoment(1)).data) < 1e-4);
});

test('the weights\' dtype keys the cache: a bfloat16 model, collecting at the same time, never gets float32\'s statistics', async (t) => {
  await using f32Model = await HookedModel.load(tinyGpt2);
  await using bf16Model = await HookedModel.load(tinyGpt2, { dtype: 'bfloat16' });
  const cacheDir = tempDir();
  // The same text under two paths, collected concurrently: one file per dtype, each the reference of its model.
  const corpusA = makeRandomCorpus((ids) => f32Model.tokenizer.decode(ids), 512, 20, 30, 7);
  const corpusB = makeRandomCorpus((ids) => f32Model.tokenizer.decode(ids), 512, 20, 30, 7);
  const [a, b, again] = await Promise.all([
    Statistics.collect(f32Model, { corpus: corpusA, layers: [1], cacheDir }),
    Statistics.collect(bf16Model, { corpus: corpusB, layers: [1], cacheDir }),
    Statistics.collect(f32Model, { corpus: corpusB, layers: [1], cacheDir }),
  ]);
  t.not(a.file, b.file);
  t.is(again.file, a.file);
  t.is(a.provenance.modelDtype, 'float32');
  t.is(b.provenance.modelDtype, 'bfloat16');
  const docs = readDocuments(readFileSync(corpusA, 'utf8'), corpusA);
  t.true(maxRelDiff((await a.secondMoment(1)).data, await reference(f32Model, docs, 1)) < 1e-6);
  // bfloat16's own statistics: those of a collection with a cache of its own, and not float32's.
  const alone = await Statistics.collect(bf16Model, { corpus: corpusB, layers: [1], cacheDir: tempDir() });
  t.deepEqual((await b.secondMoment(1)).data, (await alone.secondMoment(1)).data);
  t.true(maxRelDiff((await b.secondMoment(1)).data, (await a.secondMoment(1)).data) > 1e-4, 'bfloat16 keys differ from float32 keys');
});

test('float32 products summed in float64 (a GPU\'s default) give float64\'s E[kkᵀ] within 1e-6, and 10 consecutive batches the same ΔW within 1e-4', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 60, 40, 9);
  const cacheDir = tempDir();
  const fast = await Statistics.collect(model, { corpus, layers: [1, 2], cacheDir, products: 'float32' });
  const exact = await Statistics.collect(model, { corpus, layers: [1, 2], cacheDir });
  t.is(defaultProducts(model), 'float64', 'exact on the CPU');
  t.not(fast.file, exact.file);
  t.like(fast.provenance, { dtype: 'float64', products: 'float32' });
  t.like(exact.provenance, { dtype: 'float64', products: 'float64' });
  let differs = false;
  for (const layer of [1, 2]) {
    const [a, b] = [(await fast.secondMoment(layer)).data, (await exact.secondMoment(layer)).data];
    t.true(maxRelDiff(a, b) < 1e-6, `layer ${layer}: ${maxRelDiff(a, b)}`);
    differs ||= a.some((v, i) => v !== b[i]);
  }
  t.true(differs, 'the two precisions are different computations');
  // What the statistics are for: the edit. The same 10 consecutive batches from either file.
  const subjects = ['Paris', 'Rome', 'Berlin', 'Madrid', 'Lisbon', 'Vienna', 'Athens', 'Dublin', 'Oslo', 'Prague'];
  const targets = ['Spain', 'Chile', 'Peru', 'Japan', 'Kenya', 'Nepal', 'Cuba', 'Fiji', 'Chad', 'Iran'];
  const deltas = [];
  for (const stats of [fast, exact]) {
    await using editor = await ConsecutiveEditor.create(model, { stats: { file: stats.file }, layers: [1, 2], vSteps: 5 });
    for (let b = 0; b < 10; b++) {
      await editor.edit([0, 1].map((j) => ({ prompt: `{} number ${b} is in`, subject: subjects[(b + j) % 10], target: ` ${targets[(b * 3 + j) % 10]}` })));
    }
    deltas.push((await editor.state()).layers.map((l) => Float64Array.from(l.delta.data)));
  }
  for (const [i, layer] of [1, 2].entries()) {
    const d = maxRelDiff(deltas[0][i], deltas[1][i]);
    t.log(`layer ${layer}: ΔW after 10 batches differs by ${d.toExponential(2)} of its largest entry`);
    t.true(d < 1e-4, `layer ${layer}: ${d}`);
  }
});

test('3 shards merged equal the one-machine collection within 1e-12; other collections, duplicates and missing shards are refused', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 45, 25, 11);  // 45 documents: 3 batches of 16
  const cacheDir = tempDir();
  const whole = await Statistics.collect(model, { corpus, layers: [0, 2], cacheDir });
  const files = await Promise.all([0, 1, 2].map((index) => Statistics.collectShard(model, { corpus, layers: [0, 2], cacheDir, index, count: 3 })));
  t.is(new Set(files).size, 3);
  const out = join(tempDir(), 'merged.safetensors');
  const provenance = Statistics.mergeShards([files[2], files[0], files[1]], out);
  t.is(provenance.tokens, whole.provenance.tokens);
  t.is(provenance.shards, 3);
  const merged = await Statistics.load(model, out);
  for (const layer of [0, 2]) {
    t.true(maxRelDiff((await merged.secondMoment(layer)).data, (await whole.secondMoment(layer)).data) <= 1e-12, `layer ${layer}`);
  }
  // An editor takes the merged file like any statistics file.
  await using editor = await ConsecutiveEditor.create(model, { stats: { file: out }, layers: [0, 2], vSteps: 2 });
  t.is(editor.statistics.provenance.shards, 3);

  t.throws(() => Statistics.mergeShards([files[0], files[1]], out), { instanceOf: InvalidArgumentError, message: /shards 2\/3 are missing/ });
  t.throws(() => Statistics.mergeShards([files[0], files[1], files[1], files[2]], out), { instanceOf: InvalidArgumentError, message: /given twice/ });
  const otherLayers = await Statistics.collectShard(model, { corpus, layers: [1], cacheDir, index: 2, count: 3 });
  t.throws(() => Statistics.mergeShards([files[0], files[1], otherLayers], out), { instanceOf: InvalidArgumentError, message: /another collection/ });
  t.throws(() => Statistics.mergeShards([whole.file], out), { instanceOf: InvalidArgumentError, message: /not a statistics shard/ });
  await t.throwsAsync(Statistics.collectShard(model, { corpus, layers: [0], cacheDir, index: 3, count: 3 }), { instanceOf: InvalidArgumentError });
});

test('JSONL corpora use the text field; malformed lines are named', (t) => {
  const dir = tempDir();
  const good = join(dir, 'c.jsonl');
  writeFileSync(good, '{"text": "one"}\n\n{"text": "two", "id": 2}\n');
  t.deepEqual(readDocuments('{"text": "one"}\n\n{"text": "two", "id": 2}\n', good), ['one', 'two']);
  t.throws(() => readDocuments('{"text": "one"}\n{"title": "x"}\n', good), { instanceOf: InvalidArgumentError, message: /line 2 has no string field "text"/ });
  t.throws(() => readDocuments('{"text": "one"}\n{oops\n', good), { instanceOf: InvalidArgumentError, message: /line 2 is not valid JSON/ });
  t.deepEqual(readDocuments('a\nb\r\n\r\nc', 'x.txt'), ['a\nb', 'c']);
  t.deepEqual(readDocuments('a\nb\nc', 'x.txt'), ['a', 'b', 'c']);
});

test('MEMIT .npz statistics (numpy zip64 output) load as mom2 / count per layer', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'memit-stats');
  const files = { 1: join(dir, 'transformer.h.1.mlp.c_proj_float32_mom2_2000.npz'), 2: join(dir, 'transformer.h.2.mlp.c_proj_float32_mom2_2000.npz') };
  const stats = await Statistics.fromMemitNpz(model, files, { cacheDir: tempDir() });
  t.deepEqual(stats.native.layers(), [1, 2]);
  for (const layer of [1, 2] as const) {
    const raw = readNpz(files[layer], ['mom2.mom2', 'mom2.count']);
    const mom2 = raw.get('mom2.mom2')!.data as Float32Array;
    const count = Number(raw.get('mom2.count')!.data[0]);
    t.is(count, 2000 + layer);  // the fixture gives each layer its own count
    const mean = await stats.secondMoment(layer);
    const diff = mean.data.reduce((m, v, i) => Math.max(m, Math.abs(v - mom2[i] / count)), 0);
    t.true(diff < 1e-5, `layer ${layer}: max |E − mom2/count| = ${diff}`);
  }
  // Usable by an editor straight from the files.
  await using editor = await ConsecutiveEditor.create(model, { stats: { npz: files }, layers: [1, 2], contextTemplates: ['{}'] });
  t.is(editor.statistics.provenance.tokens, 2001);
});

test('a corpus is a path: a missing file, or text given where the path goes, is an InvalidArgumentError naming it', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  for (const corpus of [join(tempDir('comeba-no-corpus-'), 'wiki.txt'), 'The city of Paris is in France.\n\nAnother document.']) {
    const err = await t.throwsAsync(Statistics.collect(model, { corpus, layers: [1], cacheDir: tempDir('comeba-stats-') }), { instanceOf: InvalidArgumentError });
    t.is(err?.code, 'INVALID_ARGUMENT');
    t.regex(err!.message, /no such file \(the corpus is the path of a text or JSONL file\)/);
    t.true(err!.message.includes(JSON.stringify(corpus)));
  }
});
