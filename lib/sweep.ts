// A sweep: the paper's protocol on a dataset, for one or more modes, resumable after a kill.
//   consecutive:  edit the first n cases in batches with no roll-back; evaluate the cases edited so far every
//                 `evalEvery` edits and at the end (evaluation never changes the editor).
//   single-round: edit each batch, evaluate it, roll back (the paper's Table 1 protocol).
// Layout of `out`: metrics.jsonl (one line per checkpoint), summary.json, chart.svg, and per mode a folder
// with the editor state (consecutive) or the scores so far (single-round) as of the last checkpoint.
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { renderChart } from './chart.js';
import { ConsecutiveEditor } from './ConsecutiveEditor.js';
import { loadDataset, type DatasetFormat, type EditCase } from './datasets.js';
import { InvalidArgumentError } from './errors.js';
import { Evaluator, summarise, type EvalResult, type RecordScores, type Snapshot } from './Evaluator.js';
import { writeAtomically } from './files.js';
import { HookedModel, type Device, type Dtype } from './HookedModel.js';
import { readCheckpointDefaults, resolveHyperparameters, singleRoundLambda, type EditMode, type Scope } from './options.js';
import { Statistics } from './statistics.js';

export type Protocol = 'consecutive' | 'single-round';

/** What a sweep compares: the edit modes, and comeba-hk with the calibrated scope (README "Editing scope"). */
export type SweepMethod = EditMode | 'comeba-hk+calibrated';
export const sweepMethods: readonly SweepMethod[] = ['comeba-hk', 'comeba-hk+calibrated', 'comeba-wo-hk', 'memit'];

/**
 * The editor settings a sweep gives `method`: its mode and scope, and λ: --lambda, else the checkpoint's comeba.json,
 * else the protocol's (single-round COMEBA-HK: the paper's 5000; otherwise the mode's default).
 */
export function editorSettings(method: SweepMethod, o: Pick<SweepOptions, 'model' | 'protocol' | 'lambda' | 'scopeKappa' | 'alphaFloor'>) {
  const { mode, scope }: { mode: EditMode; scope: Scope } = method === 'comeba-hk+calibrated'
    ? { mode: 'comeba-hk', scope: 'calibrated' } : { mode: method, scope: 'paper' };
  const fromCheckpoint = readCheckpointDefaults(o.model).lambda?.[mode];
  const lambda = o.lambda ?? fromCheckpoint ?? (o.protocol === 'single-round' ? singleRoundLambda[mode] : undefined);
  return scope === 'calibrated' ? { mode, scope, lambda, scopeKappa: o.scopeKappa, alphaFloor: o.alphaFloor } : { mode, scope, lambda };
}

export interface SweepOptions {
  model: string;
  data: string;
  format: DatasetFormat;
  n: number;
  batch: number;
  modes: SweepMethod[];
  protocol: Protocol;
  evalEvery: number;
  out: string;
  layers?: number[];
  lambda?: number;
  alphaZ?: number;
  /** The calibrated scope's κ and α floor (comeba-hk+calibrated). */
  scopeKappa?: number;
  alphaFloor?: number;
  /** Text corpus for E[kkᵀ]; default: the checkpoint's stats-corpus.txt, else text made from the dataset. */
  statsCorpus?: string;
  device?: Device;
  dtype?: Dtype;
  onEvent?: (event: SweepEvent) => void;
}

export type SweepEvent =
  | { type: 'mode'; mode: SweepMethod; resumedAt: number; n: number }
  | { type: 'progress'; mode: SweepMethod; edits: number; n: number; seconds: number }
  | { type: 'checkpoint'; mode: SweepMethod; metrics: MetricsLine }
  | { type: 'stats'; message: string };

export interface MetricsLine {
  mode: SweepMethod;
  protocol: Protocol;
  edits: number;
  reliability: number;
  generality: number;
  locality: number;
  average: number;
  seconds: number;
}

export interface SweepSummary extends Omit<MetricsLine, 'edits'> {
  n: number;
  batch: number;
  editsPerSecond: number;
  model: string;
  data: string;
}

/** Seconds spent and where a mode stands, saved with its checkpoint. */
interface ModeProgress { edits: number; seconds: number; scores?: RecordScores[] }

