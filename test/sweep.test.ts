// The sweep: resumable after SIGKILL with the same result, refusing to resume with other settings, and runnable
// on the shared CounterFact data with any model folder HookedModel loads.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../lib/eval/datasets.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { createHash } from 'node:crypto';
import { ConsecutiveEditor, Evaluator, HookedModel, Statistics } from '../lib/index.js';
import { readDocuments } from '../lib/statistics/Statistics.js';
import { readCheckpointDefaults, resolveHyperparameters } from '../lib/edit/options.js';
import { editorsOf, evaluationDefaults, runSweep, readMetrics, type SweepOptions, type SweepSummaryFile } from '../lib/sweep/sweep.js';
import { needingSharedData, sharedData, tempDir, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'lib', 'cli', 'main.ts');
const sharedTest = needingSharedData(test);
const args = (out: string) => ['--import', 'tsx', cli, 'sweep', '--n', '40', '--batch', '10', '--eval-every', '10', '--mode', 'comeba-hk+calibrated', '--out', out];

const summaryOf = (out: string) => JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as SweepSummaryFile;
/** The per-mode summaries without wall-clock figures, which differ between runs. */
const comparable = (out: string) => summaryOf(out).modes.map(({ seconds, editsPerSecond, phases, ...rest }) => rest);
// Timings, invocations, paths and bytes written (a resumed run starts with a full save) differ.
const metrics = (out: string) => readMetrics(out).map(({ seconds, phases, run, settings, stateBytes, ...rest }) => rest);

test('a sweep killed with SIGKILL half-way and rerun ends as an uninterrupted run', async (t) => {
  const straight = tempDir('comeba-sweep-');
  const run = spawnSync(process.execPath, args(straight), { cwd: root, encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);

  const killed = tempDir('comeba-sweep-');
  const child = spawn(process.execPath, args(killed), { cwd: root, stdio: 'ignore' });
  // The calibrated scope: its floors are derived from the state, so a resumed editor must recompute them.
  const progress = join(killed, 'comeba-hk+calibrated', 'progress.json');
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      // Kill once at least one checkpoint is on disk and the run is not finished.
      if (existsSync(progress) && JSON.parse(readFileSync(progress, 'utf8')).edits >= 20) {
        clearInterval(poll);
        child.kill('SIGKILL');
        resolve();
      }
    }, 20);
    child.on('exit', () => {
      clearInterval(poll);
      resolve();
    });
    child.on('error', reject);
  });
  await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(null) : child.on('exit', resolve)));
  t.is(child.signalCode, 'SIGKILL', 'the first run was killed before it finished');
  t.false(existsSync(join(killed, 'summary.json')));

  const rerun = spawnSync(process.execPath, args(killed), { cwd: root, encoding: 'utf8' });
  t.is(rerun.status, 0, rerun.stderr);
  t.regex(rerun.stdout, /resuming at [1-9]\d* of 40 edits/);
  t.deepEqual(comparable(killed), comparable(straight));
  t.deepEqual(metrics(killed), metrics(straight));
  t.deepEqual(readMetrics(straight).filter((m) => m.fluency !== undefined).map((m) => m.edits), [40], 'fluency at the last checkpoint');
  t.true(readMetrics(straight).every((m) => m.perplexityRatio !== undefined && m.generated !== undefined), 'generation metrics and perplexity at every checkpoint');
  t.true(existsSync(join(killed, 'chart.svg')));
});

sharedTest('a sweep on the shared CounterFact validation file runs with the tiny fixture model', async (t) => {
  const data = join(sharedData, 'counterfact', 'easyedit', 'counterfact-val.json');
  const out = tempDir('comeba-sweep-');
  const [summary] = await runSweep({
    model: tinyGpt2, data, format: 'counterfact', n: 6, batch: 3, modes: ['comeba-hk'], protocol: 'consecutive', evalEvery: 3, out,
    layers: [1, 2], lambda: 100,
  });
  t.like(summary, { mode: 'comeba-hk', n: 6, batch: 3, protocol: 'consecutive' });
  for (const key of ['reliability', 'generality', 'locality', 'average'] as const) {
    t.true(summary[key] >= 0 && summary[key] <= 100, `${key} ${summary[key]}`);
  }
  t.deepEqual(readMetrics(out).map((m) => m.edits), [3, 6]);
});

