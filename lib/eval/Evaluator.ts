// Evaluator: EasyEdit's metrics (METHOD.md §6), computed natively in batches by teacher forcing, on a
// 0–100 scale. Reliability and generality are target-token accuracy on the edit and rephrased prompts;
// locality is agreement with the unedited model's predictions, captured by `snapshot` before any edit.
// Optionally MEMIT's CounterFact probability metrics, from mean per-token NLL of new vs true targets.
// `perplexity` measures general ability on held-out text (did the edited model stay a language model?).
// With `generation`, the same three metrics the way a user meets the model: greedy generation through the
// hooks (KV cache), exact match of the target at the start of the generated text ("The Mirage of Model
// Editing": teacher forcing flatters editors); locality against the unedited model's own generation.
// Records with `portability` (MQuAKE's multi-hop questions) are also scored on the questions' new answer.
import { callNative, InvalidArgumentError } from '../errors.js';
import type { HookedModel } from '../model/HookedModel.js';
import { withLeadingSpace } from '../edit/requests.js';
import { oneOf } from '../args.js';
import { decisionRules, generateDefaults, type Decisions } from '../model/types.js';

export interface EvalRecord {
  /** The edit prompt with its subject, as text. */
  prompt: string;
  /** The new target. */
  target: string;
  /** A rephrasing of the prompt (generality). */
  rephrase?: string;
  /** An unrelated fact the edit must not change (locality). */
  locality?: { prompt: string; answer: string };
  /** The original target, for the probability metrics. */
  trueTarget?: string;
  /**
   * Multi-hop questions whose answer the edits (this record's and earlier ones) should change to `answer`
   * (MQuAKE): teacher-forced accuracy of `answer` averaged over the questions; with `generation`, MQuAKE's
   * multi-hop accuracy (some question's generation starts with `answer` or one of `aliases`).
   */
  portability?: { questions: string[]; answer: string; aliases?: string[] };
}

/** The unedited model's argmax at every locality answer position, per record (null without locality). */
export interface Snapshot {
  locality: (number[] | null)[];
  /** With `generation`: the unedited model's greedy continuation of each locality prompt. */
  generatedLocality?: (number[] | null)[];
}

export interface RecordScores {
  reliability: number;
  generality?: number;
  locality?: number;
  /** Probability metrics (0/1 per record): new target more likely than the true one on the prompt / rephrase; true still more likely on the locality prompt. */
  efficacy?: number;
  paraphrase?: number;
  neighborhood?: number;
  /** Records with `portability`: target-token accuracy of the new answer on the multi-hop questions, 0–100. */
  portability?: number;
  /** With `generation` (0 or 100 per record): the generated text starts with the target / equals the unedited generation. */
  generated?: { reliability: number; generality?: number; locality?: number; portability?: number };
  /** With `generation`: what the model now generates for the edit, rephrase and locality prompts. */
  answers?: { prompt: string; rephrase?: string; locality?: string };
}

export interface EvalResult {
  reliability: number;
  generality: number;
  locality: number;
  /** Mean of the three (of those the records have). */
  average: number;
  /** With `probabilities`: MEMIT's efficacy, paraphrase and neighbourhood success, 0–100. */
  probabilities?: { efficacy: number; paraphrase: number; neighborhood: number };
  /** Over the records with `portability` (NaN when none has it); not part of `average`, as in the paper. */
  portability: number;
  /** With `generation`: the generation-based reliability, generality and locality, 0–100, their mean, and portability. */
  generated?: { reliability: number; generality: number; locality: number; average: number; portability: number };
  records: RecordScores[];
}

export interface EvaluatorOptions {
  /** Rows per forward pass. Default 64. */
  batchSize?: number;
  /** Also compute MEMIT's probability metrics (needs `trueTarget`). Default false. */
  probabilities?: boolean;
  /** Also the generation-based metrics: greedy continuations of target length + `extraTokens`. Default false. */
  generation?: boolean;
  /** Tokens generated beyond the target's (or the locality answer's) length. Default 2. */
  extraTokens?: number;
}

