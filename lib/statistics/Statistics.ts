// E[kkᵀ] of the edited modules' inputs over a text corpus (METHOD.md §3), computed natively batch by batch.
// Results are cached on disk as safetensors with their provenance and reused when it matches; a long
// collection reports progress, honours an AbortSignal and resumes from its last checkpoint.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, realpathSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { AbortError, callNative, InvalidArgumentError, InvalidCheckpointError, ModelMismatchError } from '../errors.js';
import { comebaCacheDir, isRegularFile, removeOrphanedTemporaries } from '../io/files.js';
import { ModelDependent } from '../model/dependent.js';
import type { HookedModel } from '../model/HookedModel.js';
import { loadNative } from '../addon/native.js';
import type { NativeSecondMoments } from '../addon/types.js';
import { readSafetensorsHeader, safetensorsHeaderBytes } from '../io/checkpoint.js';
import { readNpz } from '../io/npz.js';

export interface StatisticsProvenance {
  model: string;        // checkpoint fingerprint
  layers: number[];
  corpus: string;       // path as given
  corpusHash: string;   // sha256 of the corpus file
  tokens: number;       // tokens accumulated
  dtype: 'float32' | 'float64';
  /** The precision of each batch's products x xᵀ (absent in files from before it was recorded: float64's or `dtype`'s). */
  products?: 'float32' | 'float64';
  maxLength: number;    // tokens per document kept (the rest is truncated)
  /** The weights' dtype the keys were computed in (absent in files from before it was recorded). */
  modelDtype?: string;
  /** A shard's sums (`comeba stats --shard`): which one of how many, its documents [from, to), their batch size. */
  shard?: ShardInfo;
  /** Statistics merged from this many shards. */
  shards?: number;
}

export interface ShardInfo { index: number; count: number; documents: [number, number]; batchSize: number }

export interface StatisticsProgress {
  documents: number;
  totalDocuments: number;
  tokens: number;
}

export interface CollectOptions {
  /** Path of the corpus file: plain text (documents separated by blank lines, or one per line) or JSONL with a `text` field. */
  corpus: string;
  layers: number[];
  /** Precision of the sums across batches. Default 'float64'. */
  dtype?: 'float32' | 'float64';
  /**
   * Precision of each batch's products x xᵀ (the costly part: d_ff² per token and layer), summed into `dtype`.
   * Default: 'float32' on a GPU, where float64 runs at a small fraction of float32's rate; 'float64' (exact) on the
   * CPU, where float32 gains 1–5 % (docs/benchmarks.md).
   */
  products?: 'float32' | 'float64';
  /** Stop after this many tokens. Default: the whole corpus. */
  maxTokens?: number;
  /** Tokens kept per document. Default: the model's context length. */
  maxLength?: number;
  /** Documents per forward pass. Default 16. */
  batchSize?: number;
  /** Where finished and partial statistics are kept. Default ~/.cache/comeba/stats. */
  cacheDir?: string;
  signal?: AbortSignal;
  onProgress?: (progress: StatisticsProgress) => void;
}

const checkpointEverySeconds = 30;

export class Statistics extends ModelDependent<NativeSecondMoments> {
  readonly provenance: StatisticsProvenance;
  /** The safetensors file holding them. */
  readonly file: string;

  /** @internal Disposed with `model`. */
  constructor(model: HookedModel, native: NativeSecondMoments, provenance: StatisticsProvenance, file: string) {
    super(model, native, 'Statistics');
    this.provenance = provenance;
    this.file = file;
  }

  /** @internal */
  get native(): NativeSecondMoments {
    return this.requireNative();
  }

  /** E[kkᵀ] of one layer, (d_ff, d_ff) in float64. */
  async secondMoment(layer: number): Promise<{ data: Float64Array; shape: number[] }> {
    return callNative(() => this.native.mean(layer));
  }

  /** Frees the sums. Editors created from these statistics keep their own copy and go on working. */
  override async dispose(): Promise<void> {
    await super.dispose();
  }

