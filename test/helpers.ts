// Shared test utilities: fixture paths and references, tolerant comparison that reports where it failed,
// and generators for checkpoints the tests need but do not ship (random models, corrupted files).
import type { Implementation, TestFn } from 'ava';  // types only: scripts import this file outside ava
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HookedModel } from '../lib/model/HookedModel.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
export const fixtures = join(repoRoot, 'test', 'fixtures');
export const tinyGpt2 = join(fixtures, 'tiny-gpt2');
export const tinyGptj = join(fixtures, 'tiny-gptj');
export const tinyLlama = join(fixtures, 'tiny-llama');
/** Every tiny fixture with transformers' reference outputs, by architecture. */
export const fixtureModels = [
  ['gpt2', tinyGpt2], ['gptj', tinyGptj], ['llama', tinyLlama], ['mistral', join(fixtures, 'tiny-mistral')],
  ['qwen2', join(fixtures, 'tiny-qwen2')], ['qwen3', join(fixtures, 'tiny-qwen3')],
] as const;

/** The development data beside the checkout (../shared/data), or where COMEBA_SHARED_DATA points. */
export const sharedData = process.env.COMEBA_SHARED_DATA || join(repoRoot, '..', 'shared', 'data');

/**
 * `test` for tests that need something a plain clone may lack. Where it is missing they are skipped with the
 * reason in their title; with `<requireVar>=1` (CI) they fail instead, so a missing need cannot pass unnoticed.
 */
export function needing(test: TestFn, present: boolean, missing: string, requireVar: string, hint: string): (title: string, implementation: Implementation<[]>) => void {
  if (present) return test;
  if (process.env[requireVar] === '1') return (title) => test(title, (t) => t.fail(`${missing}, and ${requireVar}=1 requires it`));
  return (title, implementation) => test.skip(`${title} (skipped: ${missing}; ${hint})`, implementation);
}

/** `test` for tests that read sharedData (CI sets COMEBA_REQUIRE_SHARED_DATA=1). */
export const needingSharedData = (test: TestFn) =>
  needing(test, existsSync(sharedData), `no ${sharedData}`, 'COMEBA_REQUIRE_SHARED_DATA', 'set COMEBA_SHARED_DATA to where it is');

export interface Span { offset: number; length: number }
export interface Reference {
  prompts: string[];
  inputIds: number[][];
  vocabSize: number;
  logits: Span[];
  generation: { maxNewTokens: number; items: { prompt: number; newTokens: number[] }[] };
  hookModule: string;
  hookWeightShape: [number, number];
  hookLogits: Span[];
  /** Per prompt, transformers' logits [seq, vocab] unpadded. */
  logitsOf(i: number): Float32Array;
  hookLogitsOf(i: number): Float32Array;
  hookWeight: Float32Array;
}

function readFloats(path: string): Float32Array {
  const buf = readFileSync(path);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function loadReference(modelDir: string): Reference {
  const dir = join(modelDir, 'reference');
  const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8'));
  const logits = readFloats(join(dir, ref.logitsFile));
  const hookLogits = readFloats(join(dir, ref.hookLogitsFile));
  return {
    ...ref,
    logitsOf: (i: number) => logits.subarray(ref.logits[i].offset, ref.logits[i].offset + ref.logits[i].length),
    hookLogitsOf: (i: number) => hookLogits.subarray(ref.hookLogits[i].offset, ref.hookLogits[i].offset + ref.hookLogits[i].length),
    hookWeight: readFloats(join(dir, ref.hookWeightFile)),
  };
}

/** Max |a − b| over the real tokens of batch row `row` (its first real token at `offset`), against `expected` [len, vocab]. */
export function maxDiffAtRow(
  logits: { data: Float32Array; shape: number[] }, row: number, offset: number, expected: Float32Array,
): number {
  const [, seq, vocab] = logits.shape;
  const len = expected.length / vocab;
  let max = 0;
  for (let t = 0; t < len; t++) {
    const base = (row * seq + offset + t) * vocab;
    for (let v = 0; v < vocab; v++) max = Math.max(max, Math.abs(logits.data[base + v] - expected[t * vocab + v]));
  }
  return max;
}

// ---- safetensors, written and read from TS so tests can build and corrupt checkpoints ----

export interface StTensor { dtype: string; shape: number[]; bytes: Uint8Array }

export function readSafetensors(path: string): { header: Record<string, any>; tensors: Map<string, StTensor> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const tensors = new Map<string, StTensor>();
  for (const [name, e] of Object.entries<any>(header)) {
    if (name === '__metadata__') continue;
    tensors.set(name, { dtype: e.dtype, shape: e.shape, bytes: buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]) });
  }
  return { header, tensors };
}

