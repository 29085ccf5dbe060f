// The value optimisation runs the blocks above the z-layer only from each row's subject-last token on,
// attending to the earlier positions' keys and values computed once per batch (δ changes nothing before it).
// It must give what running whole rows every step gives: on the testbed, 3 consecutive batches, z, ΔW and α
// within 1e-5 relative (float32), and the same Adam step count for every request.
import test from 'ava';
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

async function edit(valuePath: 'split' | 'whole'): Promise<{ reports: EditReport[]; deltas: Float32Array[] }> {
  await using model = await HookedModel.load(join(testbed, 'model'));
  const cases = loadDataset(join(testbed, 'counterfact.json'), 'counterfact').slice(0, 30);
  await using editor = await ConsecutiveEditor.create(model, {
    valuePath, stats: { corpus: join(testbed, 'model', 'stats-corpus.txt'), cacheDir: statsDir, maxTokens: 20000 },
  });
  const reports: EditReport[] = [];
  for (let b = 0; b < 3; b++) reports.push(await editor.edit(cases.slice(10 * b, 10 * b + 10).map((c) => c.request), { capture: true }));
  return { reports, deltas: (await editor.state()).layers.map((l) => l.delta.data) };
}

const statsDir = tempDir('comeba-stats-');

test('value optimisation from the subject on equals whole rows: z, ΔW and α within 1e-5, the same steps', async (t) => {
  const split = await edit('split');
  const whole = await edit('whole');
  for (let b = 0; b < 3; b++) {
    const [s, w] = [split.reports[b], whole.reports[b]];
    t.deepEqual(s.values.steps, w.values.steps, `batch ${b}: Adam steps per request`);
    const dz = relative(s.values.z!.data, w.values.z!.data);
    t.true(dz <= 1e-5, `batch ${b}: z differs by ${dz}`);
    for (const [i, layer] of s.layers.entries()) {
      const dd = relative(layer.delta!.data, w.layers[i].delta!.data);
      t.true(dd <= 1e-5, `batch ${b} layer ${layer.layer}: ΔW_batch differs by ${dd}`);
      t.true(Math.abs(layer.alphaAfter - w.layers[i].alphaAfter) <= 1e-5 * Math.abs(w.layers[i].alphaAfter), `batch ${b} layer ${layer.layer}: α`);
    }
  }
  for (const [i, d] of split.deltas.entries()) t.true(relative(d, whole.deltas[i]) <= 1e-5, `ΔW of layer ${i} after 3 batches`);
  t.log(`value seconds per batch, split / whole: ${split.reports.map((r, b) => `${r.seconds.values.toFixed(2)} / ${whole.reports[b].seconds.values.toFixed(2)}`).join(', ')}`);
});