  /** Statistics saved by `collect` (or converted by the CLI), checked against the model. */
  static async load(model: HookedModel, file: string): Promise<Statistics> {
    if (!existsSync(file)) throw new InvalidArgumentError(`statistics file ${file} does not exist`);
    const native = await callNative(() => loadNative().NativeSecondMoments.load(file, model.native));
    let provenance: StatisticsProvenance | undefined;
    try {
      provenance = readProvenance(file);
    } catch (err) {
      native.dispose();
      throw err;
    }
    if (provenance && provenance.model !== model.fingerprint) {
      native.dispose();
      throw new ModelMismatchError(`statistics ${file} were collected on another model (fingerprint ${provenance.model}, this model ${model.fingerprint})`);
    }
    return new Statistics(model, native, provenance ?? { model: model.fingerprint, layers: native.layers(), corpus: file, corpusHash: '', tokens: native.count(), dtype: 'float64', maxLength: 0 }, file);
  }

  /**
   * MEMIT-format statistics (`np.savez` of its runningstats: `mom2.mom2` = Σ k kᵀ, `mom2.count`), one .npz
   * per layer, converted once into a comeba statistics file in `cacheDir`.
   */
  static async fromMemitNpz(model: HookedModel, files: Record<number, string>, options: { cacheDir?: string } = {}): Promise<Statistics> {
    const layers = Object.keys(files).map(Number).sort((a, b) => a - b);
    if (layers.length === 0) throw new InvalidArgumentError('fromMemitNpz needs one .npz file per layer');
    const key = createHash('sha256').update(JSON.stringify([model.fingerprint, layers.map((l) => [l, files[l], statSync(files[l]).size])])).digest('hex').slice(0, 24);
    const dir = cacheDirOf(options.cacheDir);
    const file = join(dir, `${key}.safetensors`);
    if (existsSync(file)) return Statistics.load(model, file);
    const F = model.info.dFf;
    const sums: (Float32Array | Float64Array)[] = [];
    let count = 0;
    for (const layer of layers) {
      const arrays = readNpz(files[layer], ['mom2.mom2', 'mom2.count']);
      const mom2 = arrays.get('mom2.mom2');
      const n = arrays.get('mom2.count');
      if (!mom2 || !n) throw new InvalidArgumentError(`${files[layer]} has no mom2.mom2 and mom2.count (MEMIT's layer_stats format)`);
      if (mom2.shape.join() !== `${F},${F}`) throw new InvalidArgumentError(`${files[layer]}: mom2 is ${mom2.shape.join('×')}, the model's d_ff is ${F}`);
      const layerCount = Number(n.data[0]);
      count ||= layerCount;
      // One count for all layers: rescale sums so each layer keeps its own mean.
      const scale = count / layerCount;
      sums.push(scale === 1 ? (mom2.data as Float32Array) : (mom2.data as Float32Array).map((v) => v * scale));
    }
    const provenance: StatisticsProvenance = {
      model: model.fingerprint, layers, corpus: layers.map((l) => files[l]).join(','), corpusHash: key, tokens: count, dtype: 'float32', maxLength: 0,
    };
    writeSums(file, layers, sums, count, metadataOf(provenance));
    return Statistics.load(model, file);
  }

  /** Computes the statistics, or reuses a cached result with the same provenance; resumes a partial one. */
  static async collect(model: HookedModel, options: CollectOptions): Promise<Statistics> {
    // Callers asking for the same statistics at once share one collection (into the cache file); each
    // gets its own Statistics, owned by its own model.
    return Statistics.load(model, await collectOnce(model, options));
  }

  /**
   * The sums of shard `index` of `count` (a file in the cache, resumable like a collection): the corpus'
   * documents split into contiguous ranges of whole batches of `batchSize`, so that every forward pass is
   * the one-machine collection's and the merged sums equal its own up to summation order. No maxTokens.
   */
  static async collectShard(model: HookedModel, options: Omit<CollectOptions, 'maxTokens'> & { index: number; count: number }): Promise<string> {
    const { index, count } = options;
    if (!(Number.isInteger(count) && count >= 1 && Number.isInteger(index) && index >= 0 && index < count)) {
      throw new InvalidArgumentError(`a shard is i/N with 0 ≤ i < N, not ${index}/${count}`);
    }
    if ((options as CollectOptions).maxTokens !== undefined) throw new InvalidArgumentError('maxTokens cannot be split into shards: the shards split the documents');
    return collectOnce(model, options, { index, count });
  }

