// Seeded corruptions of a checkpoint's safetensors header and of a saved editor state, and the rule each
// outcome must obey: a load either fails with a typed error other than INTERNAL, or gives exactly what
// the uncorrupted file gives (bit-identical logits, the same state checksum). A crash or a hang shows as
// the process dying or timing out. Used by fuzz.test.ts (a few hundred cases in-process) and by
// scripts/fuzz.mjs (thousands, each case in its own child process):
//   node --import tsx test/fuzz-cases.ts <checkpoint|state> <seed>   prints one outcome line
import { copyFileSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ComebaError, ConsecutiveEditor, HookedModel } from '../lib/index.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';

export type FuzzKind = 'checkpoint' | 'state';
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
  const fuzzer = new Fuzzer();
  const outcome = kind === 'state' ? await fuzzer.stateCase(seed) : await fuzzer.checkpointCase(seed);
  process.stdout.write(`${JSON.stringify(outcome)}\n`);
}
