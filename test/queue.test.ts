// The queue (lib/queue/queue.ts) against a real redis-server on loopback, one per test, with `comeba worker`
// processes: a grid of 4 sweeps on 2 workers ends with the summaries of the 4 sweeps run one after another;
// a worker killed with SIGKILL mid-job changes nothing in the end, nor does one cut off from Redis (its job's process
// stops before the lock lapses); statistics as 3 shards on 2 workers, merged,
// equal the one-shot statistics within 1e-12. Skipped without redis-server unless COMEBA_REQUIRE_REDIS=1.
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { HookedModel, Statistics } from '../lib/index.js';
import { parseSweepArgs } from '../lib/sweep/args.js';
import { checkJobData, connectionOf, expandGrid, gridJobs, jobFolder, queueName, submitGrid, sweepArgv, type GridFile, type SweepSpec } from '../lib/queue/queue.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { lockName } from '../lib/io/lock.js';
import { readMetrics, runSweep, type SweepSummaryFile } from '../lib/sweep/sweep.js';
import { needing, tempDir, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'lib', 'cli', 'main.ts');
const redisServer = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0;
const withRedis = needing(test, redisServer, 'no redis-server on PATH', 'COMEBA_REQUIRE_REDIS', 'apt install redis-server');
const data = join(root, 'testbed', 'counterfact.json');
const base: SweepSpec = { model: tinyGpt2, data, n: 6, batch: 3, 'eval-every': 3, layers: '1,2', lambda: 100 };

/** A redis-server of its own on a free loopback port, without persistence; stopped by the returned function. */
async function startRedis(): Promise<{ url: string; server: ChildProcess; stop: () => Promise<void> }> {
  const port = await new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  await waitFor(async () => {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);  // refused while the server starts: polled again
    try {
      await client.connect();
      return (await client.ping()) === 'PONG';
    } catch {
      return false;
    } finally {
      client.disconnect();
    }
  }, 10_000, 'redis-server to answer');
  return { url, server: child, stop: async () => { child.kill('SIGCONT'); child.kill('SIGTERM'); await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r))); } };
}

async function waitFor(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `comeba worker` as its own process (a short lock, so a killed worker's job is retried within seconds). */
function startWorker(url: string, results: string, log: string, env: Record<string, string> = {}): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', cli, 'worker', '--results', results, '--redis', url, '--lock-seconds', '3'], {
    cwd: root, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OMP_NUM_THREADS: '1', ...env },
  });
  const out = createWriteStream(log, { flags: 'a' });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return child;
}

async function stopWorkers(workers: ChildProcess[]): Promise<void> {
  await Promise.all(workers.map((w) => new Promise((r) => {
    if (w.exitCode !== null || w.signalCode !== null) return r(null);
    w.once('exit', r);
    w.kill('SIGTERM');
  })));
}

const summaryOf = (out: string) => JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as SweepSummaryFile;
// Without wall-clock figures, invocations, paths and bytes written, which differ between runs.
const comparable = (out: string) => ({
  modes: summaryOf(out).modes.map(({ seconds, editsPerSecond, phases, ...rest }) => rest),
  metrics: readMetrics(out).map(({ seconds, phases, run, settings, stateBytes, ...rest }) => rest),
});

/** The grid's sweeps run one after another in this process, each into its own folder. */
async function reference(grid: GridFile): Promise<Map<string, ReturnType<typeof comparable>>> {
  const results = new Map<string, ReturnType<typeof comparable>>();
  for (const { id, spec } of expandGrid(grid).sweeps) {
    const out = join(tempDir('comeba-reference-'), id);
    await runSweep(parseSweepArgs(sweepArgv(spec, out))!);
    results.set(id, comparable(out));
  }
  return results;
}

