// Edit datasets in their published formats → edit requests plus the records the Evaluator scores
// (METHOD.md §6). CounterFact in EasyEdit's form, zsRE in MEND's, CounterFact in ROME/MEMIT's form, and a
// plain JSON-lines form of our own; MQuAKE (several edits per case, scored on multi-hop questions). A malformed record is an InvalidDatasetError naming the file, the
// record's index and the field.
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, InvalidDatasetError } from '../errors.js';
import type { EvalRecord } from './Evaluator.js';
import { fillTemplate, type EditRequest } from '../edit/requests.js';

export type DatasetFormat = 'counterfact' | 'zsre' | 'memit' | 'mquake' | 'jsonl';

export const datasetFormats: readonly DatasetFormat[] = ['counterfact', 'zsre', 'memit', 'mquake', 'jsonl'];

export interface EditCase {
  /**
   * CounterFact's `case_id`; for zsRE the record's index in the file; for MQuAKE `<case_id>.<k>` for its k-th
   * rewrite; for JSON lines its `id`, else its index.
   */
  id: string;
  request: EditRequest;
  record: EvalRecord;
}

export interface LoadDatasetOptions {
  /** zsRE: drop the leading "nq question: " of the locality prompt. Default false (kept, as EasyEdit does). */
  stripNqPrefix?: boolean;
  /** Only the first N cases (records after it are not read or checked). */
  limit?: number;
  /**
   * Leave out records whose target is empty or blank (two of the 1,000 zsRE train records have `alt: ""`;
   * the editor rejects such a request). Ids keep their place in the file. Default false (kept).
   */
  skipEmptyTargets?: boolean;
}

type Raw = Record<string, unknown>;

/** Where a record sits, for error messages. */
interface At { file: string; index: number }

const nqPrefix = 'nq question: ';

function fail(at: At, message: string, field?: string): never {
  throw new InvalidDatasetError(message, { file: at.file, index: at.index, field });
}

function asObject(value: unknown, at: At): Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    fail(at, `expected an object, got ${describe(value)}`);
  }
  return value as Raw;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value === undefined) return 'nothing (missing)';
  return `a ${typeof value} (${JSON.stringify(value)?.slice(0, 60)})`;
}

function str(raw: Raw, key: string, at: At, field = key): string {
  const v = raw[key];
  if (typeof v !== 'string') fail(at, `expected a string, got ${describe(v)}`, field);
  return v;
}