export async function runSweep(options: SweepOptions): Promise<SweepSummary[]> {
  validate(options);
  // Records with an empty target cannot be edited (two in zsRE's train split): leave them out.
  const cases = loadDataset(options.data, options.format, { limit: options.n, skipEmptyTargets: true });
  if (cases.length < options.n) throw new InvalidArgumentError(`${options.data} holds ${cases.length} cases, fewer than --n ${options.n}`);
  mkdirSync(options.out, { recursive: true });
  // One model, snapshot and E[kkᵀ] for every mode: disposing a mode's editor leaves the model unedited.
  await using model = await HookedModel.load(options.model, { device: options.device, dtype: options.dtype });
  const evaluator = new Evaluator(model);
  const snapshot = await evaluator.snapshot(cases.map((c) => c.record));  // before any editor attaches
  const shared: SharedSetup = { model, evaluator, snapshot, stats: await statistics(model, options, cases) };
  const summaries: SweepSummary[] = [];
  for (const mode of options.modes) summaries.push(await runMode(options, cases, mode, shared));
  writeAtomically(join(options.out, 'summary.json'), JSON.stringify(summaries, null, 2));
  const series = options.modes.map((mode) => ({ label: mode, points: readMetrics(options.out).filter((m) => m.mode === mode && m.protocol === options.protocol) }));
  writeAtomically(join(options.out, 'chart.svg'), renderChart(series, { title: `${options.protocol} editing, batch ${options.batch}` }));
  return summaries;
}

interface SharedSetup { model: HookedModel; evaluator: Evaluator; snapshot: Snapshot; stats: Statistics }

async function runMode(options: SweepOptions, cases: EditCase[], mode: SweepMethod, { model, evaluator, snapshot, stats }: SharedSetup): Promise<SweepSummary> {
  const dir = join(options.out, mode);
  mkdirSync(dir, { recursive: true });
  const records = cases.map((c) => c.record);
  const progressFile = join(dir, 'progress.json');
  const saved: ModeProgress = existsSync(progressFile) ? JSON.parse(readFileSync(progressFile, 'utf8')) : { edits: 0, seconds: 0 };
  const consecutive = options.protocol === 'consecutive';
  const stateDir = join(dir, 'editor');
  await using editor = consecutive && existsSync(join(stateDir, 'editor.json'))
    ? await ConsecutiveEditor.load(model, stateDir, { stats })
    : await ConsecutiveEditor.create(model, { ...editorSettings(mode, options), stats, layers: options.layers, alphaZ: options.alphaZ });
  // Consecutive: the saved editor state is the truth (it is written first at a checkpoint).
  let edits = consecutive ? Math.min(editor.step * options.batch, options.n) : saved.edits;
  let seconds = saved.seconds;
  let scores: RecordScores[] = saved.scores ?? [];
  keepMetricsUpTo(options.out, mode, options.protocol, edits);
  options.onEvent?.({ type: 'mode', mode, resumedAt: edits, n: options.n });
  let started = performance.now();
  const elapsed = () => seconds + (performance.now() - started) / 1000;
  const checkpoint = async (result: EvalResult) => {
    const line: MetricsLine = {
      mode, protocol: options.protocol, edits, reliability: result.reliability, generality: result.generality,
      locality: result.locality, average: result.average, seconds: elapsed(),
    };
    // State first, then its progress file, then the metrics line: a kill anywhere resumes at a consistent point.
    if (consecutive) await editor.save(stateDir);
    writeAtomically(progressFile, JSON.stringify({ edits, seconds: line.seconds, scores: consecutive ? undefined : scores }));
    appendFileSync(join(options.out, 'metrics.jsonl'), `${JSON.stringify(line)}\n`);
    options.onEvent?.({ type: 'checkpoint', mode, metrics: line });
    return line;
  };

  const evaluateNow = () => consecutive
    ? evaluator.evaluate(records.slice(0, edits), sliceSnapshot(snapshot, 0, edits))
    : Promise.resolve(summarise(scores));
  const recorded = () => readMetrics(options.out).find((m) => m.mode === mode && m.protocol === options.protocol && m.edits === edits);
  // Killed after saving a checkpoint's state but before its metrics line: write the line now.
  let last = recorded();
  if (edits > 0 && !last) last = await checkpoint(await evaluateNow());
  while (edits < options.n) {
    const batch = cases.slice(edits, Math.min(edits + options.batch, options.n));
    await editor.edit(batch.map((c) => c.request));
    if (options.protocol === 'single-round') {
      const result = await evaluator.evaluate(batch.map((c) => c.record), sliceSnapshot(snapshot, edits, edits + batch.length));
      scores = scores.concat(result.records);
      await editor.reset();
    }
    edits += batch.length;
    options.onEvent?.({ type: 'progress', mode, edits, n: options.n, seconds: elapsed() });
    if (edits % options.evalEvery === 0 || edits === options.n) {
      const evalStart = performance.now();
      const result = await evaluateNow();
      // Evaluation time is not editing time: leave it out of edits/s.
      started += performance.now() - evalStart;
      last = await checkpoint(result);
    }
  }
  if (!last) throw new InvalidArgumentError(`no checkpoint recorded for ${mode}`);
  return {
    ...last, n: options.n, batch: options.batch, editsPerSecond: options.n / Math.max(last.seconds, 1e-9),
    model: options.model, data: options.data,
  };
}