export function float32Of(t: StTensor): Float32Array {
  return new Float32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength));
}

/** A float32 tensor of a checkpoint folder, from whichever of its safetensors files holds it (undefined if `optional` and none does). */
export function checkpointTensor(dir: string, name: string): { data: Float32Array; shape: number[] };
export function checkpointTensor(dir: string, name: string, optional: true): { data: Float32Array; shape: number[] } | undefined;
export function checkpointTensor(dir: string, name: string, optional = false): { data: Float32Array; shape: number[] } | undefined {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.safetensors'))) {
    const t = readSafetensors(join(dir, file)).tensors.get(name);
    if (t) return { data: float32Of(t), shape: t.shape };
  }
  if (optional) return undefined;
  throw new Error(`${dir} holds no tensor ${name}`);
}

/** Serialises a header object and a data section exactly as given (so tests can write broken headers). */
export function rawSafetensors(header: object, data: Uint8Array, headerLength?: number): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLength ?? json.length));
  return Buffer.concat([len, json, data]);
}

export function writeSafetensors(path: string, tensors: Map<string, { shape: number[]; data: Float32Array }>): void {
  const header: Record<string, object> = {};
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  writeFileSync(path, rawSafetensors(header, Buffer.concat(parts)));
}

export function tempDir(prefix = 'comeba-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A copy of a fixture folder's files (not its reference/) in a fresh temporary folder. */
export function copyFixture(src: string, files: string[]): string {
  const dir = tempDir();
  for (const f of files) copyFileSync(join(src, f), join(dir, f));
  return dir;
}

/** Seeded uniform values in [−scale, scale). */
export function randomFloats(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** A GPT-2 checkpoint with random weights and the fixture tokenizer: sized for load and timing tests. */
export function makeRandomGpt2(opts: { nLayer: number; nEmbd: number; nHead: number; nCtx: number; vocab: number }): string {
  const dir = tempDir('comeba-gpt2-');
  const { nLayer, nEmbd: C, nHead, nCtx, vocab } = opts;
  const F = 4 * C;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  let seed = 1;
  const add = (name: string, shape: number[], scale: number, fill?: number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { shape, data: fill === undefined ? randomFloats(n, seed++, scale) : new Float32Array(n).fill(fill) });
  };
  add('transformer.wte.weight', [vocab, C], 0.02);
  add('transformer.wpe.weight', [nCtx, C], 0.01);
  for (let l = 0; l < nLayer; l++) {
    const p = `transformer.h.${l}`;
    add(`${p}.ln_1.weight`, [C], 0, 1); add(`${p}.ln_1.bias`, [C], 0, 0);
    add(`${p}.attn.c_attn.weight`, [C, 3 * C], 0.02); add(`${p}.attn.c_attn.bias`, [3 * C], 0, 0);
    add(`${p}.attn.c_proj.weight`, [C, C], 0.02); add(`${p}.attn.c_proj.bias`, [C], 0, 0);
    add(`${p}.ln_2.weight`, [C], 0, 1); add(`${p}.ln_2.bias`, [C], 0, 0);
    add(`${p}.mlp.c_fc.weight`, [C, F], 0.02); add(`${p}.mlp.c_fc.bias`, [F], 0, 0);
    add(`${p}.mlp.c_proj.weight`, [F, C], 0.02); add(`${p}.mlp.c_proj.bias`, [C], 0, 0);
  }
  add('transformer.ln_f.weight', [C], 0, 1); add('transformer.ln_f.bias', [C], 0, 0);
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'gpt2', n_layer: nLayer, n_embd: C, n_head: nHead, n_positions: nCtx, vocab_size: vocab,
    eos_token_id: 0, bos_token_id: 0, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5,
  }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tinyGpt2, f), join(dir, f));
  return dir;
}

// ---- editor tests: a corpus, and plain dense linear algebra in float64 to check the native solver ----

