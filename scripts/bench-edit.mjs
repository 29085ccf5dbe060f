#!/usr/bin/env node
// Benchmark (not a test): seconds per consecutive COMEBA-HK batch of 10 edits and the share of each phase
// (values z, keys + residuals, Cholesky solves, α update), on the embedded testbed model and on a
// 124M-parameter GPT-2 with random weights (gpt2's own config, made with transformers); and the value phase
// against the reference path that runs whole rows every step (new/old, same run, same batches); and greedy
// generation (50 prompts × 100 tokens) through comeba-hk's validated hooks after those edits against the unedited model,
// with exact and with settled decisions.
//
//   node scripts/bench-edit.mjs [--batches 5] [--threads N] [--models testbed,gpt2-124m]
// The 124M part needs python3 with torch and transformers; it is skipped with a note when they are missing.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { importLib } from './import-lib.mjs';

const { values } = parseArgs({
  options: {
    batches: { type: 'string', default: '5' }, threads: { type: 'string', default: String(availableParallelism()) },
    models: { type: 'string', default: 'testbed,gpt2-124m' },
  },
});
const batches = Number(values.batches);
const { loadNative } = await importLib('addon/native');
loadNative().setThreads(Number(values.threads));
const { HookedModel, ConsecutiveEditor } = await importLib('index');
const work = mkdtempSync(join(tmpdir(), 'comeba-bench-edit-'));

/**
 * Edits `batches` + 1 batches of 10 (the first is warm-up) with the default value path and again with the
 * reference path (whole rows every step), each on a fresh editor; prints seconds per batch, phase shares and
 * the value phase's new/old ratio.
 */
async function bench(name, modelDir, requests, corpusLines) {
  const model = await HookedModel.load(modelDir);
  const corpus = join(work, `${name}-corpus.txt`);
  writeFileSync(corpus, corpusLines.join('\n'));
  // Fluency's generation (50 prompts × 100 greedy tokens, batches of 50) unedited, and through the validated hooks
  // after the batches below.
  const prompts = requests.slice(0, 50).map((r) => model.tokenizer.encodePrompt(r.prompt.replace('{}', r.subject)));
  let counts;
  const generation = async (decisions = 'exact') => {
    const before = loadNative().decodeCounts();
    const t = performance.now();
    await model.native.generateGreedy(prompts, prompts.map(() => 100), { decisions });
    const seconds = (performance.now() - t) / 1000;
    const after = loadNative().decodeCounts();
    counts = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
    return seconds;
  };
  await generation();  // warm-up
  const plain = await generation();
  let hooked = 0, settled = 0;
  let hookedCounts;
  const run = async (valuePath) => {
    const t = performance.now();
    const editor = await ConsecutiveEditor.create(model, { valuePath, stats: { corpus, cacheDir: join(work, 'stats'), maxTokens: 20000 } });
    const setup = (performance.now() - t) / 1000;
    const totals = { values: 0, keys: 0, solves: 0, alpha: 0, total: 0 };
    for (let b = 0; b <= batches; b++) {
      const report = await editor.edit(requests.slice(b * 10, b * 10 + 10));
      if (b === 0) continue;
      for (const k of Object.keys(totals)) totals[k] += report.seconds[k];
    }
    const layers = editor.options.layers;
    if (valuePath === 'split') {
      hooked = await generation();
      hookedCounts = counts;
      settled = await generation('settled');
    }
    await editor.dispose();
    return { setup, totals, layers };
  };
  const fast = await run('split');
  const old = await run('whole');
  const { totals, setup, layers } = fast;
  const per = totals.total / batches;
  const share = (k) => `${((100 * totals[k]) / totals.total).toFixed(1)}%`;
  console.log(`${name}: ${model.info.nLayer} layers, d_model ${model.info.dModel}, d_ff ${model.info.dFf}, edited layers ${layers.join(',')}, ${loadNative().getThreads()} threads`);
  console.log(`  statistics + templates ${setup.toFixed(1)} s (once); ${per.toFixed(2)} s per batch of 10 (mean of ${batches} after a warm-up; whole rows: ${(old.totals.total / batches).toFixed(2)} s)`);
  console.log(`  phases: values ${share('values')}, keys ${share('keys')}, solves ${share('solves')}, alpha ${share('alpha')}, other ${(100 - ['values', 'keys', 'solves', 'alpha'].reduce((s, k) => s + (100 * totals[k]) / totals.total, 0)).toFixed(1)}%`);
  console.log(`  generation, 50 prompts × 100 tokens: ${plain.toFixed(2)} s unedited, ${hooked.toFixed(2)} s through the hooks after ${(batches + 1) * 10} edits: hooked/plain ${(hooked / plain).toFixed(2)}` +
    ` (${hookedCounts.staleSteps} of ${hookedCounts.steps} steps changed an earlier decision; ${hookedCounts.recomputedRows} rows and ${hookedCounts.recomputedPositions} positions recomputed, of ${hookedCounts.rowSteps} row-steps);` +
    ` settled decisions ${settled.toFixed(2)} s: settled/plain ${(settled / plain).toFixed(2)}`);
  console.log(`  value phase per batch: ${(totals.values / batches).toFixed(3)} s from the subject on, ${(old.totals.values / batches).toFixed(3)} s whole rows: new/old ${(totals.values / old.totals.values).toFixed(3)}`);
  await model.dispose();
}

try {
  const testbed = JSON.parse(readFileSync('testbed/counterfact.json', 'utf8'));
  const requests = testbed.map((r) => ({ prompt: r.prompt, subject: r.subject, target: r.target_new }));
  const corpus = testbed.flatMap((r) => [`${r.prompt} ${r.ground_truth}`, `${r.locality_prompt} ${r.locality_ground_truth}`]);
  const models = values.models.split(',');
  if (models.includes('testbed')) await bench('testbed', 'testbed/model', requests, corpus);

  const python = String.raw`
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
torch.manual_seed(0)
GPT2LMHeadModel(GPT2Config()).save_pretrained(sys.argv[1])
`;
  const dir = join(work, 'gpt2-124m');
  const py = !models.includes('gpt2-124m') ? { status: 0, skip: true } : spawnSync('python3', ['-c', python, dir], { encoding: 'utf8' });
  if (py.skip) {
    // not asked for
  } else if (py.status !== 0) {
    console.log(`gpt2-124M: skipped (python3 with torch and transformers is needed to make it):\n${py.stderr.split('\n').slice(-3).join('\n')}`);
  } else {
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join('test/fixtures/tiny-gpt2', f), join(dir, f));
    await bench('gpt2-124M (random weights)', dir, requests, corpus);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
