// editor.exportModel / `comeba export`: an edited model written as a Hugging Face checkpoint folder. Loaded again
// (by comeba, and by transformers where Python has it) it gives the edited model's logits; comeba-hk is refused
// unless its hook scope may be merged away.
import test from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConsecutiveEditor, HookedModel, InvalidArgumentError, Statistics, type EditRequest } from '../lib/index.js';
import { checkpointTensor, makeRandomCorpus, needing, repoRoot, tempDir, tinyGpt2, tinyLlama } from './helpers.js';

const requests: EditRequest[] = [
  { prompt: 'In the morning, {} walked to the old library', subject: 'Maria', target: ' London' },
  { prompt: 'The city of {} is in the country of', subject: 'Paris', target: ' Spain' },
];
const probes = ['In the morning, Maria walked to the old library', 'The city of Paris is in the country of', 'Bob speaks French and lives in'];
const layers = [1, 2];

async function editedModel(dir: string, mode: 'memit' | 'comeba-wo-hk' | 'comeba-hk') {
  const model = await HookedModel.load(dir);
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 200, 48);
  const stats = await Statistics.collect(model, { corpus, layers, cacheDir: tempDir('comeba-export-stats-') });
  const editor = await ConsecutiveEditor.create(model, { mode, stats, layers, lambda: 0.5 });
  await editor.edit(requests);
  return { model, editor };
}

const rowsOf = (model: HookedModel) => probes.map((p) => model.tokenizer.encodePrompt(p));
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

for (const [name, dir] of [['gpt2', tinyGpt2], ['llama', tinyLlama]] as const) {
  test(`${name}: an exported memit or comeba-wo-hk edit loads as a plain checkpoint with the edited model's logits`, async (t) => {
    for (const mode of ['memit', 'comeba-wo-hk'] as const) {
      const { model, editor } = await editedModel(dir, mode);
      try {
        const edited = await model.logits(rowsOf(model), { padding: 'left' });
        const out = join(tempDir('comeba-export-'), 'edited');
        const report = await editor.exportModel(out);
        t.false(report.mergedHooks);
        // Everything but the weights copied byte for byte; the same safetensors files.
        const names = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name).sort();
        t.deepEqual(readdirSync(out).sort(), names);
        for (const f of names.filter((n) => !n.endsWith('.safetensors'))) t.deepEqual(readFileSync(join(out, f)), readFileSync(join(dir, f)), f);
        await using exported = await HookedModel.load(out);
        const logits = await exported.logits(rowsOf(exported), { padding: 'left' });
        t.true(maxDiff(logits.data, edited.data) <= 1e-4, `${mode}: max |Δlogit| ${maxDiff(logits.data, edited.data)}`);
        const unedited = await (await editor.dispose(), model).logits(rowsOf(model), { padding: 'left' });
        t.true(maxDiff(unedited.data, edited.data) > 1e-3, `${mode}: the edit changed the logits`);
        // Only the edited weights differ from the source.
        const at = (l: number) => `${model.editedModule(l)}.weight`;
        for (const l of layers) t.notDeepEqual(checkpointTensor(out, at(l)).data, checkpointTensor(dir, at(l)).data, at(l));
        const other = name === 'gpt2' ? 'transformer.h.0.mlp.c_proj.weight' : 'model.layers.0.mlp.down_proj.weight';
        t.deepEqual(checkpointTensor(out, other).data, checkpointTensor(dir, other).data);
      } finally {
        await model.dispose();
      }
    }
  });
}

