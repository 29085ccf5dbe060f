// The value optimisation runs the blocks above the z-layer only from each row's subject-last token on,
// attending to the earlier positions' keys and values computed once per batch (δ changes nothing before it).
// It must compute what running whole rows every step computes: on the testbed, z, ΔW and α within 1e-5 relative
// (float32), initial losses within 1e-6 and the same Adam step counts, for the paper's 20 steps from the unedited
// model, and for two steps in each of 3 consecutive batches. 20 steps in later batches are not compared: there one
// request's trajectory can amplify float32 rounding (the distinct testbed's batch 1: one request's z 1.5e-4 apart,
// the other nine ≤ 3e-6, from initial losses 1e-7 apart, whichever path runs).
import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import { ConsecutiveEditor, HookedModel, loadDataset, type EditReport } from '../lib/index.js';
import { repoRoot, tempDir } from './helpers.js';

const testbed = join(repoRoot, 'testbed');

/** ‖a − b‖ / ‖b‖ over all entries. */
function relative(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < b.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

async function edit(valuePath: 'split' | 'whole', batches: number, vSteps: number): Promise<{ reports: EditReport[]; deltas: Float32Array[] }> {
  await using model = await HookedModel.load(join(testbed, 'model'));
  const cases = loadDataset(join(testbed, 'counterfact.json'), 'counterfact').slice(0, 30);
  await using editor = await ConsecutiveEditor.create(model, {
    valuePath, vSteps, stats: { corpus: join(testbed, 'model', 'stats-corpus.txt'), cacheDir: statsDir, maxTokens: 20000 },
  });
  const reports: EditReport[] = [];
  for (let b = 0; b < batches; b++) reports.push(await editor.edit(cases.slice(10 * b, 10 * b + 10).map((c) => c.request), { capture: true }));
  return { reports, deltas: (await editor.state()).layers.map((l) => l.delta.data) };
}

const statsDir = tempDir('comeba-stats-');

/** z, ΔW and α of one batch's reports within 1e-5 relative, the same Adam steps and initial losses within 1e-6. */
function agree(t: ExecutionContext, s: EditReport, w: EditReport, label: string) {
  t.deepEqual(s.values.steps, w.values.steps, `${label}: Adam steps per request`);
  const dl = relative(s.values.firstLoss, w.values.firstLoss);
  t.true(dl <= 1e-6, `${label}: initial losses differ by ${dl}`);
  const dz = relative(s.values.z!.data, w.values.z!.data);
  t.true(dz <= 1e-5, `${label}: z differs by ${dz}`);
  for (const [i, layer] of s.layers.entries()) {
    const dd = relative(layer.delta!.data, w.layers[i].delta!.data);
    t.true(dd <= 1e-5, `${label} layer ${layer.layer}: ΔW_batch differs by ${dd}`);
    t.true(Math.abs(layer.alphaAfter - w.layers[i].alphaAfter) <= 1e-5 * Math.abs(w.layers[i].alphaAfter), `${label} layer ${layer.layer}: α`);
  }
}

test('value optimisation from the subject on equals whole rows: 20 steps on the first batch, two steps over 3 consecutive batches', async (t) => {
  // The paper's 20 steps from the unedited model.
  const [split, whole] = [await edit('split', 1, 20), await edit('whole', 1, 20)];
  agree(t, split.reports[0], whole.reports[0], 'batch 0, 20 steps');
  // Two steps per batch (the first step's δ is what the second evaluates), three batches in a row.
  const [splitOne, wholeOne] = [await edit('split', 3, 2), await edit('whole', 3, 2)];
  for (let b = 0; b < 3; b++) agree(t, splitOne.reports[b], wholeOne.reports[b], `batch ${b}, 2 steps`);
  for (const [i, d] of splitOne.deltas.entries()) {
    t.true(d.some((x) => x !== 0) && relative(d, wholeOne.deltas[i]) <= 1e-5, `ΔW of layer ${i} after 3 two-step batches`);
  }
  t.log(`value seconds for the first batch (20 steps), split / whole: ${split.reports[0].seconds.values.toFixed(2)} / ${whole.reports[0].seconds.values.toFixed(2)}`);
});
