// Grids of sweeps and sharded statistics as BullMQ jobs over the user's Redis. Each job is an existing
// resumable unit (a sweep folder, a statistics shard in its cache), written under a results directory that
// every worker shares: a job whose worker died is retried by another (BullMQ's stalled-job check) and resumes
// where the dead one's last checkpoint left it. Jobs run in sandboxed child processes (lib/queue/processor.ts),
// so a native crash fails the job, not the worker. Consecutive editing stays sequential inside one sweep.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FlowProducer, Queue, Worker, type JobsOptions } from 'bullmq';
import { InvalidArgumentError, RedisUnavailableError } from '../errors.js';
import { parseSweepArgs, sweepFlags } from '../sweep/args.js';

/** The BullMQ queue every comeba job goes through. */
export const queueName = 'comeba';

/** A sweep as `comeba sweep`'s options, without the dashes: { "model": "…", "n": 200, "mode": "memit", … }; no "out". */
export type SweepSpec = Record<string, string | number>;

/** E[kkᵀ] collected as `shards` jobs and merged: `comeba stats`'s options, without the dashes, plus a name. */
export interface StatsSpec {
  name: string;
  model: string;
  corpus: string;
  shards: number;
  layers?: string;
  dtype?: 'float32' | 'float64';
  'max-length'?: number;
  'batch-size'?: number;
}

/** grid.json: sweeps listed, and/or a base sweep crossed with lists of values, and statistics to collect. */
export interface GridFile {
  name: string;
  sweeps?: SweepSpec[];
  grid?: { base: SweepSpec; vary: Record<string, (string | number)[]> };
  stats?: StatsSpec[];
}

export type JobData =
  | { kind: 'sweep'; grid: string; id: string; spec: SweepSpec }
  | { kind: 'stats-shard'; grid: string; id: string; spec: StatsSpec; index: number }
  | { kind: 'stats-merge'; grid: string; id: string; spec: StatsSpec };

/** Where a job writes under the results directory (inside it, for job data that passed checkJobData). */
export function jobFolder(results: string, data: JobData): string {
  const folder = data.kind === 'sweep' ? join(results, data.grid, 'sweeps', data.id) : join(results, data.grid, 'stats', data.spec.name);
  if (!resolve(folder).startsWith(resolve(results) + sep)) throw new InvalidArgumentError(`job data names a folder outside --results: ${folder}`);
  return folder;
}

/**
 * A job's data as read back from Redis, checked as `queue submit` checks what it adds: anyone who can write to the
 * queue could otherwise make every worker write where it likes. Throws InvalidArgumentError naming the field.
 */
export function checkJobData(data: unknown): JobData {
  const d = data as Partial<Record<string, unknown>> | null;
  if (typeof d !== 'object' || d === null) throw new InvalidArgumentError('job data is not an object');
  if (typeof d.grid !== 'string' || !safeName.test(d.grid)) throw new InvalidArgumentError(`job data: grid ${JSON.stringify(d.grid)} is not a grid name`);
  if (d.kind === 'sweep') {
    const spec = checkSweepSpec(d.spec);
    if (d.id !== slug(spec)) throw new InvalidArgumentError(`job data: sweep id ${JSON.stringify(d.id)} is not its spec's`);
    return { kind: 'sweep', grid: d.grid, id: d.id, spec };
  }
  if (d.kind === 'stats-shard' || d.kind === 'stats-merge') {
    const spec = checkStatsSpec(d.spec);
    if (typeof d.id !== 'string' || !d.id.startsWith(`${d.grid}.stats.${spec.name}.`)) throw new InvalidArgumentError(`job data: id ${JSON.stringify(d.id)} is not its statistics'`);
    if (d.kind === 'stats-merge') return { kind: d.kind, grid: d.grid, id: d.id, spec };
    if (!(Number.isSafeInteger(d.index) && (d.index as number) >= 0 && (d.index as number) < spec.shards)) {
      throw new InvalidArgumentError(`job data: shard index ${JSON.stringify(d.index)} is not in [0, ${spec.shards})`);
    }
    return { kind: d.kind, grid: d.grid, id: d.id, spec, index: d.index as number };
  }
  throw new InvalidArgumentError(`job data: unknown kind ${JSON.stringify(d.kind)}`);
}

