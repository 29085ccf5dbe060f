// The sandboxed BullMQ processor (lib/queue/queue.ts): runs one comeba job in a child process of the worker, writing
// under $COMEBA_RESULTS. Every kind resumes from what an earlier attempt left on disk.
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { SandboxedJob } from 'bullmq';
import { parseLayers } from '../args.js';
import { parseSweepArgs } from '../sweep/args.js';
import { HookedModel } from '../model/HookedModel.js';
import { defaultLayers } from '../edit/options.js';
import { checkJobData, jobFolder, sweepArgv, type JobData } from './queue.js';
import { Statistics } from '../statistics/Statistics.js';
import { runSweep } from '../sweep/sweep.js';

// A worker killed outright (SIGKILL, a lost machine) cannot stop this child: end with it, so that the retry
// elsewhere is the only process writing the job's folder (which its last checkpoint left consistent).
process.on('disconnect', () => process.exit(1));

const shardFile = (folder: string, index: number, count: number) => join(folder, `shard-${index}-of-${count}.safetensors`);

export default async function run(job: SandboxedJob<JobData>, _token?: string, signal?: AbortSignal): Promise<unknown> {
  // The worker lost this job's lock (lib/queue/queue.ts): another worker may run it now, so stop at once, as a
  // kill would (every file operation of a save and a sweep is safe against that; the folder lock left behind
  // names a dead process and is taken over).
  signal?.addEventListener('abort', () => process.kill(process.pid, 'SIGKILL'), { once: true });
  const results = process.env.COMEBA_RESULTS;
  if (!results) throw new Error('COMEBA_RESULTS is not set: start jobs with comeba worker --results DIR');
  const data = checkJobData(job.data); // Redis is not trusted: the data may not come from `queue submit`
  const folder = jobFolder(results, data);
  mkdirSync(folder, { recursive: true });

  if (data.kind === 'sweep') {
    const options = parseSweepArgs(sweepArgv(data.spec, folder));
    if (!options) throw new Error('a grid sweep cannot ask for --help');
    let reported = 0;
    const summaries = await runSweep({
      ...options,
      onEvent: (e) => {
        // At most one progress message a second (each is a Redis write), and every checkpoint.
        if ((e.type === 'progress' && Date.now() - reported > 1000) || e.type === 'checkpoint') {
          reported = Date.now();
          const edits = e.type === 'progress' ? e.edits : e.metrics.edits;
          void job.updateProgress({ mode: e.mode, edits, n: options.n });
        }
      },
    });
    return { out: folder, modes: summaries.map((s) => ({ mode: s.mode, reliability: s.reliability, generality: s.generality, locality: s.locality, average: s.average })) };
  }

  const spec = data.spec;
  if (data.kind === 'stats-shard') {
    const target = shardFile(folder, data.index, spec.shards);
    // No early return when the shard file exists: it may be of another corpus or settings (a grid resubmitted
    // with a corrected corpus). collectShard's cache (keyed by the model's fingerprint, the corpus' hash and every
    // setting) makes an unchanged shard a cache hit, and a changed one is collected anew.
    await using model = await HookedModel.load(spec.model);
    const layers = spec.layers === undefined ? defaultLayers(model.info) : parseLayers(spec.layers, model.info.nLayer);
    const file = await Statistics.collectShard(model, {
      corpus: spec.corpus, layers, index: data.index, count: spec.shards, cacheDir: join(folder, 'cache'), dtype: spec.dtype,
      maxLength: spec['max-length'], batchSize: spec['batch-size'],
      onProgress: (p) => void job.updateProgress({ documents: p.documents, totalDocuments: p.totalDocuments }),
    });
    copyFileSync(file, `${target}.tmp`);
    renameSync(`${target}.tmp`, target);
    return { file: target };
  }

  const out = join(folder, '..', `${spec.name}.safetensors`);
  const provenance = Statistics.mergeShards(Array.from({ length: spec.shards }, (_, i) => shardFile(folder, i, spec.shards)), out);
  return { file: out, tokens: provenance.tokens, layers: provenance.layers };
}
