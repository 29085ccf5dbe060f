// `comeba worker`: takes comeba jobs from Redis (BullMQ) and runs each in a sandboxed child process, writing
// under --results. Stop it with Ctrl-C (SIGINT/SIGTERM): the job in hand finishes first.

import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { reachRedis, startWorker } from '../queue/queue.js';
import { positiveInteger } from '../args.js';
import { InvalidArgumentError } from '../errors.js';

export const summary = 'run queued comeba jobs (sweeps, statistics shards) from Redis, writing to a shared results folder';

const usage = `usage: comeba worker --results DIR [--redis URL] [--concurrency N] [--lock-seconds S]

  --results DIR       the results folder every worker shares (a network or shared file system)
  --redis URL         default $COMEBA_REDIS or redis://127.0.0.1:6379
  --concurrency N     jobs at once in this worker            (default 1)
  --lock-seconds S    how long a job stays this worker's without a heartbeat: after that, a job whose worker
                      died is retried by another, resuming from its last checkpoint      (default 30)`;

export async function run(argv: string[]): Promise<number> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      results: { type: 'string' }, redis: { type: 'string', default: process.env.COMEBA_REDIS ?? 'redis://127.0.0.1:6379' },
      concurrency: { type: 'string', default: '1' }, 'lock-seconds': { type: 'string', default: '30' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(usage);
    return 0;
  }
  if (v.results === undefined) throw new InvalidArgumentError('--results DIR is required');
  const results = resolve(v.results);
  mkdirSync(results, { recursive: true });
  await reachRedis(v.redis!);
  const worker = startWorker({
    redis: v.redis!, results, concurrency: positiveInteger('--concurrency', v.concurrency!), lockSeconds: positiveInteger('--lock-seconds', v['lock-seconds']!),
  });
  worker.on('active', (job) => console.log(`${new Date().toISOString()} start  ${job.id}`));
  worker.on('completed', (job) => console.log(`${new Date().toISOString()} done   ${job.id}`));
  worker.on('failed', (job, err) => console.log(`${new Date().toISOString()} failed ${job?.id}: ${err.message.split('\n')[0]}`));
  worker.on('error', (err) => console.error(`worker: ${err.message}`));
  console.log(`comeba worker on ${v.redis}, results in ${results}`);
  await new Promise<void>((done) => {
    const stop = () => void worker.close().then(done);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}