// A sweep: `comeba sweep`'s option names without the dashes (no "out", no "name=value" smuggling), string or number values.
function checkSweepSpec(spec: unknown): SweepSpec {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) throw new InvalidArgumentError('each sweep is an object of comeba sweep options');
  for (const [key, value] of Object.entries(spec)) {
    if (key === 'out') throw new InvalidArgumentError('a grid sweep has no "out": its folder is <results>/<grid>/sweeps/<id>');
    if (!Object.hasOwn(sweepFlags, key) || key === 'help') {
      throw new InvalidArgumentError(`sweep option ${JSON.stringify(key)} is not one of comeba sweep's (${Object.keys(sweepFlags).filter((k) => k !== 'out' && k !== 'help').join(', ')})`);
    }
    if (typeof value !== 'string' && !(typeof value === 'number' && Number.isFinite(value))) throw new InvalidArgumentError(`sweep option "${key}" must be a string or a number`);
  }
  return spec as SweepSpec;
}

function checkStatsSpec(s: unknown): StatsSpec {
  const spec = s as Partial<StatsSpec> | null;
  if (!safeName.test(typeof spec?.name === 'string' ? spec.name : '') || typeof spec!.model !== 'string' || typeof spec!.corpus !== 'string' ||
      !(Number.isSafeInteger(spec!.shards) && spec!.shards! >= 1 && spec!.shards! <= gridLimits.shards)) {
    throw new InvalidArgumentError(`each statistics entry needs a name, model, corpus and a whole number of shards in [1, ${gridLimits.shards}]`);
  }
  return spec as StatsSpec;
}

const slug = (spec: object) => createHash('sha256').update(JSON.stringify(spec, Object.keys(spec).sort())).digest('hex').slice(0, 12);
const safeName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** What one grid may hold: more is almost surely a mistake, and each job is a Redis entry. */
export const gridLimits = { sweeps: 10_000, shards: 1_024 } as const;

/** The sweeps of a grid file: the listed ones, then the base crossed with every combination of `vary`. */
export function expandGrid(grid: GridFile): { sweeps: { id: string; spec: SweepSpec }[]; stats: StatsSpec[] } {
  if (typeof grid?.name !== 'string' || !safeName.test(grid.name)) throw new InvalidArgumentError(`the grid needs a name of letters, digits, '.', '_', '-' (not ${JSON.stringify(grid?.name)})`);
  if (grid.sweeps !== undefined && !Array.isArray(grid.sweeps)) throw new InvalidArgumentError('"sweeps" must be a list of sweeps');
  const specs: SweepSpec[] = [...(grid.sweeps ?? [])];
  if (grid.grid !== undefined) {
    const { base, vary = {} } = (grid.grid ?? {}) as Partial<NonNullable<GridFile['grid']>>;
    if (typeof base !== 'object' || base === null || Array.isArray(base)) throw new InvalidArgumentError('"grid.base" must be an object of comeba sweep options');
    if (typeof vary !== 'object' || vary === null || Array.isArray(vary)) throw new InvalidArgumentError('"grid.vary" must map options to lists of values');
    // Counted before anything is expanded: a typo of a list's length must not exhaust the heap.
    let count = specs.length + 1;
    for (const [key, values] of Object.entries(vary)) {
      if (!Array.isArray(values) || values.length === 0) throw new InvalidArgumentError(`grid.vary.${key} must be a non-empty list`);
      count = (count - specs.length) * values.length + specs.length;
      if (count > gridLimits.sweeps) throw new InvalidArgumentError(`the grid expands to more than ${gridLimits.sweeps} sweeps; split it`);
    }
    let combos: SweepSpec[] = [{ ...base }];
    for (const [key, values] of Object.entries(vary)) combos = combos.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));
    specs.push(...combos);
  }
  if (specs.length > gridLimits.sweeps) throw new InvalidArgumentError(`the grid lists more than ${gridLimits.sweeps} sweeps; split it`);
  for (const [i, spec] of specs.entries()) {
    checkSweepSpec(spec);
    // Every value as comeba sweep checks it (the files it names are the workers' to check): refused now, not on a worker.
    try {
      parseSweepArgs(sweepArgv(spec, 'out'), { files: false });
    } catch (err) {
      const message = (err as Error).message.replace(/\s*\n\s*/g, ' ');
      throw new InvalidArgumentError(`sweep ${i + 1} of ${specs.length} ${JSON.stringify(spec)}: ${message}`, { cause: err });
    }
  }
  const sweeps = specs.map((spec) => ({ id: slug(spec), spec }));
  const ids = new Set(sweeps.map((s) => s.id));
  if (ids.size !== sweeps.length) throw new InvalidArgumentError('the grid lists the same sweep twice');
  if (grid.stats !== undefined && !Array.isArray(grid.stats)) throw new InvalidArgumentError('"stats" must be a list of statistics entries');
  const stats = (grid.stats ?? []).map(checkStatsSpec);
  const names = stats.map((s) => s.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice !== undefined) throw new InvalidArgumentError(`the grid names the statistics "${twice}" twice`);
  return { sweeps, stats };
}

