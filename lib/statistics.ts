// E[kkᵀ] of the edited modules' inputs over a text corpus (METHOD.md §3), computed natively batch by batch.
// Results are cached on disk as safetensors with their provenance and reused when it matches; a long
// collection reports progress, honours an AbortSignal and resumes from its last checkpoint.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { AbortError, callNative, DisposedError, InvalidArgumentError, ModelMismatchError } from './errors.js';
import { comebaCacheDir, removeOrphanedTemporaries } from './files.js';
import type { HookedModel } from './HookedModel.js';
import { loadNative } from './native.js';
import type { NativeSecondMoments } from './nativeTypes.js';
import { readNpz } from './npz.js';

export interface StatisticsProvenance {
  model: string;        // checkpoint fingerprint
  layers: number[];
  corpus: string;       // path as given
  corpusHash: string;   // sha256 of the corpus file
  tokens: number;       // tokens accumulated
  dtype: 'float32' | 'float64';
  maxLength: number;    // tokens per document kept (the rest is truncated)
  /** The weights' dtype the keys were computed in (absent in files from before it was recorded). */
  modelDtype?: string;
}

export interface StatisticsProgress {
  documents: number;
  totalDocuments: number;
  tokens: number;
}

export interface CollectOptions {
  /** Plain text (documents separated by blank lines, or one per line) or JSONL with a `text` field. */
  corpus: string;
  layers: number[];
  /** Accumulation precision. Default 'float64'. */
  dtype?: 'float32' | 'float64';
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

export class Statistics {
  readonly provenance: StatisticsProvenance;
  /** The safetensors file holding them. */
  readonly file: string;

  readonly model: HookedModel;
  #native: NativeSecondMoments | null;

  /** @internal Disposed with `model`. */
  constructor(model: HookedModel, native: NativeSecondMoments, provenance: StatisticsProvenance, file: string) {
    this.model = model;
    this.#native = native;
    this.provenance = provenance;
    this.file = file;
    model.adopt(this);
  }

  /** @internal */
  get native(): NativeSecondMoments {
    if (!this.#native) throw new DisposedError('Statistics');
    return this.#native;
  }

  /** E[kkᵀ] of one layer, (d_ff, d_ff) in float64. */
  async secondMoment(layer: number): Promise<{ data: Float64Array; shape: number[] }> {
    return callNative(() => this.native.mean(layer));
  }

  get disposed(): boolean {
    return this.#native === null;
  }

  /** Frees the sums. Editors created from these statistics keep their own copy and go on working. */
  async dispose(): Promise<void> {
    this.#native?.dispose();
    this.#native = null;
    this.model.release(this);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
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
}

const inFlight = new Map<string, Promise<string>>();

/** The cache file of the statistics `options` ask for, collected now unless it exists. */
async function collectOnce(model: HookedModel, options: CollectOptions): Promise<string> {
  const corpusBytes = readFileSync(options.corpus);
  const corpusHash = createHash('sha256').update(corpusBytes).digest('hex');
  const dtype = options.dtype ?? 'float64';
  const maxLength = Math.min(options.maxLength ?? model.info.contextLength, model.info.contextLength);
  const layers = [...options.layers].sort((x, y) => x - y); // as the native accumulator keeps them
  // The weights' dtype is part of the key: keys computed in bfloat16 are not float32's.
  const key = createHash('sha256')
    .update(JSON.stringify([model.fingerprint, model.info.dtype, layers, corpusHash, dtype, maxLength, options.maxTokens ?? null]))
    .digest('hex')
    .slice(0, 24);
  const dir = cacheDirOf(options.cacheDir);
  const file = join(dir, `${key}.safetensors`);
  // Callers asking for the same cache file at once (the same text under two paths, too) share one collection.
  let pending = inFlight.get(file);
  if (!pending) {
    pending = collectInto(model, options, { file, partial: join(dir, `${key}.partial.safetensors`), dir, corpusBytes, corpusHash, dtype, maxLength, layers })
      .finally(() => inFlight.delete(file));
    inFlight.set(file, pending);
  }
  return pending;
}

async function collectInto(
  model: HookedModel, options: CollectOptions,
  { file, partial, dir, corpusBytes, corpusHash, dtype, maxLength, layers }:
    { file: string; partial: string; dir: string; corpusBytes: Buffer; corpusHash: string; dtype: 'float32' | 'float64'; maxLength: number; layers: number[] },
): Promise<string> {
  removeOrphanedTemporaries(dir);
  if (existsSync(file)) return file;

  const documents = readDocuments(corpusBytes.toString('utf8'), options.corpus);
  let native: NativeSecondMoments;
  let done = 0;
  if (existsSync(partial)) {
    native = await callNative(() => loadNative().NativeSecondMoments.load(partial, model.native));
    done = Number(readMetadata(partial).documentsDone ?? 0);
  } else {
    native = await callNative(async () => new (loadNative().NativeSecondMoments)(model.native, { layers, dtype }));
  }
  const provenance = (): StatisticsProvenance => ({ model: model.fingerprint, layers, corpus: options.corpus, corpusHash, tokens: native.count(), dtype, maxLength, modelDtype: model.info.dtype });
  const batchSize = options.batchSize ?? 16;
  let lastCheckpoint = performance.now();
  while (done < documents.length && (options.maxTokens === undefined || native.count() < options.maxTokens)) {
    if (options.signal?.aborted) {
      await callNative(() => native.save(partial, { ...metadataOf(provenance()), documentsDone: String(done) }));
      throw new AbortError(`statistics collection aborted after ${done} of ${documents.length} documents; rerun to resume`);
    }
    const batch = documents.slice(done, done + batchSize).map((d) => model.tokenizer.encodePrompt(d).slice(0, maxLength)).filter((r) => r.length > 0);
    if (batch.length > 0) await callNative(() => native.add(batch));
    done = Math.min(done + batchSize, documents.length);
    options.onProgress?.({ documents: done, totalDocuments: documents.length, tokens: native.count() });
    if (performance.now() - lastCheckpoint > checkpointEverySeconds * 1000) {
      await callNative(() => native.save(partial, { ...metadataOf(provenance()), documentsDone: String(done) }));
      lastCheckpoint = performance.now();
    }
  }
  if (native.count() === 0) throw new InvalidArgumentError(`the corpus ${options.corpus} has no tokens`);
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
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
    writeSync(fd, len);
    writeSync(fd, json);
    for (const s of sums) writeSync(fd, new Uint8Array(s.buffer, s.byteOffset, s.byteLength));
    writeSync(fd, new Uint8Array(new BigInt64Array([BigInt(count)]).buffer));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function metadataOf(p: StatisticsProvenance): Record<string, string> {
  return { format: 'comeba-second-moments/1', provenance: JSON.stringify(p) };
}

/** The __metadata__ of a safetensors file, read from its header only (the file may be gigabytes). */
function readMetadata(file: string): Record<string, string> {
  const fd = openSync(file, 'r');
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const header = Buffer.alloc(Number(len.readBigUInt64LE(0)));
    readSync(fd, header, 0, header.length, 8);
    return (JSON.parse(header.toString('utf8')) as { __metadata__?: Record<string, string> }).__metadata__ ?? {};
  } finally {
    closeSync(fd);
  }
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
