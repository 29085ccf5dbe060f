// The embedded testbed knows its facts, in trained and in held-out phrasings.
import test from 'ava';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Evaluator, HookedModel, type EvalRecord } from '../lib/index.js';
import { loadDataset } from '../lib/datasets.js';

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