async function allDone(url: string, name: string, count: number): Promise<boolean> {
  const jobs = await gridJobs(url, name);
  const failed = jobs.find((j) => j.state === 'failed');
  if (failed) throw new Error(`job ${failed.id} failed: ${failed.failed}`);
  return jobs.length === count && jobs.every((j) => j.state === 'completed');
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * Waits for the sweep in `out` to pass its 9th edit, then freezes the job's process (named by the sweep folder's
 * lock) with SIGSTOP and returns its pid. The 30-edit sweep takes about 1.5 s, less than a worker needs to notice a
 * lost lock, so the test holds it mid-sweep as a long sweep would be; SIGCONT lets it go on.
 */
async function holdJob(out: string): Promise<number> {
  const progress = join(out, 'comeba-hk', 'progress.json');
  await waitFor(() => existsSync(progress) && JSON.parse(readFileSync(progress, 'utf8')).edits >= 9, 120_000, 'a checkpoint');
  const pid = (JSON.parse(readFileSync(join(out, lockName), 'utf8')) as { pid: number }).pid;
  process.kill(pid, 'SIGSTOP');
  const edits = JSON.parse(readFileSync(progress, 'utf8')).edits as number;
  if (edits >= 30) throw new Error(`the sweep ended (${edits} edits) before it could be held`);
  return pid;
}