  /**
   * Adds the shard files of one collection (all N of them, each once) into the statistics file `out`, which
   * Statistics.load and the editor read like any other. Refuses shards of another model, corpus, layers,
   * dtype or split, duplicates and missing ones, naming the files.
   */
  static mergeShards(files: string[], out: string): StatisticsProvenance {
    if (files.length === 0) throw new InvalidArgumentError('no shard files to merge');
    const overwritten = files.find((f) => existsSync(f) && existsSync(out) && realpathSync(f) === realpathSync(out));
    if (overwritten !== undefined) throw new InvalidArgumentError(`--out ${out} is one of the shards (${overwritten}): write the merge elsewhere`);
    const shards = files.map((file) => {
      if (!existsSync(file)) throw new InvalidArgumentError(`shard ${file} does not exist`);
      const p = readProvenance(file);
      if (!p?.shard) throw new InvalidArgumentError(`${file} is not a statistics shard (no shard in its provenance): collect it with comeba stats --shard i/N`);
      return { file, p, shard: p.shard };
    });
    const first = shards[0];
    const same = (p: StatisticsProvenance) => JSON.stringify([p.model, p.modelDtype, p.layers, p.corpusHash, p.dtype, p.products, p.maxLength, p.shard!.count, p.shard!.batchSize]);
    for (const s of shards) {
      if (same(s.p) !== same(first.p)) {
        throw new InvalidArgumentError(`${s.file} belongs to another collection than ${first.file} (model, weights' dtype, layers, corpus, dtype, products, maxLength or split differ)`);
      }
    }
    const seen = new Map<number, string>();
    for (const s of shards) {
      const other = seen.get(s.shard.index);
      if (other !== undefined) throw new InvalidArgumentError(`shard ${s.shard.index}/${s.shard.count} is given twice: ${other} and ${s.file}`);
      seen.set(s.shard.index, s.file);
    }
    const missing = Array.from({ length: first.shard.count }, (_, i) => i).filter((i) => !seen.has(i));
    if (missing.length > 0) throw new InvalidArgumentError(`shards ${missing.map((i) => `${i}/${first.shard.count}`).join(', ')} are missing`);
    shards.sort((a, b) => a.shard.index - b.shard.index);

    const layers = first.p.layers;
    let total = 0;
    const sums: Float64Array[] = layers.map(() => new Float64Array(0));
    for (const s of shards) {
      const tensors = readSumTensors(s.file, layers);
      total += tensors.count;
      layers.forEach((_, i) => {
        if (sums[i].length === 0) sums[i] = new Float64Array(tensors.sums[i].length);
        if (sums[i].length !== tensors.sums[i].length) throw new InvalidCheckpointError(`${s.file}: sum.${layers[i]} has another size than in the other shards`);
        const a = sums[i], b = tensors.sums[i];
        for (let k = 0; k < a.length; k++) a[k] += b[k];
      });
      if (tensors.count !== s.p.tokens) throw new InvalidCheckpointError(`${s.file}: its count (${tensors.count}) is not its provenance's token count (${s.p.tokens})`);
    }
    const provenance: StatisticsProvenance = {
      model: first.p.model, layers, corpus: first.p.corpus, corpusHash: first.p.corpusHash, tokens: total, dtype: 'float64',
      ...(first.p.products ? { products: first.p.products } : {}), maxLength: first.p.maxLength, modelDtype: first.p.modelDtype, shards: first.shard.count,
    };
    try {
      mkdirSync(dirname(resolve(out)), { recursive: true });
      writeSums(out, layers, sums, total, metadataOf(provenance));
    } catch (err) {
      throw new InvalidArgumentError(`cannot write the merged statistics to ${out}: ${(err as Error).message}`, { cause: err });
    }
    return provenance;
  }
}

const inFlight = new Map<string, Promise<string>>();