function optStr(raw: Raw, keys: readonly string[], at: At): string | undefined {
  for (const key of keys) {
    const v = raw[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string') fail(at, `expected a string, got ${describe(v)}`, key);
    return v;
  }
  return undefined;
}

function strArray(raw: Raw, key: string, at: At, field = key): string[] {
  const v = raw[key];
  if (!Array.isArray(v)) fail(at, `expected an array of strings, got ${describe(v)}`, field);
  v.forEach((item, i) => {
    if (typeof item !== 'string') fail(at, `expected a string, got ${describe(item)}`, `${field}[${i}]`);
  });
  return v as string[];
}

/**
 * The request for `prompt`/`subject`, checked: the prompt holds one `{}`, or the subject verbatim, or the
 * subject up to letter case (then the request takes the prompt's own spelling, which the editor needs to
 * find the subject's tokens). Returns the request and the prompt as text.
 */
function makeRequest(prompt: string, subject: string, target: string, at: At, fields: { prompt: string; subject: string }): { request: EditRequest; text: string } {
  if (subject.trim() === '') fail(at, 'the subject is empty', fields.subject);
  const holes = prompt.split('{}').length - 1;
  if (holes > 1) fail(at, `the prompt has ${holes} {} (at most one)`, fields.prompt);
  if (holes === 1) return { request: { prompt, subject, target }, text: fillTemplate(prompt, subject) };
  if (prompt.includes(subject)) return { request: { prompt, subject, target }, text: prompt };
  const at2 = prompt.toLowerCase().indexOf(subject.toLowerCase());
  // Lower-casing can change a string's length (e.g. "İ"); only trust the match when it does not.
  if (at2 >= 0 && prompt.toLowerCase().length === prompt.length && subject.toLowerCase().length === subject.length) {
    return { request: { prompt, subject: prompt.slice(at2, at2 + subject.length), target }, text: prompt };
  }
  fail(at, `the subject ${JSON.stringify(subject)} occurs neither as {} nor verbatim in the prompt ${JSON.stringify(prompt)}`, fields.subject);
}

function counterfactCase(value: unknown, at: At): EditCase {
  const raw = asObject(value, at);
  const id = raw.case_id;
  if (typeof id !== 'number' && typeof id !== 'string') fail(at, `expected a number, got ${describe(id)}`, 'case_id');
  const target = str(raw, 'target_new', at);
  const { request, text } = makeRequest(str(raw, 'prompt', at), str(raw, 'subject', at), target, at, { prompt: 'prompt', subject: 'subject' });
  return {
    id: String(id),
    request,
    record: {
      prompt: text,
      target,
      rephrase: str(raw, 'rephrase_prompt', at),
      locality: { prompt: str(raw, 'locality_prompt', at), answer: str(raw, 'locality_ground_truth', at) },
      trueTarget: str(raw, 'ground_truth', at),
    },
  };
}

function zsreCase(value: unknown, at: At, stripNqPrefix: boolean): EditCase {
  const raw = asObject(value, at);
  const target = str(raw, 'alt', at);
  const { request, text } = makeRequest(str(raw, 'src', at), str(raw, 'subject', at), target, at, { prompt: 'src', subject: 'subject' });
  let loc = str(raw, 'loc', at);
  if (stripNqPrefix && loc.startsWith(nqPrefix)) loc = loc.slice(nqPrefix.length);
  const answers = raw.answers === undefined ? [] : strArray(raw, 'answers', at);
  const pred = optStr(raw, ['pred'], at);
  const trueTarget = answers[0] ?? pred;
  const record: EvalRecord = { prompt: text, target, rephrase: str(raw, 'rephrase', at), locality: { prompt: loc, answer: str(raw, 'loc_ans', at) } };
  if (trueTarget !== undefined) record.trueTarget = trueTarget;
  return { id: String(at.index), request, record };
}

function memitCase(value: unknown, at: At): EditCase {
  const raw = asObject(value, at);
  const id = raw.case_id;
  if (typeof id !== 'number' && typeof id !== 'string') fail(at, `expected a number, got ${describe(id)}`, 'case_id');
  const rw = raw.requested_rewrite;
  if (typeof rw !== 'object' || rw === null || Array.isArray(rw)) fail(at, `expected an object, got ${describe(rw)}`, 'requested_rewrite');
  const r = rw as Raw;
  const targetOf = (key: 'target_new' | 'target_true'): string => {
    const t = r[key];
    if (typeof t !== 'object' || t === null || Array.isArray(t)) fail(at, `expected an object {str}, got ${describe(t)}`, `requested_rewrite.${key}`);
    return str(t as Raw, 'str', at, `requested_rewrite.${key}.str`);
  };
  const target = targetOf('target_new');
  const trueTarget = targetOf('target_true');
  const { request, text } = makeRequest(
    str(r, 'prompt', at, 'requested_rewrite.prompt'), str(r, 'subject', at, 'requested_rewrite.subject'), target, at,
    { prompt: 'requested_rewrite.prompt', subject: 'requested_rewrite.subject' },
  );
  const paraphrases = raw.paraphrase_prompts === undefined ? [] : strArray(raw, 'paraphrase_prompts', at);
  const neighbours = raw.neighborhood_prompts === undefined ? [] : strArray(raw, 'neighborhood_prompts', at);
  const record: EvalRecord = { prompt: text, target };
  if (paraphrases.length > 0) record.rephrase = paraphrases[0];
  if (neighbours.length > 0) record.locality = { prompt: neighbours[0], answer: trueTarget };
  record.trueTarget = trueTarget;
  return { id: String(id), request, record };
}

/**
 * An MQuAKE case: one edit per requested rewrite (its question as the rephrase, no locality prompt), in the
 * file's order; the last carries the multi-hop questions, so they are scored once all the case's edits are made.
 */
function mquakeCases(value: unknown, at: At): EditCase[] {
  const raw = asObject(value, at);
  const id = raw.case_id;
  if (typeof id !== 'number' && typeof id !== 'string') fail(at, `expected a number, got ${describe(id)}`, 'case_id');
  const rewrites = raw.requested_rewrite;
  if (!Array.isArray(rewrites) || rewrites.length === 0) fail(at, `expected a non-empty list of rewrites, got ${describe(rewrites)}`, 'requested_rewrite');
  const cases = rewrites.map((rw, k): EditCase => {
    const field = `requested_rewrite[${k}]`;
    const r = asObject(rw, at);
    const targetOf = (key: 'target_new' | 'target_true'): string => {
      const t = r[key];
      if (typeof t !== 'object' || t === null || Array.isArray(t)) fail(at, `expected an object {str}, got ${describe(t)}`, `${field}.${key}`);
      return str(t as Raw, 'str', at, `${field}.${key}.str`);
    };
    const target = targetOf('target_new');
    const { request, text } = makeRequest(str(r, 'prompt', at, `${field}.prompt`), str(r, 'subject', at, `${field}.subject`), target, at,
      { prompt: `${field}.prompt`, subject: `${field}.subject` });
    return { id: `${String(id)}.${k}`, request, record: { prompt: text, target, rephrase: str(r, 'question', at, `${field}.question`), trueTarget: targetOf('target_true') } };
  });
  const questions = strArray(raw, 'questions', at);
  if (questions.length === 0) fail(at, 'expected at least one question', 'questions');
  const aliases = raw.new_answer_alias === undefined ? [] : strArray(raw, 'new_answer_alias', at);
  cases[cases.length - 1].record.portability = { questions, answer: str(raw, 'new_answer', at), aliases };
  return cases;
}

function jsonlCase(value: unknown, at: At): EditCase {
  const raw = asObject(value, at);
  const target = str(raw, 'target', at);
  const { request, text } = makeRequest(str(raw, 'prompt', at), str(raw, 'subject', at), target, at, { prompt: 'prompt', subject: 'subject' });
  const record: EvalRecord = { prompt: text, target };
  const rephrase = optStr(raw, ['rephrase'], at);
  if (rephrase !== undefined) record.rephrase = rephrase;
  const locPrompt = optStr(raw, ['locality_prompt', 'localityPrompt'], at);
  const locAnswer = optStr(raw, ['locality_answer', 'localityAnswer'], at);
  if ((locPrompt === undefined) !== (locAnswer === undefined)) {
    fail(at, 'a locality prompt needs a locality answer and the other way round', locPrompt === undefined ? 'locality_prompt' : 'locality_answer');
  }
  if (locPrompt !== undefined && locAnswer !== undefined) record.locality = { prompt: locPrompt, answer: locAnswer };
  const trueTarget = optStr(raw, ['true_target', 'trueTarget'], at);
  if (trueTarget !== undefined) record.trueTarget = trueTarget;
  const id = raw.id;
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') fail(at, `expected a string or number, got ${describe(id)}`, 'id');
  return { id: id === undefined ? String(at.index) : String(id), request, record };
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidDatasetError(`cannot read the file: ${(err as Error).message}`, { file: path, cause: err });
  }
}