async function statistics(model: HookedModel, options: SweepOptions, cases: EditCase[]): Promise<Statistics> {
  const layers = resolveHyperparameters(model.info, { layers: options.layers }, readCheckpointDefaults(options.model)).layers;
  let corpus = options.statsCorpus ?? join(options.model, 'stats-corpus.txt');
  if (!existsSync(corpus)) {
    // No corpus given: text in the dataset's own distribution — every prompt completed with its true answer.
    corpus = join(options.out, 'stats-corpus.txt');
    const lines = cases.flatMap(({ record: r }) => [
      `${r.prompt} ${r.trueTarget ?? ''}`, r.rephrase ? `${r.rephrase} ${r.trueTarget ?? ''}` : '', r.locality ? `${r.locality.prompt} ${r.locality.answer}` : '',
    ]).filter((l) => l.trim() !== '');
    writeAtomically(corpus, lines.join('\n'));
    options.onEvent?.({ type: 'stats', message: `no --stats-corpus: using ${lines.length} lines made from the dataset (${corpus})` });
  }
  return Statistics.collect(model, { corpus, layers, cacheDir: join(options.out, 'stats') });
}

function sliceSnapshot(snapshot: Snapshot, from: number, to: number): Snapshot {
  return { locality: snapshot.locality.slice(from, to) };
}

export function readMetrics(out: string): MetricsLine[] {
  const file = join(out, 'metrics.jsonl');
  if (!existsSync(file)) return [];
  // A kill may leave a torn last line: keep the lines that parse.
  return readFileSync(file, 'utf8').split('\n').flatMap((line) => {
    try {
      return line.trim() ? [JSON.parse(line) as MetricsLine] : [];
    } catch {
      return [];
    }
  });
}

/** Drops this mode's metric lines beyond the resumed checkpoint (and any torn line). */
function keepMetricsUpTo(out: string, mode: SweepMethod, protocol: Protocol, edits: number): void {
  const lines = readMetrics(out).filter((m) => !(m.mode === mode && m.protocol === protocol && m.edits > edits));
  const file = join(out, 'metrics.jsonl');
  if (lines.length === 0) rmSync(file, { force: true });
  else writeAtomically(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
}

function validate(o: SweepOptions): void {
  for (const key of ['n', 'batch', 'evalEvery'] as const) {
    if (!Number.isInteger(o[key]) || o[key] < 1) throw new InvalidArgumentError(`${key} must be a positive integer`);
  }
  if (o.evalEvery % o.batch !== 0) throw new InvalidArgumentError(`--eval-every (${o.evalEvery}) must be a multiple of --batch (${o.batch})`);
  if (o.modes.length === 0) throw new InvalidArgumentError('no mode to run');
  for (const m of o.modes) {
    if (!sweepMethods.includes(m)) throw new InvalidArgumentError(`mode must be one of ${sweepMethods.join(', ')}, not '${String(m)}'`);
  }
}
