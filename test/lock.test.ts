// One writer per folder. Two real processes save their editors into one folder many times at once (8 trials, half of
// them with a random delay before every file operation of the library): every save either
// completes or is refused with FolderLockedError naming the other process, and the folder always loads as the state
// of the last save that completed. A lock left by a dead process is taken over; a live holder's is not. Two sweeps on
// one --out: the second is refused while the first runs.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConsecutiveEditor, FolderLockedError, HookedModel } from '../lib/index.js';
import { lockName } from '../lib/io/lock.js';
import { readMetrics } from '../lib/sweep/sweep.js';
import { tempDir, tinyGpt2 } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const cacheDir = tempDir('comeba-lock-stats-');

interface Attempt { saved: boolean; checksum?: string; step?: number; at?: number; code?: string; message?: string }

function writer(dir: string, seed: number, rounds: number, delayMs = 0): Promise<Attempt[]> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', join(here, 'save-writer.ts'), dir, String(seed), String(rounds), cacheDir, String(delayMs)],
      { cwd: root, encoding: 'utf8', timeout: 240_000, env: { ...process.env, OMP_NUM_THREADS: '1' } },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim().split('\n').map((l) => JSON.parse(l) as Attempt))));
  });
}

test('two processes saving into one folder: each save completes or is refused naming the other, and the folder holds the last completed save', async (t) => {
  // Warm the statistics cache once, so that both writers start saving at about the same time.
  await writer(tempDir('comeba-lock-warm-'), 0, 1);
  // Half the trials as fast as they go, half with every file operation of the library delayed by 0–15 ms.
  for (let trial = 0; trial < 8; trial++) {
    const dir = tempDir('comeba-lock-');
    const delay = trial < 4 ? 0 : 15;
    const [a, b] = await Promise.all([writer(dir, 2 * trial, 12, delay), writer(dir, 2 * trial + 1, 12, delay)]);
    const refused = [...a, ...b].filter((x) => !x.saved);
    for (const r of refused) {
      t.is(r.code, 'FOLDER_LOCKED', r.message);
      t.regex(r.message!, new RegExp(`is being written by process \\d+ on ${hostname()}`));
    }
    const last = [...a, ...b].filter((x) => x.saved).sort((x, y) => x.at! - y.at!).at(-1)!;
    t.truthy(last, 'no save completed');
    await using model = await HookedModel.load(tinyGpt2);
    await using loaded = await ConsecutiveEditor.load(model, dir);
    t.is(await loaded.checksum(), last.checksum!, `trial ${trial}: ${refused.length} refused`);
    t.is(loaded.step, last.step!);
    t.false(existsSync(join(dir, lockName)), 'the lock was left behind');
    t.log(`trial ${trial}${delay ? ` (delays ≤ ${delay} ms)` : ''}: ${a.filter((x) => x.saved).length} + ${b.filter((x) => x.saved).length} saves completed, ${refused.length} refused`);
  }
});

async function editorIn(dir: string) {
  const model = await HookedModel.load(tinyGpt2);
  const editor = await ConsecutiveEditor.create(model, { stats: { corpus: join(tinyGpt2, 'stats-corpus.txt'), cacheDir }, layers: [1, 2], lambda: 50, vSteps: 2 });
  await editor.edit([{ prompt: 'The home of {} is', subject: 'Paris', target: ' Rome' }]);
  mkdirSync(dir, { recursive: true });
  return { model, editor };
}

/** /proc/<pid>/stat's start time, as the lock records it. */
const startOf = (pid: number) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8'); return s.slice(s.lastIndexOf(')') + 2).split(' ')[19]; };

test('a lock left by a dead process is taken over; a live holder\'s, or one from another host, refuses the save and names it', async (t) => {
  const dir = tempDir('comeba-lock-');
  const { model, editor } = await editorIn(dir);
  try {
    const lock = join(dir, lockName);
    // A process that has exited: its pid is free (or reused by a process started at another time).
    const dead = spawn('true');
    await new Promise((r) => dead.once('exit', r));
    writeFileSync(lock, JSON.stringify({ pid: dead.pid, host: hostname(), started: '1', since: '2026-01-01T00:00:00Z', command: 'gone' }));
    t.false((await editor.save(dir)).incremental);
    t.false(existsSync(lock));

    const alive = spawn('sleep', ['30']);
    try {
      writeFileSync(lock, JSON.stringify({ pid: alive.pid, host: hostname(), started: startOf(alive.pid!), since: '2026-01-01T00:00:00Z', command: 'sleep 30' }));
      const err = await t.throwsAsync(editor.save(dir), { instanceOf: FolderLockedError });
      t.regex(err!.message, new RegExp(`process ${alive.pid} on ${hostname()} since 2026-01-01T00:00:00Z \\(sleep 30\\).*remove ${lock}`));
      // The same pid with another start time is a reused pid: the holder is gone.
      writeFileSync(lock, JSON.stringify({ pid: alive.pid, host: hostname(), started: '1', since: '2026-01-01T00:00:00Z', command: 'earlier' }));
      await editor.save(dir);
      writeFileSync(lock, JSON.stringify({ pid: 1, host: 'other-host', started: '1', since: '2026-01-01T00:00:00Z', command: 'elsewhere' }));
      await t.throwsAsync(editor.save(dir), { instanceOf: FolderLockedError, message: /process 1 on other-host/ });
    } finally {
      alive.kill();
    }
  } finally {
    await model.dispose();
  }
});

test('two comeba sweep processes on one --out: the second is refused while the first runs, and no metrics line is written twice', async (t) => {
  const out = tempDir('comeba-lock-sweep-');
  const args = ['--import', 'tsx', join(root, 'lib', 'cli', 'main.ts'), 'sweep', '--model', tinyGpt2, '--data', join(root, 'testbed', 'counterfact.json'),
    '--n', '12', '--batch', '2', '--eval-every', '4', '--mode', 'comeba-hk,memit', '--layers', '1,2', '--lambda', '100', '--skip', 'generation,fluency', '--out', out];
  const run = () => new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
  const first = run();
  const until = Date.now() + 60_000;
  while (!existsSync(join(out, lockName)) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const second = await run();
  t.not(second.code, 0);
  t.regex(second.stderr, /the sweep in .* is being written by process \d+/);
  const done = await first;
  t.is(done.code, 0, done.stderr);
  const lines = readMetrics(out).map((m) => `${m.mode}@${m.edits}`);
  t.deepEqual(lines, [...new Set(lines)]);
  t.is(lines.length, 6);
});