function parseList(path: string, text: string): unknown[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new InvalidDatasetError(`not valid JSON: ${(err as Error).message}`, { file: path, cause: err });
  }
  if (!Array.isArray(data)) throw new InvalidDatasetError(`expected a JSON list of records, got ${describe(data)}`, { file: path });
  return data;
}

/** The non-empty lines of a JSON-lines file, each with its 1-based line number. */
function jsonLines(text: string): { line: number; text: string }[] {
  return text.split(/\r?\n/).flatMap((t, i) => (t.trim() === '' ? [] : [{ line: i + 1, text: t }]));
}

/** Loads an edit dataset: every record checked and mapped to an edit request and its evaluation record. */
export function loadDataset(path: string, format: DatasetFormat, options: LoadDatasetOptions = {}): EditCase[] {
  const limit = options.limit ?? Number.POSITIVE_INFINITY;
  if (options.limit !== undefined && (!Number.isInteger(limit) || limit < 0)) throw new InvalidArgumentError(`limit must be a non-negative integer, got ${options.limit}`);
  if (!datasetFormats.includes(format)) throw new InvalidArgumentError(`unknown dataset format ${JSON.stringify(format)} (one of ${datasetFormats.join(', ')})`);
  const text = readText(path);
  const cases: EditCase[] = [];
  const keep = (c: EditCase) => {
    if (options.skipEmptyTargets && c.request.target.trim() === '') return;
    cases.push(c);
  };
  if (format === 'jsonl') {
    for (const [index, { line, text: t }] of jsonLines(text).entries()) {
      if (cases.length >= limit) break;
      const at = { file: path, index };
      let value: unknown;
      try {
        value = JSON.parse(t);
      } catch (err) {
        throw new InvalidDatasetError(`line ${line} is not valid JSON: ${(err as Error).message}`, { file: path, index, cause: err });
      }
      keep(jsonlCase(value, at));
    }
    return cases;
  }
  const list = parseList(path, text);
  for (let index = 0; index < list.length && cases.length < limit; index++) {
    const at = { file: path, index };
    if (format === 'counterfact') keep(counterfactCase(list[index], at));
    else if (format === 'zsre') keep(zsreCase(list[index], at, options.stripNqPrefix ?? false));
    else if (format === 'mquake') mquakeCases(list[index], at).slice(0, limit - cases.length).forEach(keep);
    else keep(memitCase(list[index], at));
  }
  return cases;
}

