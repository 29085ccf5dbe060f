// Seeded corruptions of a checkpoint's safetensors header, of a saved editor state and of a statistics file, and
// folders mixed from two diverged copies of one editor state; the rule each outcome must obey: a load either fails
// with a typed error other than INTERNAL, or gives exactly what the uncorrupted files give (bit-identical logits,
// the same state checksum, bit-identical E[kkᵀ]; a mixed folder, the state its editor.json was saved with). A crash
// or a hang shows as the process dying or timing out. Used by fuzz.test.ts (a few hundred cases in-process) and by
// scripts/fuzz.mjs (thousands, each case in its own child process):
//   node --import tsx test/fuzz-cases.ts <checkpoint|state|statistics|chain> <seed>   prints one outcome line
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ComebaError, ConsecutiveEditor, HookedModel, Statistics } from '../lib/index.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';

export const fuzzKinds = ['checkpoint', 'state', 'statistics', 'chain'] as const;
export type FuzzKind = (typeof fuzzKinds)[number];
export interface FuzzOutcome { kind: FuzzKind; seed: number; mutation: string; result: string }

/** xorshift32: the same seed gives the same corruption on every machine. */
function rng(seed: number): (n: number) => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return (n: number) => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s % n;
  };
}

/** One to three corruptions of a safetensors file's bytes; `dataToo` also hits the data section. */
export function corrupt(bytes: Buffer, seed: number, dataToo: boolean): { bytes: Buffer; mutation: string } {
  const r = rng(seed);
  let out = Buffer.from(bytes);
  const done: string[] = [];
  for (let m = 0, count = 1 + r(3); m < count; m++) {
    const n = Number(out.length >= 8 ? out.readBigUInt64LE(0) : 0n);
    const headerEnd = Math.min(out.length, 8 + n);
    const op = r(dataToo ? 9 : 8);
    if (op <= 2 && headerEnd > 8) {               // a random byte of the header
      const at = 8 + r(headerEnd - 8);
      out[at] = r(256);
      done.push(`header[${at}]=${out[at]}`);
    } else if (op === 3 && headerEnd > 8) {       // a digit of the header moved by ±1
      const text = out.subarray(8, headerEnd).toString('latin1');
      const digits = [...text.matchAll(/\d/g)].map((d) => d.index!);
      if (digits.length === 0) continue;
      const at = 8 + digits[r(digits.length)];
      out[at] = 0x30 + ((out[at] - 0x30 + (r(2) ? 1 : 9)) % 10);
      done.push(`digit[${at}]=${String.fromCharCode(out[at])}`);
    } else if (op === 4) {                        // the header length off by a little
      const delta = r(17) - 8 || 1;
      out.writeBigUInt64LE(BigInt(Math.max(0, n + delta)), 0);
      done.push(`length${delta > 0 ? '+' : ''}${delta}`);
    } else if (op === 5) {                        // a byte of the length prefix
      const at = r(8);
      out[at] = r(256);
      done.push(`prefix[${at}]=${out[at]}`);
    } else if (op === 6) {                        // truncated
      const keep = r(out.length);
      out = out.subarray(0, keep);
      done.push(`truncate ${keep}`);
    } else if (op === 7) {                        // bytes appended
      out = Buffer.concat([out, Buffer.alloc(1 + r(16), r(256))]);
      done.push('append');
    } else if (op === 8 && out.length > headerEnd) { // a bit of the data
      const at = headerEnd + r(out.length - headerEnd);
      out[at] ^= 1 << r(8);
      done.push(`data[${at}]`);
    }
  }
  return { bytes: out, mutation: done.join(' ') || 'none' };
}

const checkpointFiles = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];

/** Loads that must hold no surprise: computed once per process. */
export class Fuzzer {
  #referenceLogits?: Float32Array;
  #state?: { dir: string; checksum: string; files: string[] };
  #statistics?: { file: string; layers: number[]; moments: Float64Array[] };
  #copies?: { dirs: [string, string]; checksums: [string, string]; files: string[] };