withRedis('a grid of 4 sweeps on 2 workers ends with the summaries of the 4 sweeps run one after another, through a crash', async (t) => {
  const redis = await startRedis();
  const results = tempDir('comeba-results-');
  const grid: GridFile = { name: 'four', grid: { base, vary: { mode: ['comeba-hk', 'memit'], lambda: [100, 400] } } };
  // Both workers kill the first attempt of one job with SIGSEGV in its sandbox, as a native crash would.
  const crashing = `four.sweep.${expandGrid(grid).sweeps[1].id}`;
  const workers = [0, 1].map((i) => startWorker(redis.url, results, join(results, `worker-${i}.log`), { COMEBA_TEST_CRASH_JOB: crashing, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${join(root, 'test', 'crash-job.mjs')}`.trim() }));
  try {
    t.deepEqual(await submitGrid(redis.url, grid), { sweeps: 4, shards: 0 });
    t.deepEqual(await submitGrid(redis.url, grid), { sweeps: 4, shards: 0 });  // the same jobs, not added twice
    const expected = await reference(grid);
    await waitFor(() => allDone(redis.url, 'four', 4), 240_000, 'the grid');
    const jobs = await gridJobs(redis.url, 'four');
    t.is(jobs.length, 4);
    t.deepEqual(jobs.map((j) => (j.id === crashing ? 2 : 1)), jobs.map((j) => j.attempts), 'the crashed job ran twice, the others once');
    t.true(workers.every((w) => w.exitCode === null && w.signalCode === null), 'both workers outlived the crash');
    for (const { id } of expandGrid(grid).sweeps) t.deepEqual(comparable(join(results, 'four', 'sweeps', id)), expected.get(id), id);
    // Both workers took jobs.
    const logs = [0, 1].map((i) => readFileSync(join(results, `worker-${i}.log`), 'utf8'));
    t.true(logs.every((l) => /start {2}four\.sweep\./.test(l)), logs.join('\n---\n'));
    // The collected table has a row per sweep with the options that vary.
    const status = spawnSync(process.execPath, ['--import', 'tsx', cli, 'queue', 'collect', 'four', '--redis', redis.url, '--results', results], { cwd: root, encoding: 'utf8' });
    t.is(status.status, 0, status.stderr);
    t.is(status.stdout.split('\n').filter((l) => /^\| [0-9a-f]{12} \| (100|400) \| (comeba-hk|memit) \| 6 \|/.test(l)).length, 4, status.stdout);
    t.true(existsSync(join(results, 'four', 'grid.svg')));
  } finally {
    await stopWorkers(workers);
    await redis.stop();
  }
});

withRedis('a worker killed with SIGKILL mid-job: another resumes the job and the summary is an uninterrupted run\'s', async (t) => {
  const redis = await startRedis();
  const results = tempDir('comeba-results-');
  const spec = { ...base, n: 30, mode: 'comeba-hk' };
  const grid: GridFile = { name: 'killed', sweeps: [spec] };
  const [{ id }] = expandGrid(grid).sweeps;
  const expected = await reference(grid);
  const first = startWorker(redis.url, results, join(results, 'worker-0.log'));
  const others: ChildProcess[] = [];
  let held = 0;
  try {
    await submitGrid(redis.url, grid);
    held = await holdJob(join(results, 'killed', 'sweeps', id));
    first.kill('SIGKILL');
    await new Promise((r) => (first.exitCode !== null || first.signalCode !== null ? r(null) : first.once('exit', r)));
    t.is((await gridJobs(redis.url, 'killed'))[0].state, 'active', 'the job was still running when its worker died');
    process.kill(held, 'SIGCONT');  // its worker gone, the job's process ends on its own
    await waitFor(() => !alive(held), 30_000, 'the orphaned job\'s process to stop');
    others.push(...[1, 2].map((i) => startWorker(redis.url, results, join(results, `worker-${i}.log`))));
    await waitFor(() => allDone(redis.url, 'killed', 1), 240_000, 'the retried job');
    t.deepEqual(comparable(join(results, 'killed', 'sweeps', id)), expected.get(id));
    const runs = readFileSync(join(results, 'killed', 'sweeps', id, 'runs.jsonl'), 'utf8').trim().split('\n');
    t.is(runs.length, 2, 'the sweep ran twice: killed, then resumed');
  } finally {
    if (held && alive(held)) process.kill(held, 'SIGCONT');
    await stopWorkers([first, ...others]);
    await redis.stop();
  }
});

withRedis('a worker cut off from Redis stops its job\'s process before the lock lapses; the job then ends as an uninterrupted run', async (t) => {
  const redis = await startRedis();
  const results = tempDir('comeba-results-');
  const spec = { ...base, n: 30, mode: 'comeba-hk' };
  const grid: GridFile = { name: 'cut', sweeps: [spec] };
  const [{ id }] = expandGrid(grid).sweeps;
  const expected = await reference(grid);
  const log = join(results, 'worker.log');
  const worker = startWorker(redis.url, results, log);
  const out = join(results, 'cut', 'sweeps', id);
  let held = 0;
  try {
    await submitGrid(redis.url, grid);
    // The sweep's folder lock names the job's process (the worker's sandboxed child).
    const pid = held = await holdJob(out);
    t.not(pid, worker.pid);
    redis.server.kill('SIGSTOP');  // Redis stops answering; its clock, and so the lock's TTL, runs on
    try {
      await waitFor(() => /lost its lock/.test(readFileSync(log, 'utf8')), 30_000, 'the worker to give the job up');
      process.kill(pid, 'SIGCONT');  // mid-sweep, it reads the worker's word to stop
      await waitFor(() => !alive(pid), 30_000, 'the job\'s process to stop');
      t.true(worker.exitCode === null && worker.signalCode === null, 'the worker itself goes on');
      await new Promise((r) => setTimeout(r, 4000));  // past the lock's 3 s: the job is free for any worker
    } finally {
      redis.server.kill('SIGCONT');
    }
    await waitFor(() => allDone(redis.url, 'cut', 1), 240_000, 'the job, taken up again');
    t.deepEqual(comparable(out), expected.get(id), 'no edit twice, no metrics line twice');
    t.is(readFileSync(join(out, 'runs.jsonl'), 'utf8').trim().split('\n').length, 2, 'stopped, then resumed');
    t.regex(readFileSync(log, 'utf8'), /lost its lock \(no renewal for [\d.]+ s: Redis unreachable\?\)/);
  } finally {
    if (held && alive(held)) process.kill(held, 'SIGCONT');
    await stopWorkers([worker]);
    await redis.stop();
  }
});

withRedis('statistics as 3 shards on 2 workers, merged, equal the one-shot statistics within 1e-12', async (t) => {
  const redis = await startRedis();
  const results = tempDir('comeba-results-');
  const corpus = join(tempDir('comeba-corpus-'), 'corpus.txt');
  const records = JSON.parse(readFileSync(data, 'utf8')) as { prompt: string; ground_truth: string }[];
  writeFileSync(corpus, records.slice(0, 100).map((r) => `${r.prompt} ${r.ground_truth}.`).join('\n'));
  const grid: GridFile = { name: 'stats', stats: [{ name: 'kk', model: tinyGpt2, corpus, shards: 3, layers: '0,2' }] };
  const workers = [0, 1].map((i) => startWorker(redis.url, results, join(results, `worker-${i}.log`)));
  try {
    t.deepEqual(await submitGrid(redis.url, grid), { sweeps: 0, shards: 3 });
    await waitFor(() => allDone(redis.url, 'stats', 4), 120_000, 'the shards and the merge');
    await using model = await HookedModel.load(tinyGpt2);
    const merged = await Statistics.load(model, join(results, 'stats', 'stats', 'kk.safetensors'));
    const whole = await Statistics.collect(model, { corpus, layers: [0, 2], cacheDir: tempDir() });
    t.is(merged.provenance.tokens, whole.provenance.tokens);
    for (const layer of [0, 2]) {
      const a = (await merged.secondMoment(layer)).data, b = (await whole.secondMoment(layer)).data;
      let diff = 0, scale = 0;
      for (let i = 0; i < a.length; i++) {
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
        scale = Math.max(scale, Math.abs(b[i]));
      }
      t.true(diff / scale <= 1e-12, `layer ${layer}: ${diff / scale}`);
    }
  } finally {
    await stopWorkers(workers);
    await redis.stop();
  }
});

// ---- job data from Redis is not trusted ---------------------------------------------------------------------

test('job data is checked as queue submit checks it: no folder outside --results, no smuggled --out', (t) => {
  const grid: GridFile = { name: 'g', sweeps: [base], stats: [{ name: 's', model: tinyGpt2, corpus: data, shards: 2 }] };
  const [sweep] = expandGrid(grid).sweeps;
  const stats = expandGrid(grid).stats[0];
  const good = { kind: 'sweep', grid: 'g', id: sweep.id, spec: sweep.spec };
  t.deepEqual(checkJobData(JSON.parse(JSON.stringify(good))), good);
  const shard = { kind: 'stats-shard', grid: 'g', id: 'g.stats.s.shard-1', spec: stats, index: 1 };
  t.deepEqual(checkJobData(shard), shard);
  const results = tempDir('comeba-results-');
  t.true(jobFolder(results, checkJobData(good)).startsWith(join(results, 'g', 'sweeps')));

  const refused: [unknown, RegExp][] = [
    [{ ...good, grid: '../../escaped' }, /grid "\.\.\/\.\.\/escaped" is not a grid name/],
    [{ ...shard, spec: { ...stats, name: '../../../../x' } }, /each statistics entry needs a name/],
    [{ ...good, id: '../x' }, /sweep id "\.\.\/x" is not its spec's/],
    [{ ...good, spec: { ...base, out: '/tmp/x' } }, /has no "out"/],
    [{ ...good, spec: { ...base, 'n=1 --out': '/tmp/x' } }, /sweep option "n=1 --out" is not one of comeba sweep's/],
    [{ ...shard, index: 2 }, /shard index 2 is not in \[0, 2\)/],
    [{ ...shard, id: 'other.stats.s.shard-1' }, /is not its statistics'/],
    [{ ...good, kind: 'exec' }, /unknown kind "exec"/],
    [null, /job data is not an object/],
  ];
  for (const [bad, message] of refused) t.throws(() => checkJobData(bad), { instanceOf: InvalidArgumentError, message }, JSON.stringify(bad));
});

withRedis('a job added to Redis directly with a grid name that climbs out of --results fails on the worker and writes nothing outside', async (t) => {
  const redis = await startRedis();
  const results = join(tempDir('comeba-escape-'), 'results');
  const escaped = join(results, '..', '..', 'escaped');
  const queue = new Queue(queueName, { connection: connectionOf(redis.url) });
  const spec = { ...base };
  await queue.add('sweep', { kind: 'sweep', grid: '../../escaped', id: expandGrid({ name: 'x', sweeps: [spec] }).sweeps[0].id, spec }, { jobId: 'evil', attempts: 1 });
  const worker = startWorker(redis.url, results, join(tempDir('comeba-escape-log-'), 'worker.log'));
  try {
    await waitFor(async () => (await queue.getJob('evil'))?.failedReason !== undefined, 60_000, 'the job to fail');
    t.regex((await queue.getJob('evil'))!.failedReason, /grid "\.\.\/\.\.\/escaped" is not a grid name/);
    t.false(existsSync(escaped));
  } finally {
    await queue.close();
    await stopWorkers([worker]);
    await redis.stop();
  }
});

withRedis('a statistics grid resubmitted with a corrected corpus collects its shards anew instead of merging the old ones', async (t) => {
  const results = tempDir('comeba-results-');
  const corpus = join(tempDir('comeba-corpus-'), 'corpus.txt');
  const records = JSON.parse(readFileSync(data, 'utf8')) as { prompt: string; ground_truth: string }[];
  const grid: GridFile = { name: 'stats', stats: [{ name: 'kk', model: tinyGpt2, corpus, shards: 2, layers: '1' }] };
  const merged = join(results, 'stats', 'stats', 'kk.safetensors');
  const corpusHash = async () => {
    await using model = await HookedModel.load(tinyGpt2);
    return (await Statistics.load(model, merged)).provenance.corpusHash;
  };
  const hashes: string[] = [];
  // Each round on a fresh Redis (the first grid's jobs gone), the results folder kept.
  for (const lines of [records.slice(0, 40), records.slice(40, 80)]) {
    writeFileSync(corpus, lines.map((r) => `${r.prompt} ${r.ground_truth}.`).join('\n'));
    const redis = await startRedis();
    const workers = [startWorker(redis.url, results, join(results, 'worker.log'))];
    try {
      await submitGrid(redis.url, grid);
      await waitFor(() => allDone(redis.url, 'stats', 3), 120_000, 'the shards and the merge');
      hashes.push(await corpusHash());
    } finally {
      await stopWorkers(workers);
      await redis.stop();
    }
  }
  t.not(hashes[0], hashes[1]);
  t.is(hashes[1], createHash('sha256').update(readFileSync(corpus)).digest('hex'));
});

test('queue submit checks a grid up front: bounded size, an object base, known option names, no statistics named twice', (t) => {
  const refused: [unknown, RegExp][] = [
    [{ name: 'g', grid: { base, vary: { lambda: Array.from({ length: 1000 }, (_, i) => i + 1), n: Array.from({ length: 1000 }, (_, i) => i + 1) } } }, /expands to more than 10000 sweeps/],
    [{ name: 'g', grid: { base: null, vary: { lambda: [1, 2] } } }, /"grid\.base" must be an object/],
    [{ name: 'g', sweeps: [{ ...base, lamda: 5 }] }, /sweep option "lamda" is not one of comeba sweep's/],
    [{ name: 'g', sweeps: [{ ...base, help: 1 }] }, /sweep option "help" is not one of/],
    [{ name: 'g', stats: [{ name: 's', model: tinyGpt2, corpus: data, shards: 200_000 }] }, /shards in \[1, 1024\]/],
    [{ name: 'g', stats: [{ name: 's', model: tinyGpt2, corpus: data, shards: 1 }, { name: 's', model: tinyGpt2, corpus: data, shards: 2 }] }, /names the statistics "s" twice/],
    [{ name: 'g', sweeps: { n: 5 } }, /"sweeps" must be a list/],
  ];
  for (const [grid, message] of refused) t.throws(() => expandGrid(grid as GridFile), { instanceOf: InvalidArgumentError, message });
  // Within bounds: 100 × 100 sweeps expand.
  const wide = { name: 'g', grid: { base, vary: { lambda: Array.from({ length: 100 }, (_, i) => i + 1), n: Array.from({ length: 100 }, (_, i) => i + 1) } } };
  t.is(expandGrid(wide).sweeps.length, 10_000);
});