/** CollectOptions.products' default for a model: float32 on a GPU, float64 on the CPU (docs/benchmarks.md). */
export function defaultProducts(model: Pick<HookedModel, 'info'>): 'float32' | 'float64' {
  return String(model.info.device).startsWith('cuda') ? 'float32' : 'float64';
}

/** The cache file of the statistics `options` ask for, collected now unless it exists. */
async function collectOnce(model: HookedModel, options: CollectOptions, shard?: { index: number; count: number }): Promise<string> {
  if (typeof options.corpus !== 'string' || !isRegularFile(options.corpus)) {
    throw new InvalidArgumentError(`corpus ${JSON.stringify(options.corpus)}: no such file (the corpus is the path of a text or JSONL file)`);
  }
  const corpusBytes = readFileSync(options.corpus);
  const corpusHash = createHash('sha256').update(corpusBytes).digest('hex');
  const dtype = options.dtype ?? 'float64';
  const products = dtype === 'float32' ? 'float32' : options.products ?? defaultProducts(model);
  const maxLength = Math.min(options.maxLength ?? model.info.contextLength, model.info.contextLength);
  const layers = [...options.layers].sort((x, y) => x - y); // as the native accumulator keeps them
  // The weights' dtype is part of the key: keys computed in bfloat16 are not float32's.
  const documents = readDocuments(corpusBytes.toString('utf8'), options.corpus);
  const batchSize = options.batchSize ?? 16;
  let range: [number, number] = [0, documents.length];
  let shardInfo: ShardInfo | undefined;
  if (shard) {
    // Contiguous ranges of whole batches: the same forward passes as one collection over the corpus.
    const batches = Math.ceil(documents.length / batchSize);
    const at = (i: number) => Math.min(documents.length, Math.floor((i * batches) / shard.count) * batchSize);
    range = [at(shard.index), at(shard.index + 1)];
    shardInfo = { index: shard.index, count: shard.count, documents: range, batchSize };
  }
  const key = createHash('sha256')
    .update(JSON.stringify([model.fingerprint, model.info.dtype, layers, corpusHash, dtype, products, maxLength, options.maxTokens ?? null, ...(shardInfo ? [shardInfo] : [])]))
    .digest('hex')
    .slice(0, 24);
  const dir = cacheDirOf(options.cacheDir);
  const file = join(dir, `${key}${shardInfo ? `.shard-${shardInfo.index}-of-${shardInfo.count}` : ''}.safetensors`);
  // Callers asking for the same cache file at once (the same text under two paths, too) share one collection.
  let pending = inFlight.get(file);
  if (!pending) {
    const partial = file.replace(/\.safetensors$/, '.partial.safetensors');
    pending = collectInto(model, options, { file, partial, dir, documents, range, batchSize, shard: shardInfo, corpusHash, dtype, products, maxLength, layers })
      .finally(() => inFlight.delete(file));
    inFlight.set(file, pending);
  }
  return pending;
}

interface Collection {
  file: string; partial: string; dir: string; documents: string[]; range: [number, number]; batchSize: number; shard?: ShardInfo;
  corpusHash: string; dtype: 'float32' | 'float64'; products: 'float32' | 'float64'; maxLength: number; layers: number[];
}