/**
 * The format of a dataset file, by content: a JSON list whose first record has `requested_rewrite` → memit
 * (mquake when it is a list),
 * `src` and `alt` → zsre, `target_new` and `rephrase_prompt` → counterfact; JSON lines (a `.jsonl` file, or
 * one whose first line is an object with `prompt`, `subject` and `target`) → jsonl.
 */
export function detectFormat(path: string): DatasetFormat {
  const text = readText(path);
  let data: unknown;
  let parsed = true;
  try {
    data = JSON.parse(text);
  } catch {
    parsed = false;
  }
  if (parsed && Array.isArray(data)) {
    const first = data.find((r) => typeof r === 'object' && r !== null && !Array.isArray(r)) as Raw | undefined;
    if (first) {
      if ('requested_rewrite' in first) return Array.isArray(first.requested_rewrite) ? 'mquake' : 'memit';
      if ('src' in first && 'alt' in first) return 'zsre';
      if ('target_new' in first && 'rephrase_prompt' in first) return 'counterfact';
    }
    throw new InvalidDatasetError(
      first ? `unrecognised record keys (${Object.keys(first).join(', ')}); pass the format explicitly` : 'the list holds no records to recognise the format by',
      { file: path },
    );
  }
  if (path.toLowerCase().endsWith('.jsonl')) return 'jsonl';
  const firstLine = jsonLines(text)[0];
  if (firstLine) {
    try {
      const obj = JSON.parse(firstLine.text) as unknown;
      if (typeof obj === 'object' && obj !== null && !Array.isArray(obj) && 'prompt' in obj && 'subject' in obj && 'target' in obj) return 'jsonl';
    } catch {
      // not JSON lines either
    }
  }
  throw new InvalidDatasetError('unrecognised dataset format (expected a CounterFact, zsRE or MEMIT JSON list, or JSON lines)', { file: path });
}
