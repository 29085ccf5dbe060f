// The embedded testbed: it knows its facts (trained and held-out phrasings), and one batch of 10 edits
// at its subjects takes effect (mean teacher-forced reliability over three separate batches) while other
// subjects' facts stay as they were.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsecutiveEditor, Evaluator, HookedModel, Statistics, type EditMode, type EvalRecord } from '../lib/index.js';
import { loadDataset } from '../lib/datasets.js';
import { readCheckpointDefaults } from '../lib/options.js';
import { tempDir } from './helpers.js';

const testbed = join(dirname(fileURLToPath(import.meta.url)), '..', 'testbed');
const cases = loadDataset(join(testbed, 'counterfact.json'), 'counterfact');

/** The model's own facts as records whose target is the true answer. */
const known = (from: number, to: number): EvalRecord[] =>
  cases.slice(from, to).map(({ record: r }) => ({ prompt: r.prompt, target: r.trueTarget!, rephrase: r.rephrase }));

test('the testbed recalls its facts, also in held-out phrasings', async (t) => {
  await using model = await HookedModel.load(join(testbed, 'model'));
  const result = await new Evaluator(model).evaluate(known(0, 1080), { locality: known(0, 1080).map(() => null) });
  t.true(result.reliability >= 95, `trained phrasings: ${result.reliability}`);
  t.true(result.generality >= 80, `held-out phrasings: ${result.generality}`);
  t.log(`recall ${result.reliability.toFixed(1)} (trained), ${result.generality.toFixed(1)} (held out)`);
});

// E[kkᵀ] from text in the testbed's own distribution (every prompt with its true answer), as a sweep makes it.
const work = tempDir('comeba-testbed-');
const corpus = join(work, 'corpus.txt');
writeFileSync(corpus, cases.map(({ record: r }) => `${r.prompt} ${r.trueTarget}`).join('\n'));

// The value optimisation runs longer than the checkpoint's defaults here (which keep the 3 × 1,000-edit default
// sweep within 15 minutes): 60 steps and a tighter stop, chosen on single batches of records 100–199, not on these.
// With METHOD.md's GPT2-XL settings (20 steps, lr 0.5, clamp 0.75) this model realises 50 % of batch 0.
const valueOptimisation = { vSteps: 60, earlyStopLoss: 0.01 };

for (const mode of ['memit', 'comeba-hk'] as EditMode[]) {
  test.serial(`${mode}: single batches of 10 edits are realised and leave other subjects' facts alone`, async (t) => {
    await using model = await HookedModel.load(join(testbed, 'model'));
    const { layers } = readCheckpointDefaults(join(testbed, 'model'));
    const stats = await Statistics.collect(model, { corpus, layers: layers!, cacheDir: join(work, 'stats') });
    const evaluator = new Evaluator(model);
    const reliability: number[] = [];
    for (const start of [0, 10, 20]) { // 10 distinct subjects each (records are interleaved by subject)
      const batch = cases.slice(start, start + 10);
      const edited = new Set(batch.map((c) => c.request.subject));
      // Other subjects' facts, as locality probes: agreement with the unedited model's predictions.
      const others = cases.slice(600, 900).filter((c) => !edited.has(c.request.subject))
        .map(({ record: r }) => ({ prompt: r.prompt, target: r.target, locality: { prompt: r.prompt, answer: r.trueTarget! } }));
      const snapshot = await evaluator.snapshot(others);

      // Layers, λ and the other value settings from model/comeba.json.
      await using editor = await ConsecutiveEditor.create(model, { mode, stats, ...valueOptimisation });
      const report = await editor.edit(batch.map((c) => c.request));
      const edits = await evaluator.evaluate(batch.map((c) => ({ prompt: c.record.prompt, target: c.record.target })), { locality: batch.map(() => null) });
      const kept = await evaluator.evaluate(others, snapshot);
      t.log(`${mode}, records ${start}–${start + 9}: reliability ${edits.reliability}, ${kept.locality.toFixed(1)} agreement on `
        + `${others.length} other facts; z losses ${report.values.finalLoss.map((l) => l.toFixed(2)).join(' ')}`);
      t.true(kept.locality >= 95, `other subjects' facts: ${kept.locality}`);
      reliability.push(edits.reliability);
    }
    const mean = reliability.reduce((a, b) => a + b, 0) / reliability.length;
    t.true(mean >= 90, `reliability per batch ${reliability.join(', ')}`);
  });
}