/** `comeba sweep`'s argv for a spec and its output folder. */
export function sweepArgv(spec: SweepSpec, out: string): string[] {
  return [...Object.entries(spec).flatMap(([k, v]) => [`--${k}`, String(v)]), '--out', out];
}

export function connectionOf(redis: string): { url: string } {
  if (!/^rediss?:\/\//.test(redis)) throw new InvalidArgumentError(`--redis must be a redis:// or rediss:// URL, not '${redis}'`);
  return { url: redis };
}

/**
 * Whether anything listens at the Redis URL, before BullMQ connects: its client retries a refused connection
 * forever and prints each error's stack, where the user needs one line that says what to start.
 */
export async function reachRedis(redis: string, timeoutMs = 5000): Promise<void> {
  const url = new URL(connectionOf(redis).url);
  const host = url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(url.port || 6379);
  await new Promise<void>((done, fail) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const refuse = (reason: string, cause?: unknown) => {
      socket.destroy();
      fail(new RedisUnavailableError(`cannot reach Redis at ${host}:${port} (${reason}): start redis-server there, or name another with --redis URL or COMEBA_REDIS`, { cause }));
    };
    socket.once('connect', () => { socket.end(); done(); });
    socket.once('timeout', () => refuse(`no answer in ${timeoutMs / 1000} s`));
    socket.once('error', (err: NodeJS.ErrnoException) => refuse(err.code ?? err.message, err));
  });
}

// Retried on failure (a crash included) with a pause; a stalled job (its worker gone) goes back to the queue.
const jobOptions: JobsOptions = { attempts: 3, backoff: { type: 'fixed', delay: 2000 }, removeOnComplete: false, removeOnFail: false };

/** Adds the grid's jobs; ids derive from the specs, so submitting the same grid again adds nothing twice. */
export async function submitGrid(redis: string, grid: GridFile): Promise<{ sweeps: number; shards: number }> {
  const { sweeps, stats } = expandGrid(grid);
  await reachRedis(redis);
  const connection = connectionOf(redis);
  const queue = new Queue<JobData>(queueName, { connection });
  const flows = new FlowProducer({ connection });
  try {
    for (const { id, spec } of sweeps) {
      await queue.add('sweep', { kind: 'sweep', grid: grid.name, id, spec }, { ...jobOptions, jobId: `${grid.name}.sweep.${id}` });
    }
    for (const spec of stats) {
      const base = `${grid.name}.stats.${spec.name}`;
      if (await queue.getJob(`${base}.merge`)) continue;
      await flows.add({
        name: 'stats-merge', queueName, data: { kind: 'stats-merge', grid: grid.name, id: `${base}.merge`, spec }, opts: { ...jobOptions, jobId: `${base}.merge` },
        children: Array.from({ length: spec.shards }, (_, index) => ({
          name: 'stats-shard', queueName, data: { kind: 'stats-shard', grid: grid.name, id: `${base}.shard-${index}`, spec, index },
          opts: { ...jobOptions, jobId: `${base}.shard-${index}` },
        })),
      });
    }
    return { sweeps: sweeps.length, shards: stats.reduce((n, s) => n + s.shards, 0) };
  } finally {
    await flows.close();
    await queue.close();
  }
}

export interface JobRow { id: string; kind: string; state: string; progress: string; attempts: number; failed: string; result: unknown; spec: SweepSpec | StatsSpec }