export interface PerplexityResult {
  /** exp of the mean next-token NLL over every scored token of every document. */
  perplexity: number;
  /** Tokens scored (each document's tokens after its first). */
  tokens: number;
  /** Documents scored (those with at least two tokens). */
  documents: number;
}

export interface FluencyResult {
  /** Mean over the prompts of MEMIT's weighted n-gram entropy of the generated text (higher: less repetitive). */
  fluency: number;
  /** Per prompt: the entropy, and the generated text it was computed on. */
  texts: { text: string; entropy: number }[];
}

interface Query { prompt: number[]; target: number[] }
interface Scored { argmax: number[]; meanNll: number }

export class Evaluator {
  readonly model: HookedModel;
  readonly batchSize: number;
  readonly probabilities: boolean;
  readonly generation: boolean;
  readonly extraTokens: number;
  #ids = new Map<string, number[]>();

  constructor(model: HookedModel, options: EvaluatorOptions = {}) {
    this.model = model;
    this.batchSize = options.batchSize ?? 64;
    this.probabilities = options.probabilities ?? false;
    this.generation = options.generation ?? false;
    this.extraTokens = options.extraTokens ?? 2;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) throw new InvalidArgumentError('batchSize must be a positive integer');
    if (!Number.isInteger(this.extraTokens) || this.extraTokens < 0) throw new InvalidArgumentError('extraTokens must be an integer ≥ 0');
  }

  /** Captures the current (unedited) model's locality predictions (and generations). Call it before the first edit. */
  async snapshot(records: readonly EvalRecord[]): Promise<Snapshot> {
    const queries = records.map((r, i) => (r.locality ? this.#query(r.locality.prompt, r.locality.answer, i) : null));
    const scored = await this.#score(queries);
    const snapshot: Snapshot = { locality: scored.map((s) => s?.argmax ?? null) };
    if (this.generation) snapshot.generatedLocality = await this.#generate(queries);
    return snapshot;
  }

  /** Scores the model as it is now (through an attached editor's hooks) against `snapshot`. */
  async evaluate(records: readonly EvalRecord[], snapshot: Snapshot): Promise<EvalResult> {
    if (snapshot.locality.length !== records.length) {
      throw new InvalidArgumentError(`the snapshot covers ${snapshot.locality.length} records, not ${records.length}`);
    }
    const q = (prompt: string | undefined, target: string | undefined, i: number) =>
      prompt !== undefined && target !== undefined ? this.#query(prompt, target, i) : null;
    const withTrue = this.probabilities;
    // One after another: each batch already uses every core.
    const rel = await this.#score(records.map((r, i) => q(r.prompt, r.target, i)));
    const gen = await this.#score(records.map((r, i) => q(r.rephrase, r.target, i)));
    const loc = await this.#score(records.map((r, i) => q(r.locality?.prompt, r.locality?.answer, i)));
    const relTrue = await this.#score(records.map((r, i) => (withTrue ? q(r.prompt, r.trueTarget, i) : null)));
    const genTrue = await this.#score(records.map((r, i) => (withTrue ? q(r.rephrase, r.trueTarget, i) : null)));
    const locNew = await this.#score(records.map((r, i) => (withTrue ? q(r.locality?.prompt, r.target, i) : null)));
    // Portability: one row per (record, question).
    const hops = records.flatMap((r, i) => (r.portability?.questions ?? []).map((question) => ({ i, query: this.#query(question, r.portability!.answer, i) })));
    const hopScores = await this.#score(hops.map((h) => h.query));
    const hopsOf: number[][] = records.map(() => []);  // per record, the indices of its rows in `hops`
    hops.forEach((h, k) => hopsOf[h.i].push(k));
    const scores: RecordScores[] = records.map((r, i) => {
      const s: RecordScores = { reliability: accuracy(rel[i]!.argmax, this.#encode(r.target, 'target')) };
      if (gen[i]) s.generality = accuracy(gen[i]!.argmax, this.#encode(r.target, 'target'));
      if (loc[i] && snapshot.locality[i]) s.locality = accuracy(loc[i]!.argmax, snapshot.locality[i]!);
      if (withTrue && relTrue[i]) s.efficacy = Number(rel[i]!.meanNll < relTrue[i]!.meanNll);
      if (withTrue && gen[i] && genTrue[i]) s.paraphrase = Number(gen[i]!.meanNll < genTrue[i]!.meanNll);
      if (withTrue && loc[i] && locNew[i]) s.neighborhood = Number(loc[i]!.meanNll < locNew[i]!.meanNll);
      const mine = hopsOf[i].map((k) => accuracy(hopScores[k]!.argmax, hops[k].query.target));
      if (mine.length > 0) s.portability = mine.reduce((a, b) => a + b, 0) / mine.length;
      return s;
    });
    if (this.generation) {
      if (!snapshot.generatedLocality) throw new InvalidArgumentError('the snapshot has no generations: take it with an Evaluator with generation: true');
      // Every continuation in one call: the native side batches rows of one length together.
      const queries = [
        ...records.map((r, i) => q(r.prompt, r.target, i)),
        ...records.map((r, i) => q(r.rephrase, r.target, i)),
        ...records.map((r, i) => q(r.locality?.prompt, r.locality?.answer, i)),
        ...hops.map((h) => ({ prompt: h.query.prompt, target: this.#longestAnswer(records[h.i].portability!) })),
      ];
      const generated = await this.#generate(queries);
      const n = records.length;
      const startsWith = (ids: number[], answers: string[]) => {
        const text = this.model.tokenizer.decode(ids);
        return answers.some((a) => text.startsWith(withLeadingSpace(a))) ? 100 : 0;
      };
      records.forEach((r, i) => {
        const g: NonNullable<RecordScores['generated']> = { reliability: startsWith(generated[i]!, [r.target]) };
        if (generated[n + i]) g.generality = startsWith(generated[n + i]!, [r.target]);
        if (generated[2 * n + i]) g.locality = generated[2 * n + i]!.join() === snapshot.generatedLocality![i]?.join() ? 100 : 0;
        if (r.portability) {
          const answers = [r.portability.answer, ...(r.portability.aliases ?? [])];
          g.portability = hopsOf[i].some((k) => startsWith(generated[3 * n + k]!, answers) === 100) ? 100 : 0;
        }
        scores[i].generated = g;
        const answers: NonNullable<RecordScores['answers']> = { prompt: this.model.tokenizer.decode(generated[i]!) };
        if (generated[n + i]) answers.rephrase = this.model.tokenizer.decode(generated[n + i]!);
        if (generated[2 * n + i]) answers.locality = this.model.tokenizer.decode(generated[2 * n + i]!);
        scores[i].answers = answers;
      });
    }
    const result = summarise(scores);
    if (withTrue) {
      result.probabilities = {
        efficacy: 100 * mean(scores.map((s) => s.efficacy)),
        paraphrase: 100 * mean(scores.map((s) => s.paraphrase)),
        neighborhood: 100 * mean(scores.map((s) => s.neighborhood)),
      };
    }
    return result;
  }

  /**
   * Perplexity of the model as it is now (through an attached editor's hooks) on `texts`: each document
   * encoded as a prompt (BOS where the model takes one), cut to the context length, every token after the
   * first predicted from those before it; a row ends before its last token, as the teacher-forced metrics'
   * rows do. Natively, in batches of `batchSize` documents.
   */
  async perplexity(texts: readonly string[]): Promise<PerplexityResult> {
    if (!Array.isArray(texts)) throw new InvalidArgumentError('perplexity expects an array of texts');
    const queries = texts.flatMap((text, i) => {
      if (typeof text !== 'string') throw new InvalidArgumentError(`text ${i} is not a string`);
      const ids = this.model.tokenizer.encodePrompt(text).slice(0, this.model.info.contextLength);
      return ids.length >= 2 ? [{ prompt: ids.slice(0, 1), target: ids.slice(1) }] : [];
    });
    if (queries.length === 0) throw new InvalidArgumentError('perplexity needs at least one text of two or more tokens');
    let nll = 0;
    let tokens = 0;
    for (const [i, s] of (await this.#score(queries)).entries()) {
      nll += s!.meanNll * queries[i].target.length;
      tokens += queries[i].target.length;
    }
    return { perplexity: Math.exp(nll / tokens), tokens, documents: queries.length };
  }

  /**
   * Fluency as MEMIT measures it: greedy generation of `maxNewTokens` from each prompt (through the hooks; fewer
   * where the context ends first),
   * then the weighted entropy of its word bigrams and trigrams (weights 2/3 and 4/3, bits, averaged).
   * Words are runs of letters/digits or single punctuation marks (MEMIT uses nltk's word_tokenize). `decisions` as
   * in generate (default exact).
   */
  async fluency(prompts: readonly string[], options: { maxNewTokens?: number; decisions?: Decisions } = {}): Promise<FluencyResult> {
    const { maxNewTokens = 100, decisions = generateDefaults.decisions } = options;
    if (!Array.isArray(prompts) || prompts.length === 0) throw new InvalidArgumentError('fluency expects a non-empty array of prompts');
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new InvalidArgumentError('fluency: maxNewTokens must be a positive integer');
    oneOf('fluency: decisions', String(decisions), decisionRules);
    const ids = prompts.map((prompt, i) => {
      if (typeof prompt !== 'string' || prompt === '') throw new InvalidArgumentError(`fluency: prompt ${i} is not a non-empty string`);
      return this.model.tokenizer.encodePrompt(prompt);
    });
    const generated = await this.#generateIds(ids, ids.map(() => maxNewTokens), decisions);
    const texts = generated.map((g) => {
      const text = this.model.tokenizer.decode(g);
      return { text, entropy: nGramEntropy(text) };
    });
    return { fluency: texts.reduce((s, t) => s + t.entropy, 0) / texts.length, texts };
  }

  /** Token ids, each text encoded once per Evaluator (a sweep scores the same records at every checkpoint): prompts with BOS where the model takes one, targets as continuations. */
  #encode(text: string, as: 'prompt' | 'target'): number[] {
    const key = `${as}:${text}`;
    let ids = this.#ids.get(key);
    if (!ids) this.#ids.set(key, (ids = as === 'prompt' ? this.model.tokenizer.encodePrompt(text) : this.model.tokenizer.encode(withLeadingSpace(text))));
    return ids;
  }

  /** The multi-hop answer's spelling with the most tokens: generation runs long enough for any of them. */
  #longestAnswer(p: NonNullable<EvalRecord['portability']>): number[] {
    return [p.answer, ...(p.aliases ?? [])].map((a) => this.#encode(a, 'target')).reduce((a, b) => (b.length > a.length ? b : a));
  }

  #query(prompt: string, target: string, index: number): Query {
    const q = { prompt: this.#encode(prompt, 'prompt'), target: this.#encode(target, 'target') };
    if (q.prompt.length === 0 || q.target.length === 0) throw new InvalidArgumentError(`record ${index}: empty prompt or target`);
    return q;
  }

  /** Greedy continuations (through the hooks, KV cache) of each non-null query's prompt, target length + extraTokens long. */
  async #generate(queries: (Query | null)[]): Promise<(number[] | null)[]> {
    const todo = queries.flatMap((q, i) => (q ? [i] : []));
    const generated = await this.#generateIds(todo.map((i) => queries[i]!.prompt), todo.map((i) => queries[i]!.target.length + this.extraTokens));
    const out: (number[] | null)[] = queries.map(() => null);
    todo.forEach((i, k) => { out[i] = generated[k]; });
    return out;
  }

  /**
   * Batched greedy generation, `lengths[i]` tokens for prompt i (fewer where the model's context ends first):
   * sorted by length so that a batch holds one length.
   */
  async #generateIds(prompts: number[][], wanted: number[], decisions: Decisions = generateDefaults.decisions): Promise<number[][]> {
    const lengths = wanted.map((n, i) => Math.max(0, Math.min(n, this.model.info.contextLength - prompts[i].length)));
    const order = prompts.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
    const out: number[][] = new Array(prompts.length);
    for (let start = 0; start < order.length; start += this.batchSize) {
      const chunk = order.slice(start, start + this.batchSize);
      const res = await callNative(() => this.model.native.generateGreedy(chunk.map((i) => prompts[i]), chunk.map((i) => lengths[i]), { decisions }));
      chunk.forEach((i, k) => { out[i] = res[k]; });
    }
    return out;
  }

  /** Scores the non-null queries in native batches; nulls stay null. */
  async #score(queries: (Query | null)[]): Promise<(Scored | null)[]> {
    const out: (Scored | null)[] = queries.map(() => null);
    const todo = queries.flatMap((q, i) => (q ? [[q, i] as const] : []));
    for (let start = 0; start < todo.length; start += this.batchSize) {
      const chunk = todo.slice(start, start + this.batchSize);
      const res = await callNative(() => this.model.native.scoreTargets(chunk.map(([q]) => q.prompt), chunk.map(([q]) => q.target)));
      chunk.forEach(([, i], k) => { out[i] = { argmax: res.argmax[k], meanNll: res.meanNll[k] }; });
    }
    return out;
  }
}

/** MEMIT's compute_n_gram_entropy: mean of (2/3)·H(bigrams) and (4/3)·H(trigrams), in bits. */
export function nGramEntropy(text: string): number {
  const words = text.match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) ?? [];
  const entropies = [2, 3].map((n) => {
    const counts = new Map<string, number>();
    for (let i = 0; i + n <= words.length; i++) {
      const gram = words.slice(i, i + n).join('\u0000');
      counts.set(gram, (counts.get(gram) ?? 0) + 1);
    }
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    return [...counts.values()].reduce((h, c) => h - (c / total) * Math.log2(c / total), 0);
  });
  return ((2 / 3) * entropies[0] + (4 / 3) * entropies[1]) / 2;
}

/** Fraction of positions where the prediction equals the expected token, 0–100. */
function accuracy(predicted: readonly number[], expected: readonly number[]): number {
  let hits = 0;
  for (let i = 0; i < expected.length; i++) hits += Number(predicted[i] === expected[i]);
  return (100 * hits) / expected.length;
}

/**
 * The metrics' means over `scores` (NaN where no record has one), the average of the three, and the same for
 * the generation-based metrics when every record has them.
 */
export function summarise(scores: RecordScores[]): EvalResult {
  const means = (of: Omit<RecordScores, 'generated'>[]) => {
    const reliability = mean(of.map((s) => s.reliability));
    const generality = mean(of.map((s) => s.generality));
    const locality = mean(of.map((s) => s.locality));
    const average = mean([reliability, generality, locality].filter((v) => !Number.isNaN(v)));
    return { reliability, generality, locality, average, portability: mean(of.map((s) => s.portability)) };
  };
  const result: EvalResult = { ...means(scores), records: scores };
  if (scores.length > 0 && scores.every((s) => s.generated)) result.generated = means(scores.map((s) => s.generated!));
  return result;
}

function mean(values: (number | undefined)[]): number {
  const v = values.filter((x): x is number => x !== undefined);
  return v.length === 0 ? Number.NaN : v.reduce((a, b) => a + b, 0) / v.length;
}
