// Statistics files carry a digest of every tensor, as editor states do: written by the addon (collection) and by
// lib/ (merge, .npz conversion) with one algorithm, verified by both at load. One flipped exponent bit is refused.
import test from 'ava';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HookedModel, Statistics } from '../lib/index.js';
import { tensorDigest } from '../lib/statistics/Statistics.js';
import { tempDir, tinyGpt2 } from './helpers.js';

const corpus = join(tinyGpt2, 'stats-corpus.txt');

/** The header, and each tensor's bytes, of a safetensors file. */
function tensorsOf(file: string): { metadata: Record<string, string>; bytes: Record<string, Buffer>; dataStart: number; offsets: Record<string, [number, number]> } {
  const raw = readFileSync(file);
  const n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const bytes: Record<string, Buffer> = {};
  const offsets: Record<string, [number, number]> = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    offsets[name] = t.data_offsets;
    bytes[name] = raw.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
  }
  return { metadata: header.__metadata__ as unknown as Record<string, string>, bytes, dataStart: 8 + n, offsets };
}

/** A copy of `file` with the top exponent bit of one float64 (or float32) element of `tensor` flipped. */
function flipped(file: string, tensor: string): string {
  const copy = join(tempDir('comeba-flipped-'), 'flipped.safetensors');
  copyFileSync(file, copy);
  const { dataStart, offsets } = tensorsOf(copy);
  const raw = readFileSync(copy);
  raw[dataStart + offsets[tensor][0] + 6] ^= 0x40; // inside the exponent of the first element: 0.89 becomes ~2e4
  writeFileSync(copy, raw);
  return copy;
}

test('the addon\'s and lib/\'s digests agree; a flipped exponent bit in a shard, a collected or a merged file is refused', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const cacheDir = tempDir('comeba-digest-');
  const shards = await Promise.all([0, 1].map((index) => Statistics.collectShard(model, { corpus, layers: [1], cacheDir, index, count: 2 })));
  // Written by the addon: every tensor's digest recorded, equal to lib/'s computation over the same bytes.
  const { metadata, bytes } = tensorsOf(shards[0]);
  const digests = JSON.parse(metadata.digests) as Record<string, string>;
  t.deepEqual(Object.keys(digests).sort(), ['count', 'sum.1']);
  for (const [name, b] of Object.entries(bytes)) t.is(tensorDigest(b), digests[name], name);

  // Merged by lib/: loads through the addon, which verifies lib/'s digests.
  const merged = join(cacheDir, 'merged.safetensors');
  Statistics.mergeShards(shards, merged);
  t.truthy(JSON.parse(tensorsOf(merged).metadata.digests)['sum.1']);
  const loaded = await Statistics.load(model, merged);
  t.is(loaded.provenance.shards, 2);

  const corruptShard = flipped(shards[1], 'sum.1');
  t.throws(() => Statistics.mergeShards([shards[0], corruptShard], join(cacheDir, 'bad.safetensors')), { message: /tensor sum\.1 does not match its digest/ });
  await t.throwsAsync(Statistics.load(model, flipped(merged, 'sum.1')), { message: /tensor 'sum\.1' does not match its digest \(the file is corrupt\)/ });
  await t.throwsAsync(Statistics.load(model, flipped(shards[0], 'count')), { message: /tensor 'count' does not match its digest/ });
});