async function collectInto(model: HookedModel, options: CollectOptions, c: Collection): Promise<string> {
  const { file, partial, dir, documents, batchSize, corpusHash, dtype, products, maxLength, layers } = c;
  const end = c.range[1];
  removeOrphanedTemporaries(dir);
  if (existsSync(file)) return file;

  let native: NativeSecondMoments;
  let done = c.range[0];
  if (existsSync(partial)) {
    native = await callNative(() => loadNative().NativeSecondMoments.load(partial, model.native, { products }));
    done = Number(readMetadata(partial).documentsDone ?? 0);
  } else {
    native = await callNative(async () => new (loadNative().NativeSecondMoments)(model.native, { layers, dtype, products }));
  }
  const provenance = (): StatisticsProvenance => ({
    model: model.fingerprint, layers, corpus: options.corpus, corpusHash, tokens: native.count(), dtype, products, maxLength, modelDtype: model.info.dtype,
    ...(c.shard ? { shard: c.shard } : {}),
  });
  let lastCheckpoint = performance.now();
  while (done < end && (options.maxTokens === undefined || native.count() < options.maxTokens)) {
    if (options.signal?.aborted) {
      await callNative(() => native.save(partial, { ...metadataOf(provenance()), documentsDone: String(done) }));
      throw new AbortError(`statistics collection aborted after ${done} of ${documents.length} documents; rerun to resume`);
    }
    const batch = documents.slice(done, Math.min(done + batchSize, end)).map((d) => model.tokenizer.encodePrompt(d).slice(0, maxLength)).filter((r) => r.length > 0);
    if (batch.length > 0) await callNative(() => native.add(batch));
    done = Math.min(done + batchSize, end);
    options.onProgress?.({ documents: done - c.range[0], totalDocuments: end - c.range[0], tokens: native.count() });
    if (performance.now() - lastCheckpoint > checkpointEverySeconds * 1000) {
      await callNative(() => native.save(partial, { ...metadataOf(provenance()), documentsDone: String(done) }));
      lastCheckpoint = performance.now();
    }
  }
  if (native.count() === 0 && !c.shard) throw new InvalidArgumentError(`the corpus ${options.corpus} has no tokens`);
  await callNative(() => native.save(file, metadataOf(provenance())));  // written atomically
  native.dispose();
  rmSync(partial, { force: true });
  return file;
}

/** Documents of a corpus file: JSONL `text` fields, else blank-line-separated paragraphs, else lines. */
export function readDocuments(text: string, path: string): string[] {
  if (path.endsWith('.jsonl')) {
    return text.split('\n').filter((l) => l.trim() !== '').map((line, i) => {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw new InvalidArgumentError(`${path}: line ${i + 1} is not valid JSON`);
      }
      const t = (record as { text?: unknown }).text;
      if (typeof t !== 'string') throw new InvalidArgumentError(`${path}: line ${i + 1} has no string field "text"`);
      return t;
    });
  }
  const normalised = text.replace(/\r\n?/g, '\n');
  const parts = /\n\s*\n/.test(normalised) ? normalised.split(/\n\s*\n/) : normalised.split('\n');
  return parts.map((p) => p.trim()).filter((p) => p !== '');
}

function cacheDirOf(given: string | undefined): string {
  const dir = given ?? comebaCacheDir('stats');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A statistics file in the accumulator's own layout ("sum.<layer>", "count"), written through a rename. */
function writeSums(path: string, layers: number[], sums: (Float32Array | Float64Array)[], count: number, metadata: Record<string, string>): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  const n = Math.sqrt(sums[0].length);
  layers.forEach((layer, i) => {
    const bytes = sums[i].byteLength;
    header[`sum.${layer}`] = { dtype: sums[i] instanceof Float64Array ? 'F64' : 'F32', shape: [n, n], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  });
  header.count = { dtype: 'I64', shape: [1], data_offsets: [offset, offset + 8] };
  const countBytes = new Uint8Array(new BigInt64Array([BigInt(count)]).buffer);
  const digests: Record<string, string> = { count: tensorDigest(countBytes) };
  layers.forEach((layer, i) => (digests[`sum.${layer}`] = tensorDigest(new Uint8Array(sums[i].buffer, sums[i].byteOffset, sums[i].byteLength))));
  header.__metadata__ = { ...metadata, digests: JSON.stringify(digests) };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
      writeSync(fd, len);
      writeSync(fd, json);
      for (const s of sums) writeSync(fd, new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
      writeSync(fd, countBytes);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true }); // a full disk or a bad path leaves no temporary behind
    throw err;
  }
}