/**
 * A corpus of seeded random token sequences decoded to text: every token appears, so E[kkᵀ] is well conditioned.
 * The text gets the clean-up that decode applied before it followed transformers (no space before punctuation and
 * contractions): the tests' statistics, and the tolerances measured on them, stay those of the same corpora.
 */
export function makeRandomCorpus(decode: (ids: number[]) => string, vocab: number, lines: number, length: number, seed = 3): string {
  const dir = tempDir('comeba-corpus-');
  const r = randomFloats(lines * length, seed, 1);
  const cleanUp = (text: string) => text.replace(/ \./g, '.').replace(/ \?/g, '?').replace(/ !/g, '!').replace(/ ,/g, ',').replace(/ ' /g, "'")
    .replace(/ n't/g, "n't").replace(/ 'm/g, "'m").replace(/ 's/g, "'s").replace(/ 've/g, "'ve").replace(/ 're/g, "'re");
  const text = Array.from({ length: lines }, (_, i) =>
    cleanUp(decode(Array.from({ length }, (_, j) => 1 + Math.floor(((r[i * length + j] + 1) / 2) * (vocab - 1))))).replaceAll('\n', ' '),
  ).join('\n');
  const path = join(dir, 'corpus.txt');
  writeFileSync(path, text);
  return path;
}

/** Row-major dense matrix. */
export interface Mat { rows: number; cols: number; data: Float64Array }

export const mat = (rows: number, cols: number, data?: ArrayLike<number>): Mat => ({ rows, cols, data: data ? Float64Array.from(data) : new Float64Array(rows * cols) });

export function matmul(a: Mat, b: Mat): Mat {
  const out = mat(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const v = a.data[i * a.cols + k];
      if (v === 0) continue;
      for (let j = 0; j < b.cols; j++) out.data[i * b.cols + j] += v * b.data[k * b.cols + j];
    }
  }
  return out;
}

export function transpose(a: Mat): Mat {
  const out = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out.data[j * a.rows + i] = a.data[i * a.cols + j];
  return out;
}

export function add(a: Mat, b: Mat, scaleB = 1): Mat {
  return mat(a.rows, a.cols, a.data.map((v, i) => v + scaleB * b.data[i]));
}

export function frobenius(a: Mat): number {
  return Math.sqrt(a.data.reduce((s, v) => s + v * v, 0));
}

/** X with A X = B, by Gaussian elimination with partial pivoting. */
export function solve(a: Mat, b: Mat): Mat {
  const n = a.rows;
  const A = Float64Array.from(a.data);
  const X = Float64Array.from(b.data);
  const m = b.cols;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(A[r * n + c]) > Math.abs(A[p * n + c])) p = r;
    if (p !== c) {
      for (let j = 0; j < n; j++) [A[c * n + j], A[p * n + j]] = [A[p * n + j], A[c * n + j]];
      for (let j = 0; j < m; j++) [X[c * m + j], X[p * m + j]] = [X[p * m + j], X[c * m + j]];
    }
    for (let r = c + 1; r < n; r++) {
      const f = A[r * n + c] / A[c * n + c];
      if (f === 0) continue;
      for (let j = c; j < n; j++) A[r * n + j] -= f * A[c * n + j];
      for (let j = 0; j < m; j++) X[r * m + j] -= f * X[c * m + j];
    }
  }
  for (let c = n - 1; c >= 0; c--) {
    for (let j = 0; j < m; j++) {
      let s = X[c * m + j];
      for (let k = c + 1; k < n; k++) s -= A[c * n + k] * X[k * m + j];
      X[c * m + j] = s / A[c * n + c];
    }
  }
  return mat(n, m, X);
}

/** Greedy continuation by full recomputation, one unpadded forward per new token (no KV cache). */
export async function referenceGeneration(model: HookedModel, prompt: string, length: number): Promise<number[]> {
  const sequence = model.tokenizer.encodePrompt(prompt);
  const start = sequence.length;
  for (let i = 0; i < length; i++) {
    const logits = await model.logits([sequence]);
    const V = logits.shape[2];
    const last = Array.from(logits.data.subarray((sequence.length - 1) * V, sequence.length * V));
    sequence.push(last.indexOf(Math.max(...last)));
  }
  return sequence.slice(start);
}
