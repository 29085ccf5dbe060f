// `comeba stats`: E[kkᵀ] of a checkpoint over a corpus, whole or one shard of it, and `comeba stats merge`,
// which adds the shards (collected on any machines) into the statistics file the editor reads.

import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InvalidArgumentError } from '../errors.js';
import { HookedModel } from '../model/HookedModel.js';
import { defaultLayers } from '../edit/options.js';
import { Statistics } from '../statistics/Statistics.js';
import { checkpointLayerCount, device, dtypes, existingFile, oneOf, parseLayers, positiveInteger } from '../args.js';

export const summary = 'collect E[kkᵀ] over a corpus, or one shard of it (--shard i/N); merge shards';

const usage = `usage: comeba stats --model DIR --corpus FILE [options]     collect (resumable; cached)
       comeba stats merge --out FILE SHARD...                  add shards 0…N−1 into one statistics file

  --model DIR        Hugging Face checkpoint folder
  --corpus FILE      text (documents separated by blank lines, or one per line) or JSONL with a "text" field
  --layers L         e.g. 3,4,5 or 3-5                      (default: the editor's preset layers)
  --shard i/N        collect shard i of N (0-based): contiguous ranges of whole batches of documents
  --out FILE         also copy the result here               (default: print the cache file's path)
  --cache-dir DIR    where collections are kept and resumed  (default ~/.cache/comeba/stats)
  --dtype D          sums across batches: float64 | float32  (default float64)
  --products P       each batch's x xᵀ: float32 | float64    (default float32 on a GPU, float64 (exact) on the CPU)
  --max-length N     tokens kept per document                (default: the model's context)
  --batch-size N     documents per forward pass              (default 16; shards of one collection share it)
  --device D, --model-dtype T
                     where and in which dtype the model runs (default cpu, float32)

Shards of one collection (same model, weights' dtype, corpus, layers, dtype, products, --max-length, --batch-size and N)
merge into exactly the sums of one collection over the whole corpus, up to summation order.`;

export async function run(argv: string[]): Promise<number> {
  if (argv[0] === 'merge') return merge(argv.slice(1));
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, corpus: { type: 'string' }, layers: { type: 'string' }, shard: { type: 'string' },
      out: { type: 'string' }, 'cache-dir': { type: 'string' }, dtype: { type: 'string', default: 'float64' },
      products: { type: 'string' }, 'max-length': { type: 'string' }, 'batch-size': { type: 'string' }, device: { type: 'string', default: 'cpu' },
      'model-dtype': { type: 'string', default: 'float32' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    console.log(usage);
    return 0;
  }
  if (v.model === undefined || v.corpus === undefined) throw new InvalidArgumentError('--model and --corpus are required');
  const nLayer = checkpointLayerCount(v.model);
  const corpus = existingFile('--corpus', v.corpus);
  const shard = v.shard === undefined ? undefined : parseShard(v.shard);
  const common = {
    corpus, cacheDir: v['cache-dir'], dtype: oneOf('--dtype', v.dtype!, ['float32', 'float64'] as const),
    products: v.products === undefined ? undefined : oneOf('--products', v.products, ['float32', 'float64'] as const),
    maxLength: v['max-length'] === undefined ? undefined : positiveInteger('--max-length', v['max-length']),
    batchSize: v['batch-size'] === undefined ? undefined : positiveInteger('--batch-size', v['batch-size']),
  };
  await using model = await HookedModel.load(v.model, { device: device(v.device!), dtype: oneOf('--model-dtype', v['model-dtype']!, dtypes) });
  const layers = v.layers === undefined ? defaultLayers(model.info) : parseLayers(v.layers, nLayer);
  let file: string;
  if (shard) {
    file = await Statistics.collectShard(model, { ...common, layers, ...shard });
  } else {
    const stats = await Statistics.collect(model, { ...common, layers });
    file = stats.file;
    await stats.dispose();
  }
  if (v.out !== undefined) {
    mkdirSync(dirname(resolve(v.out)), { recursive: true });
    copyFileSync(file, v.out);
    file = v.out;
  }
  console.log(file);
  return 0;
}

function merge(argv: string[]): number {
  const { values, positionals } = parseArgs({ args: argv, options: { out: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (values.out === undefined) throw new InvalidArgumentError('merge needs --out FILE');
  const provenance = Statistics.mergeShards(positionals, values.out);
  console.log(`${values.out}: ${provenance.shards} shards, ${provenance.tokens} tokens, layers ${provenance.layers.join(',')}`);
  return 0;
}

/** "i/N" with 0 ≤ i < N. */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1 && index < count)) throw new InvalidArgumentError(`--shard must be i/N with 0 ≤ i < N, not '${text}'`);
  return { index, count };
}