test('λ per method and protocol: the paper\'s 5000 for single-round COMEBA-HK, the mode\'s default otherwise, both scaled by d_ff; --lambda first', async (t) => {
  const testbed = join(root, 'testbed', 'model');  // its comeba.json sets no λ
  await using model = await HookedModel.load(testbed);
  const modes = ['comeba-hk', 'comeba-hk+calibrated', 'memit'] as const;
  const o = { model: testbed, modes: [...modes], protocol: 'single-round' as const };
  const defaults = readCheckpointDefaults(testbed);
  const modeDefault = (mode: 'comeba-hk' | 'memit') => resolveHyperparameters(model.info, { mode }, defaults).lambda;
  const singleRound = editorsOf(o, model.info);
  const scaled = 5000 * model.info.dFf / 6400;  // the testbed is a GPT-2: GPT2-XL's d_ff is the reference
  t.like(singleRound['comeba-hk'], { mode: 'comeba-hk', scope: 'paper', lambda: scaled });
  t.like(singleRound['comeba-hk+calibrated'], { mode: 'comeba-hk', scope: 'calibrated', lambda: scaled });
  t.is(singleRound.memit.lambda, modeDefault('memit'));
  t.is(editorsOf({ ...o, protocol: 'consecutive' }, model.info)['comeba-hk'].lambda, modeDefault('comeba-hk'));
  t.is(modeDefault('comeba-hk'), 15000 * model.info.dFf / 6400);
  t.is(editorsOf({ ...o, lambda: 700 }, model.info)['comeba-hk'].lambda, 700);
});

// Two edits of the testbed's data on the tiny model (its folder's stats-corpus.txt is random text, as the model).
const testbedData = join(root, 'testbed', 'counterfact.json');
const small = (out: string): SweepOptions => ({
  model: tinyGpt2, data: testbedData, format: 'counterfact', n: 2, batch: 2, modes: ['comeba-hk'], protocol: 'consecutive', evalEvery: 2, out,
  layers: [1, 2], lambda: 100,
});
let finished: Promise<string> | undefined;
/** The folder of a finished small sweep, shared by the tests below. */
const finishedSweep = () => (finished ??= (async () => {
  const out = tempDir('comeba-sweep-');
  await runSweep(small(out));
  return out;
})());

test('a rerun with other settings is refused, naming each changed flag with its old and new value, and leaves the results alone', async (t) => {
  const out = await finishedSweep();
  const metricsBefore = readFileSync(join(out, 'metrics.jsonl'), 'utf8');
  const refused = async (change: Partial<SweepOptions>, ...messages: RegExp[]) => {
    const err = await t.throwsAsync(runSweep({ ...small(out), ...change }), { instanceOf: InvalidArgumentError });
    for (const m of messages) t.regex(err?.message ?? '', m);
  };
  // Before settings were saved, --batch 1 resumed at "step × 1" edits and a new λ was silently ignored.
  await refused({ batch: 1 }, /--batch 2 → 1/, /pass another --out, or delete .*, to start afresh/);
  await refused({ lambda: 200 }, /--lambda \(comeba-hk\) 100 → 200/);
  await refused({ n: 4 }, /--n 2 → 4/);
  await refused({ evalEvery: 1, batch: 1 }, /--batch 2 → 1; --eval-every 2 → 1/);
  await refused({ layers: [2] }, /--layers \[1,2\] → \[2\]/);
  await refused({ modes: ['memit'] }, /--mode \["comeba-hk"\] → \["memit"\]/, /--lambda \(memit\) unset → /);
  await refused({ protocol: 'single-round' }, /--protocol "consecutive" → "single-round"/);
  await refused({ alphaZ: 3 }, /--alpha-z 2\.2 → 3/);
  const otherData = join(tempDir('comeba-sweep-data-'), 'counterfact.json');
  const records = JSON.parse(readFileSync(testbedData, 'utf8'));
  records[0].target_new = `${records[0].target_new} again`;
  writeFileSync(otherData, JSON.stringify(records));
  await refused({ data: otherData }, /--data .*testbed\/counterfact\.json \(sha256 [0-9a-f]{12}\) → .*counterfact\.json \(sha256 [0-9a-f]{12}\)/);
  const corpus = join(tempDir('comeba-sweep-corpus-'), 'corpus.txt');
  writeFileSync(corpus, Array.from({ length: 40 }, (_, i) => `Some other text for the statistics, line ${i}.`).join('\n'));
  await refused({ statsCorpus: corpus }, /--stats-corpus .*stats-corpus\.txt \(sha256 [0-9a-f]{12}\) → .*corpus\.txt/);
  t.is(readFileSync(join(out, 'metrics.jsonl'), 'utf8'), metricsBefore);
  // The same settings resume: here the sweep is complete and reports the same checkpoint.
  const [summary] = await runSweep(small(out));
  t.like(summary, { mode: 'comeba-hk', n: 2, batch: 2 });
  t.is(readFileSync(join(out, 'metrics.jsonl'), 'utf8'), metricsBefore);
});