/** Every job of a grid, in the order submitted. */
export async function gridJobs(redis: string, name: string): Promise<JobRow[]> {
  await reachRedis(redis);
  const queue = new Queue<JobData>(queueName, { connection: connectionOf(redis) });
  try {
    const jobs = (await queue.getJobs(['active', 'waiting', 'waiting-children', 'delayed', 'prioritized', 'completed', 'failed'])).filter(
      (j) => !!j && j.data?.grid === name,
    );
    jobs.sort((a, b) => a.timestamp - b.timestamp || String(a.id).localeCompare(String(b.id)));
    return Promise.all(jobs.map(async (j) => ({
      id: String(j.id), kind: j.data.kind, state: await j.getState(), progress: formatProgress(j.progress), attempts: j.attemptsMade,
      failed: j.failedReason ?? '', result: j.returnvalue, spec: j.data.spec,
    })));
  } finally {
    await queue.close();
  }
}

function formatProgress(p: unknown): string {
  if (typeof p === 'number') return `${p}%`;
  if (p && typeof p === 'object') {
    const o = p as { mode?: string; edits?: number; n?: number; documents?: number; totalDocuments?: number };
    if (o.edits !== undefined) return `${o.mode ?? ''} ${o.edits}/${o.n}`.trim();
    if (o.documents !== undefined) return `${o.documents}/${o.totalDocuments} documents`;
  }
  return '';
}

export interface WorkerOptions {
  redis: string;
  results: string;
  concurrency?: number;
  /** Seconds a job's lock lasts without renewal: how soon a dead worker's job is retried elsewhere. */
  lockSeconds?: number;
}

/** A BullMQ worker running comeba jobs in sandboxed child processes. */
export function startWorker(options: WorkerOptions): Worker<JobData> {
  // The processor runs in a child process forked with this process' flags (tsx in a checkout) and environment.
  process.env.COMEBA_RESULTS = options.results;
  const here = fileURLToPath(import.meta.url);
  const processor = join(here, '..', `processor${extname(here)}`);
  if (!existsSync(processor)) throw new InvalidArgumentError(`the job processor ${processor} is missing`);
  const lockDuration = (options.lockSeconds ?? 30) * 1000;
  const worker = new Worker<JobData>(queueName, processor, {
    connection: connectionOf(options.redis), concurrency: options.concurrency ?? 1, useWorkerThreads: false,
    lockDuration, stalledInterval: Math.max(1000, lockDuration / 2), maxStalledCount: 5,
  });
  stopJobsThatLoseTheirLock(worker, lockDuration);
  return worker;
}

/**
 * A job whose lock lapsed may already be another worker's: its process here stops (the processor kills itself on
 * the abort signal) before that worker can start it. A lock is lost when Redis refuses its renewal, or presumed lost
 * when no renewal succeeded for most of its duration (Redis unreachable: its TTL runs out there all the same; a
 * stalled-job check elsewhere needs the whole duration and then its own interval, so the margin left is ample).
 */
function stopJobsThatLoseTheirLock(worker: Worker<JobData>, lockDuration: number): void {
  const renewed = new Map<string, number>();
  const lose = (id: string, why: string) => {
    if (!renewed.delete(id)) return;
    worker.cancelJob(id, 'lock lost');
    worker.emit('error', new Error(`job ${id} lost its lock (${why}): its process was stopped, so that only one worker runs it`));
  };
  worker.on('active', (job) => job.id !== undefined && renewed.set(job.id, Date.now()));
  worker.on('locksRenewed', ({ jobIds }) => jobIds.forEach((id) => renewed.has(id) && renewed.set(id, Date.now())));
  worker.on('lockRenewalFailed', (ids) => ids.forEach((id) => lose(id, 'Redis refused its renewal')));
  const forget = (job: { id?: string } | undefined) => job?.id !== undefined && renewed.delete(job.id);
  worker.on('completed', forget);
  worker.on('failed', forget);
  const watch = setInterval(() => {
    const now = Date.now();
    for (const [id, at] of renewed) {
      if (now - at > 0.8 * lockDuration) lose(id, `no renewal for ${((now - at) / 1000).toFixed(1)} s: Redis unreachable?`);
    }
  }, Math.min(1000, lockDuration / 10));
  watch.unref();
  worker.on('closed', () => clearInterval(watch));
}

/** The grid file at `path`, parsed. */
export function readGrid(path: string): GridFile {
  if (!existsSync(path)) throw new InvalidArgumentError(`${path}: no such file`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as GridFile;
  } catch (err) {
    throw new InvalidArgumentError(`${path} is not valid JSON`, { cause: err });
  }
}
