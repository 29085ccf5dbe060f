// The sweep: resumable after SIGKILL with the same result, and runnable on the shared CounterFact data with
// any model folder HookedModel loads.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { editorSettings, runSweep, readMetrics, type SweepSummary } from '../lib/sweep.js';
import { tempDir, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'lib', 'cli', 'main.ts');
const shared = join(root, '..', 'shared', 'data');
const args = (out: string) => ['--import', 'tsx', cli, 'sweep', '--n', '40', '--batch', '10', '--eval-every', '10', '--mode', 'comeba-hk+calibrated', '--out', out];

/** The summary without wall-clock figures, which differ between runs. */
const comparable = (out: string) =>
  (JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as SweepSummary[]).map(({ seconds, editsPerSecond, ...rest }) => rest);
const metrics = (out: string) => readMetrics(out).map(({ seconds, ...rest }) => rest);

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
  t.true(existsSync(join(killed, 'chart.svg')));
});

test('a sweep on the shared CounterFact validation file runs with the tiny fixture model', async (t) => {
  const data = join(shared, 'counterfact', 'easyedit', 'counterfact-val.json');
  t.true(existsSync(data), `${data} is missing: these tests read ../shared/data (CI provides it)`);
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

test('λ per method and protocol: the paper\'s 5000 for single-round COMEBA-HK, the mode\'s default otherwise, --lambda first', (t) => {
  const testbed = join(root, 'testbed', 'model');  // its comeba.json sets no λ
  const o = { model: testbed, protocol: 'single-round' as const };
  t.like(editorSettings('comeba-hk', o), { mode: 'comeba-hk', scope: 'paper', lambda: 5000 });
  t.like(editorSettings('comeba-hk+calibrated', o), { mode: 'comeba-hk', scope: 'calibrated', lambda: 5000 });
  t.is(editorSettings('memit', o).lambda, undefined);
  t.is(editorSettings('comeba-hk', { ...o, protocol: 'consecutive' }).lambda, undefined);
  t.is(editorSettings('comeba-hk', { ...o, lambda: 800 }).lambda, 800);
});