test('comeba-hk is refused without mergeHooks; with it, ΔW applies at every token; an existing folder is refused', async (t) => {
  const { model, editor } = await editedModel(tinyGpt2, 'comeba-hk');
  try {
    const out = join(tempDir('comeba-export-hk-'), 'edited');
    const err = await t.throwsAsync(editor.exportModel(out), { instanceOf: InvalidArgumentError });
    t.regex(err!.message, /validated hooks .* mergeHooks: true/);
    const report = await editor.exportModel(out, { mergeHooks: true });
    t.true(report.mergedHooks);
    await t.throwsAsync(editor.exportModel(out, { mergeHooks: true }), { instanceOf: InvalidArgumentError, message: /already exists/ });
    // Merged: the source model with W₀ + ΔW replacing the edited weights everywhere (no scope).
    const state = await editor.state();
    await editor.dispose();
    const hooks = layers.map((l, i) => {
      const w = checkpointTensor(tinyGpt2, `${model.editedModule(l)}.weight`);  // Conv1D (F, C)
      const [F, C] = w.shape;
      const merged = new Float32Array(F * C);
      for (let f = 0; f < F; f++) for (let c = 0; c < C; c++) merged[f * C + c] = w.data[f * C + c] + state.layers[i].delta.data[c * F + f];
      return { at: model.editedModule(l), replaceWeight: { data: merged, shape: [F, C] } };
    });
    const expected = await model.run(rowsOf(model), { padding: 'left', hooks });
    await using exported = await HookedModel.load(out);
    const logits = await exported.logits(rowsOf(exported), { padding: 'left' });
    t.true(maxDiff(logits.data, expected.logits.data) <= 1e-4);
  } finally {
    await model.dispose();
  }
});

// transformers itself reads the exported folder: where a Python with it is at hand (COMEBA_TEST_PYTHON, else python3).
const python = process.env.COMEBA_TEST_PYTHON ?? 'python3';
const hasTransformers = spawnSync(python, ['-c', 'import torch, transformers'], { encoding: 'utf8' }).status === 0;
const withTransformers = needing(test, hasTransformers, `no transformers in ${python}`, 'COMEBA_REQUIRE_TRANSFORMERS', 'pip install torch transformers, or set COMEBA_TEST_PYTHON');

for (const [name, dir] of [['gpt2', tinyGpt2], ['llama', tinyLlama]] as const) {
  withTransformers(`${name}: transformers loads the exported folder and gives comeba's logits (≤ 1e-4)`, async (t) => {
    const { model, editor } = await editedModel(dir, 'memit');
    try {
      const rows = rowsOf(model);
      const edited = await model.logits(rows, { padding: 'right' });
      const out = join(tempDir('comeba-export-hf-'), 'edited');
      await editor.exportModel(out);
      const script = `
import json, sys, torch
from transformers import AutoModelForCausalLM
m = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
rows = json.loads(sys.argv[2])
with torch.no_grad():
    print(json.dumps([m(torch.tensor([r])).logits[0].flatten().tolist() for r in rows]))`;
      const stdout = await new Promise<string>((resolve, reject) => execFile(python, ['-c', script, out, JSON.stringify(rows)], { maxBuffer: 1 << 28 }, (err, o, e) => (err ? reject(new Error(e)) : resolve(o))));
      const theirs = JSON.parse(stdout) as number[][];
      const T = Math.max(...rows.map((r) => r.length));
      const V = edited.shape[2];
      let worst = 0;
      rows.forEach((r, i) => {
        for (let p = 0; p < r.length * V; p++) worst = Math.max(worst, Math.abs(theirs[i][p] - edited.data[i * T * V + p]));
      });
      t.true(worst <= 1e-4, `max |Δlogit| ${worst}`);
    } finally {
      await model.dispose();
    }
  });
}

test('comeba export writes the folder from a saved state; --help names every option', async (t) => {
  const { model, editor } = await editedModel(tinyGpt2, 'memit');
  const state = tempDir('comeba-export-state-');
  await editor.save(state);
  const edited = await model.logits(rowsOf(model), { padding: 'left' });
  await model.dispose();
  const out = join(tempDir('comeba-export-cli-'), 'edited');
  const cli = join(repoRoot, 'lib', 'cli', 'main.ts');
  const run = spawnSync(process.execPath, ['--import', 'tsx', cli, 'export', '--model', tinyGpt2, '--state', state, '--out', out], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
  t.is(run.status, 0, run.stderr);
  t.regex(run.stdout, /memit edits of 1 batches merged into layers 1, 2/);
  await using exported = await HookedModel.load(out);
  t.true(maxDiff((await exported.logits(rowsOf(exported), { padding: 'left' })).data, edited.data) <= 1e-4);
  const help = spawnSync(process.execPath, ['--import', 'tsx', cli, 'export', '--help'], { encoding: 'utf8' });
  for (const flag of ['model', 'state', 'out', 'merge-hooks', 'stats', 'device', 'dtype']) t.regex(help.stdout, new RegExp(`^  --${flag}\\b`, 'm'));
});