test('a model without a stats-corpus.txt and no --stats-corpus is refused: the statistics are never made from the evaluated records', async (t) => {
  const bare = tempDir('comeba-model-');
  for (const f of readdirSync(tinyGpt2)) if (f !== 'stats-corpus.txt' && f !== 'reference') copyFileSync(join(tinyGpt2, f), join(bare, f));
  const err = await t.throwsAsync(runSweep({ ...small(tempDir('comeba-sweep-')), model: bare }), { instanceOf: InvalidArgumentError });
  t.is(err!.message.split('\n').length, 1);
  t.regex(err!.message, /--model .* has no stats-corpus\.txt: pass --stats-corpus FILE \(.*\) or --stats FILE/);
});

test('--stats takes a statistics file (merged shards, say) instead of a corpus; perplexity then needs --heldout', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const corpus = join(tinyGpt2, 'stats-corpus.txt');
  const shards = await Promise.all([0, 1].map((index) => Statistics.collectShard(model, { corpus, layers: [1, 2], cacheDir: tempDir(), index, count: 2 })));
  const file = join(tempDir('comeba-stats-'), 'merged.safetensors');
  Statistics.mergeShards(shards, file);
  const out = tempDir('comeba-sweep-');
  const [summary] = await runSweep({ ...small(out), stats: file, skip: ['perplexity'] });
  t.like(summary, { mode: 'comeba-hk', n: 2 });
  t.is(summaryOf(out).statistics.shards, 2);
  t.deepEqual(JSON.parse(readFileSync(join(out, 'settings.json'), 'utf8'))['--stats'].path, file);
  // The same sweep from the corpus those shards split: the same statistics, the same scores.
  const fromCorpus = tempDir('comeba-sweep-');
  const [direct] = await runSweep({ ...small(fromCorpus), statsCorpus: corpus, skip: ['perplexity'] });
  t.deepEqual([summary.reliability, summary.generality, summary.locality], [direct.reliability, direct.generality, direct.locality]);
  await t.throwsAsync(runSweep({ ...small(tempDir('comeba-sweep-')), stats: file }), { instanceOf: InvalidArgumentError, message: /--stats .* brings no text to hold out for perplexity: pass --heldout FILE or --skip perplexity/ });
  await t.throwsAsync(runSweep({ ...small(tempDir('comeba-sweep-')), stats: file, statsCorpus: corpus }), { instanceOf: InvalidArgumentError, message: /pass one/ });
});

test('a --stats-corpus that does not exist is refused before anything is loaded or written', async (t) => {
  const out = join(tempDir('comeba-sweep-'), 'out');
  const missing = join(root, 'no-such-corpus.txt');
  const err = await t.throwsAsync(runSweep({ ...small(out), statsCorpus: missing }), { instanceOf: InvalidArgumentError });
  t.regex(err?.message ?? '', /--stats-corpus .*no-such-corpus\.txt: no such file/);
  t.false(existsSync(out));
});

test('a folder with sweep results but no settings.json to check them against is refused', async (t) => {
  const out = tempDir('comeba-sweep-');
  writeFileSync(join(out, 'metrics.jsonl'), `${JSON.stringify({ mode: 'comeba-hk', protocol: 'consecutive', edits: 2 })}\n`);
  const err = await t.throwsAsync(runSweep(small(out)), { instanceOf: InvalidArgumentError });
  t.regex(err?.message ?? '', /holds sweep results \(metrics\.jsonl\) but no settings\.json/);
  t.false(existsSync(join(out, 'settings.json')));
});