  case(kind: FuzzKind, seed: number): Promise<FuzzOutcome> {
    switch (kind) {
      case 'checkpoint': return this.checkpointCase(seed);
      case 'state': return this.stateCase(seed);
      case 'statistics': return this.statisticsCase(seed);
      case 'chain': return this.chainCase(seed);
    }
  }
  readonly #prompt = [[5, 17, 99, 3, 250, 42]];

  async checkpointCase(seed: number): Promise<FuzzOutcome> {
    if (!this.#referenceLogits) {
      await using model = await HookedModel.load(tinyGpt2);
      this.#referenceLogits = (await model.logits(this.#prompt)).data;
    }
    const dir = tempDir('comeba-fuzz-');
    for (const f of checkpointFiles) if (f !== 'model.safetensors') copyFileSync(join(tinyGpt2, f), join(dir, f));
    const { bytes, mutation } = corrupt(readFileSync(join(tinyGpt2, 'model.safetensors')), seed, false);
    writeFileSync(join(dir, 'model.safetensors'), bytes);
    const result = await judged(async () => {
      await using model = await HookedModel.load(dir);
      const logits = (await model.logits(this.#prompt)).data;
      if (!logits.every((v, i) => Object.is(v, this.#referenceLogits![i]))) throw new SilentLoad('loaded, with different logits');
    });
    return { kind: 'checkpoint', seed, mutation, result };
  }

  async stateCase(seed: number): Promise<FuzzOutcome> {
    const state = await this.#savedState();
    const dir = tempDir('comeba-fuzz-state-');
    for (const f of readdirSync(state.dir)) copyFileSync(join(state.dir, f), join(dir, f));
    // One of the chain's files: the base (a full state), the keys of the later batches, or their ΔW.
    const file = state.files[seed % state.files.length];
    const { bytes, mutation } = corrupt(readFileSync(join(state.dir, file)), seed, true);
    writeFileSync(join(dir, file), bytes);
    const result = await judged(async () => {
      await using model = await HookedModel.load(tinyGpt2);
      await using editor = await ConsecutiveEditor.load(model, dir);
      if ((await editor.checksum()) !== state.checksum) throw new SilentLoad('loaded, with a different state');
    });
    return { kind: 'state', seed, mutation: `${file.split('-')[0]}: ${mutation}`, result };
  }

  async statisticsCase(seed: number): Promise<FuzzOutcome> {
    const stats = await this.#savedStatistics();
    const file = join(tempDir('comeba-fuzz-stats-'), 'stats.safetensors');
    const { bytes, mutation } = corrupt(readFileSync(stats.file), seed, true);
    writeFileSync(file, bytes);
    const result = await judged(async () => {
      await using model = await HookedModel.load(tinyGpt2);
      const loaded = await Statistics.load(model, file);
      for (const [i, layer] of stats.layers.entries()) {
        const { data } = await loaded.secondMoment(layer);
        if (!data.every((v, j) => Object.is(v, stats.moments[i][j]))) throw new SilentLoad(`loaded, with a different E[kkᵀ] at layer ${layer}`);
      }
    });
    return { kind: 'statistics', seed, mutation, result };
  }

  /**
   * Two copies of one folder that both went on editing write different files under the same names. A folder of
   * copy A's or B's editor.json with each other file taken from either copy at random must load as the state that
   * editor.json was saved with, or be refused.
   */
  async chainCase(seed: number): Promise<FuzzOutcome> {
    const copies = await this.#divergedCopies();
    const r = rng(seed);
    const owner = r(2);
    const dir = tempDir('comeba-fuzz-chain-');
    const taken: string[] = [];
    for (const f of copies.files) {
      const from = f === 'editor.json' ? owner : r(2);
      if (!existsSync(join(copies.dirs[from], f))) continue;
      copyFileSync(join(copies.dirs[from], f), join(dir, f));
      if (from !== owner) taken.push(f);
    }
    const result = await judged(async () => {
      await using model = await HookedModel.load(tinyGpt2);
      await using editor = await ConsecutiveEditor.load(model, dir);
      if ((await editor.checksum()) !== copies.checksums[owner]) throw new SilentLoad('loaded, with a state neither copy saved');
    });
    const mutation = `editor.json of ${'AB'[owner]}, from ${'BA'[owner]}: ${taken.join(' ') || 'nothing'}`;
    return { kind: 'chain', seed, mutation, result };
  }

  async #savedStatistics() {
    if (!this.#statistics) {
      await using model = await HookedModel.load(tinyGpt2);
      const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 60, 30, 7);
      const layers = [0, 2];
      const stats = await Statistics.collect(model, { corpus, layers, cacheDir: tempDir('comeba-fuzz-stats-') });
      const moments = await Promise.all(layers.map(async (l) => (await stats.secondMoment(l)).data));
      this.#statistics = { file: stats.file, layers, moments };
    }
    return this.#statistics;
  }

  async #divergedCopies() {
    if (!this.#copies) {
      const root = tempDir('comeba-fuzz-copies-');
      const a = join(root, 'a'), b = join(root, 'b');
      await using model = await HookedModel.load(tinyGpt2);
      const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30);
      const options = { stats: { corpus, cacheDir: join(root, 'stats') }, layers: [1, 2], lambda: 50 };
      const checksums: string[] = [];
      {
        await using editor = await ConsecutiveEditor.create(model, options);
        await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }]);
        await editor.save(a);  // the base
        await editor.edit([{ prompt: 'The city of {} is in', subject: 'Rome', target: 'France' }]);
        await editor.save(a);  // keys and ΔW of the second batch
      }
      cpSync(a, b, { recursive: true });
      for (const [dir, subjects] of [[a, ['Berlin', 'Madrid']], [b, ['Lisbon', 'Vienna']]] as const) {
        await using editor = await ConsecutiveEditor.load(model, dir);
        for (const subject of subjects) {
          await editor.edit([{ prompt: 'The city of {} is in', subject, target: 'Italy' }]);
          await editor.save(dir);  // the same file names in both copies, different contents
        }
        checksums.push(await editor.checksum());
      }
      const files = [...new Set([...readdirSync(a), ...readdirSync(b)])].filter((f) => f.endsWith('.json') || f.endsWith('.safetensors')).sort();
      this.#copies = { dirs: [a, b], checksums: checksums as [string, string], files };
    }
    return this.#copies;
  }

  async #savedState() {
    if (!this.#state) {
      const dir = tempDir('comeba-fuzz-saved-');
      await using model = await HookedModel.load(tinyGpt2);
      const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30);
      const statsDir = join(dir, 'stats');
      mkdirSync(statsDir);
      await using editor = await ConsecutiveEditor.create(model, { stats: { corpus, cacheDir: statsDir }, layers: [1, 2], lambda: 50 });
      await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }]);
      const stateDir = join(dir, 'state');
      await editor.save(stateDir);  // the base
      await editor.edit([{ prompt: 'The city of {} is in', subject: 'Rome', target: 'France' }]);
      await editor.save(stateDir);  // keys and ΔW of the second batch
      const saved = JSON.parse(readFileSync(join(stateDir, 'editor.json'), 'utf8'));
      this.#state = { dir: stateDir, checksum: await editor.checksum(), files: [saved.base, ...saved.keyFiles, saved.stateFile] };
    }
    return this.#state;
  }
}

class SilentLoad extends Error {}

/** 'identical' | 'refused CODE'; a silent wrong load or an untyped/INTERNAL error is returned as 'VIOLATION …'. */
async function judged(load: () => Promise<void>): Promise<string> {
  try {
    await load();
    return 'identical';
  } catch (err) {
    if (err instanceof SilentLoad) return `VIOLATION ${err.message}`;
    if (err instanceof ComebaError && err.code !== 'INTERNAL') return `refused ${err.code}`;
    return `VIOLATION untyped error ${(err as Error)?.name}: ${(err as Error)?.message}`;
  }
}

// As a script: one case, one line of JSON on stdout.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [kind, seed] = [process.argv[2] as FuzzKind, Number(process.argv[3])];
  if (!fuzzKinds.includes(kind)) throw new Error(`the kind is one of ${fuzzKinds.join(', ')}`);
  const outcome = await new Fuzzer().case(kind, seed);
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}