/** The sums (as float64) and token count of a statistics or shard file, every offset and size checked. */
function readSumTensors(file: string, layers: number[]): { sums: Float64Array[]; count: number } {
  const headerBytes = safetensorsHeaderBytes(file);
  const n = headerBytes.length;
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const header = JSON.parse(headerBytes.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    // Files written since digests were added carry one per tensor (native/io/safetensors.cpp's); older ones none.
    const digestsText = (header.__metadata__ as unknown as Record<string, string> | undefined)?.digests;
    const digests = digestsText === undefined ? undefined : (JSON.parse(digestsText) as Record<string, string>);
    const tensor = (name: string, dtypes: string[]) => {
      const t = header[name];
      if (!t || !dtypes.includes(t.dtype)) throw new InvalidCheckpointError(`${file}: no ${dtypes.join('/')} tensor ${name}`);
      const [from, to] = t.data_offsets;
      const width = t.dtype === 'F32' ? 4 : 8;
      const elements = t.shape.reduce((a, b) => a * b, 1);
      if (!(Number.isSafeInteger(from) && to - from === elements * width && 8 + n + to <= size)) throw new InvalidCheckpointError(`${file}: ${name}'s data does not fit its shape or the file`);
      const bytes = Buffer.alloc(to - from);
      readSync(fd, bytes, 0, bytes.length, 8 + n + from);
      if (digests && digests[name] !== tensorDigest(bytes)) throw new InvalidCheckpointError(`${file}: tensor ${name} does not match its digest (the file is corrupt)`);
      return { dtype: t.dtype, bytes };
    };
    const sums = layers.map((layer) => {
      const { dtype, bytes } = tensor(`sum.${layer}`, ['F64', 'F32']);
      const values = dtype === 'F64' ? new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8) : Float64Array.from(new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4));
      if (!values.every(Number.isFinite)) throw new InvalidCheckpointError(`${file}: sum.${layer} holds NaN or Inf`);
      return values;
    });
    const count = Number(tensor('count', ['I64']).bytes.readBigInt64LE(0));
    return { sums, count };
  } catch (err) {
    if (err instanceof InvalidCheckpointError) throw err;
    throw new InvalidCheckpointError(`${file}: not a readable statistics file (${(err as Error).message})`, { cause: err });
  } finally {
    closeSync(fd);
  }
}

function metadataOf(p: StatisticsProvenance): Record<string, string> {
  return { format: 'comeba-second-moments/1', provenance: JSON.stringify(p) };
}

/** The __metadata__ of a safetensors file, read from its header only (the file may be gigabytes). */
function readMetadata(file: string): Record<string, string> {
  const metadata = readSafetensorsHeader(file).__metadata__;
  return typeof metadata === 'object' && metadata !== null ? (metadata as Record<string, string>) : {};
}

function readProvenance(file: string): StatisticsProvenance | undefined {
  const raw = readMetadata(file).provenance;
  if (raw === undefined) return undefined;
  try {
    const p = JSON.parse(raw) as StatisticsProvenance;
    if (typeof p?.model !== 'string') throw new Error('no model fingerprint');
    return p;
  } catch (err) {
    throw new InvalidArgumentError(`statistics ${file}: the provenance in its header is corrupt (${(err as Error).message})`, { cause: err });
  }
}

/**
 * The digest native/io/safetensors.cpp's tensor_digest writes: 64-bit FNV-1a over the bytes as little-endian
 * 64-bit words, then the tail bytes, as 16 hex digits. 64-bit products in two 32-bit halves (prime 2^40 + 0x1b3).
 */
export function tensorDigest(bytes: Uint8Array): string {
  // native's kFnvOffsetBasis, 1469598103934665603 (not FNV's published basis, one digit shorter; kept, since every
  // editor state written so far carries digests from it).
  let hi = 0x14650fb0;
  let lo = 0x739d0383;
  const step = () => {
    const low = lo * 0x1b3;
    const high = hi * 0x1b3 + Math.floor(low / 0x100000000);
    hi = (high + ((lo << 8) >>> 0)) >>> 0;
    lo = low >>> 0;
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const words = Math.floor(bytes.length / 8);
  for (let w = 0; w < words; w++) {
    lo = (lo ^ view.getUint32(8 * w, true)) >>> 0;
    hi = (hi ^ view.getUint32(8 * w + 4, true)) >>> 0;
    step();
  }
  for (let i = 8 * words; i < bytes.length; i++) {
    lo = (lo ^ bytes[i]) >>> 0;
    step();
  }
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