test('every metrics line carries seconds per phase, and runs.jsonl records what ran the sweep', async (t) => {
  const out = await finishedSweep();
  const [line] = readMetrics(out);
  const { values, keys, solves, alpha, evaluation } = line.phases;
  t.true([values, keys, solves, alpha, evaluation].every((s) => Number.isFinite(s) && s >= 0));
  t.true(values > 0 && evaluation > 0);
  t.true(values + keys + solves + alpha <= line.seconds + 1e-6, 'the editor phases fit in the editing time');
  const runs = readFileSync(join(out, 'runs.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.true(runs.length >= 1);
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  t.like(runs[0], { comeba: pkg.version, node: process.version, device: 'cpu', dtype: 'float32' });
  t.regex(runs[0].libtorch, /^\d+\.\d+\.\d+/);
  t.true(Number.isInteger(runs[0].threads) && runs[0].threads >= 1);
  t.false(Number.isNaN(Date.parse(runs[0].startedAt)));
});

test('the held-out text is the end of the statistics corpus, which the statistics leave out', async (t) => {
  const out = await finishedSweep();
  const source = readDocuments(readFileSync(join(tinyGpt2, 'stats-corpus.txt'), 'utf8'), 'stats-corpus.txt');
  const used = readDocuments(readFileSync(join(out, 'stats-corpus.jsonl'), 'utf8'), 'stats-corpus.jsonl');
  const heldout = readDocuments(readFileSync(join(out, 'heldout.jsonl'), 'utf8'), 'heldout.jsonl');
  t.is(heldout.length, Math.min(evaluationDefaults.heldoutMax, Math.floor(source.length * evaluationDefaults.heldoutShare)));
  t.deepEqual([...used, ...heldout], source);
  t.is(summaryOf(out).statistics.corpus, join(out, 'stats-corpus.jsonl'), 'the statistics read the corpus without the held-out part');
});

test('each checkpoint\'s generation metrics, held-out perplexity and fluency equal the Evaluator\'s on the saved editor; provenance names settings.json and the run', async (t) => {
  const out = await finishedSweep();
  const summary = summaryOf(out);
  const line = readMetrics(out).at(-1)!;
  t.is(line.settings, createHash('sha256').update(readFileSync(join(out, 'settings.json'))).digest('hex'));
  t.is(summary.settingsSha256, line.settings);
  t.like(summary.runs[line.run], { node: process.version });
  t.deepEqual(summary.records, { first: '0', last: '1', count: 2 });
  t.true(summary.modes[0].contextTemplates[0] === '{}');
  // Recompute from the files alone: the unedited model, then the saved editor.
  await using model = await HookedModel.load(tinyGpt2);
  const evaluator = new Evaluator(model, { generation: true, extraTokens: evaluationDefaults.extraTokens });
  const heldout = readDocuments(readFileSync(join(out, 'heldout.jsonl'), 'utf8'), 'heldout.jsonl');
  const cases = loadDataset(testbedData, 'counterfact').slice(0, 2);
  const prompts = cases.map((c) => c.record.prompt);
  const fluency = async () => (await evaluator.fluency(prompts, { maxNewTokens: evaluationDefaults.fluencyTokens })).fluency;
  const snapshot = await evaluator.snapshot(cases.map((c) => c.record));
  t.is(summary.baseline.perplexity, (await evaluator.perplexity(heldout)).perplexity);
  t.is(summary.baseline.fluency, await fluency());
  await using editor = await ConsecutiveEditor.load(model, join(out, 'comeba-hk', 'editor'));
  const result = await evaluator.evaluate(cases.map((c) => c.record), snapshot);
  t.deepEqual(line.generated, { reliability: result.generated!.reliability, generality: result.generated!.generality, locality: result.generated!.locality, average: result.generated!.average });
  t.is(line.perplexity, (await evaluator.perplexity(heldout)).perplexity);
  t.is(line.perplexityRatio, line.perplexity! / summary.baseline.perplexity!);
  t.is(line.fluency, await fluency());
  t.is(line.fluencyBefore, summary.baseline.fluency);
  t.is(editor.step, 1);
  const records = JSON.parse(readFileSync(join(out, 'comeba-hk', 'records.json'), 'utf8'));
  t.deepEqual(records.map((r: { scores: unknown }) => r.scores), JSON.parse(JSON.stringify(result.records)));
});

test('--fluency-at checkpoints takes fluency at every checkpoint, with --fluency-decisions through the hooks; both are settings', async (t) => {
  const out = tempDir('comeba-sweep-');
  // Layers 0–1: on this fixture the two decision rules give other texts after these edits (on 1–2 they do not).
  const setup = { ...small(out), n: 4, layers: [0, 1] };
  await runSweep({ ...setup, fluencyAt: 'checkpoints', fluencyDecisions: 'settled' });
  const lines = readMetrics(out);
  t.deepEqual(lines.map((l) => l.edits), [2, 4]);
  for (const l of lines) t.true(typeof l.fluency === 'number' && l.fluencyBefore === summaryOf(out).baseline.fluency, `${l.edits} edits: fluency ${l.fluency}`);
  t.like(summaryOf(out).evaluation, { fluencyAt: 'checkpoints', fluencyDecisions: 'settled' });
  t.like(JSON.parse(readFileSync(join(out, 'settings.json'), 'utf8')), { '--fluency-at': 'checkpoints', '--fluency-decisions': 'settled' });
  // The last checkpoint's, recomputed on the saved editor with settled decisions.
  await using model = await HookedModel.load(tinyGpt2);
  const prompts = loadDataset(testbedData, 'counterfact').slice(0, 4).map((c) => c.record.prompt);
  await using editor = await ConsecutiveEditor.load(model, join(out, 'comeba-hk', 'editor'));
  const evaluator = new Evaluator(model);
  const settled = await evaluator.fluency(prompts, { maxNewTokens: evaluationDefaults.fluencyTokens, decisions: 'settled' });
  t.is(lines[1].fluency, settled.fluency);
  const exact = await evaluator.fluency(prompts, { maxNewTokens: evaluationDefaults.fluencyTokens });
  t.not(exact.texts.map((x) => x.text).join(), settled.texts.map((x) => x.text).join(), 'a meaningful case: the decision rule changes the texts');
  // The default sweep takes fluency at the end only, and a folder of the other kind is not resumed with it.
  await t.throwsAsync(runSweep(setup), { instanceOf: InvalidArgumentError, message: /--fluency-at "checkpoints" → unset; --fluency-decisions "settled" → unset/ });
  // From the command line (a queued job's argv too): the flags, checked before any model loads.
  const { parseSweepArgs } = await import('../lib/sweep/args.js');
  t.like(parseSweepArgs(['--fluency-at', 'checkpoints', '--fluency-decisions', 'settled'], { files: false }), { fluencyAt: 'checkpoints', fluencyDecisions: 'settled' });
  t.like(parseSweepArgs([], { files: false }), { fluencyAt: 'end', fluencyDecisions: 'exact' });
  t.throws(() => parseSweepArgs(['--fluency-decisions', 'lazy'], { files: false }), { instanceOf: InvalidArgumentError, message: /--fluency-decisions/ });
  for (const [bad, message] of [
    [{ fluencyAt: 'sometimes' }, /--fluency-at must be one of end, checkpoints, not 'sometimes'/],
    [{ fluencyDecisions: 'lazy' }, /--fluency-decisions must be one of exact, settled, not 'lazy'/],
    [{ fluencyAt: 'checkpoints', skip: ['fluency'] }, /--fluency-at checkpoints .* not with --skip fluency/],
    [{ fluencyAt: 'checkpoints', protocol: 'single-round' }, /--fluency-at checkpoints .* not with --protocol single-round/],
  ] as const) await t.throwsAsync(runSweep({ ...small(tempDir('comeba-sweep-')), ...(bad as Partial<SweepOptions>) }), { instanceOf: InvalidArgumentError, message });
});

test('--stats-cache lets a second sweep of the same model and corpus reuse the first one\'s statistics', async (t) => {
  const first = tempDir('comeba-sweep-');
  const [a] = await runSweep(small(first));
  const cache = join(first, 'stats');
  const files = readdirSync(cache).filter((f) => f.endsWith('.safetensors'));
  t.is(files.length, 1);
  const made = readFileSync(join(cache, files[0]));
  const second = tempDir('comeba-sweep-');
  const [b] = await runSweep({ ...small(second), statsCache: cache });
  t.false(existsSync(join(second, 'stats')), 'the second sweep collected nothing of its own');
  t.deepEqual(readdirSync(cache).filter((f) => f.endsWith('.safetensors')), files);
  t.true(readFileSync(join(cache, files[0])).equals(made), 'the cached file is read, not rewritten');
  t.deepEqual([b.reliability, b.generality, b.locality], [a.reliability, a.generality, a.locality]);
});

test('--skip leaves the optional metrics out, and the statistics then read the whole corpus', async (t) => {
  const out = tempDir('comeba-sweep-');
  await runSweep({ ...small(out), skip: ['generation', 'perplexity', 'fluency'] });
  const [line] = readMetrics(out);
  for (const key of ['generated', 'perplexity', 'perplexityRatio', 'fluency'] as const) t.is(line[key], undefined, key);
  t.false(existsSync(join(out, 'heldout.jsonl')));
  t.is(summaryOf(out).statistics.corpus, join(tinyGpt2, 'stats-corpus.txt'));
  t.deepEqual(JSON.parse(readFileSync(join(out, 'settings.json'), 'utf8'))['--skip'], ['generation', 'perplexity', 'fluency']);
  await t.throwsAsync(runSweep({ ...small(tempDir('comeba-sweep-')), skip: ['speed' as never] }), { instanceOf: InvalidArgumentError, message: /--skip takes generation, perplexity, fluency, not 'speed'/ });
});
