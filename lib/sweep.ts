// A sweep: the paper's protocol on a dataset, for one or more modes, resumable after a kill.
//   consecutive:  edit the first n cases in batches with no roll-back; evaluate the cases edited so far every
//                 `evalEvery` edits and at the end (evaluation never changes the editor).
//   single-round: edit each batch, evaluate it, roll back (the paper's Table 1 protocol).
// Layout of `out`: settings.json (what the results depend on; a rerun resumes only with the same), runs.jsonl
// (what ran it: versions, device, threads; a line per invocation), metrics.jsonl (one line per checkpoint, with
// seconds per phase), summary.json, chart.svg, and per mode a folder with the editor state (consecutive) or the
// scores so far (single-round) as of the last checkpoint.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { renderChart } from './chart.js';
import { ConsecutiveEditor } from './ConsecutiveEditor.js';
import { loadDataset, type DatasetFormat, type EditCase } from './datasets.js';
import { InvalidArgumentError } from './errors.js';
import { Evaluator, summarise, type EvalResult, type RecordScores, type Snapshot } from './Evaluator.js';
import { removeOrphanedTemporaries, writeAtomically } from './files.js';
import { describeNative, loadNative, packageRoot } from './native.js';
import { HookedModel, type Device, type Dtype } from './HookedModel.js';
import { readCheckpointDefaults, resolveHyperparameters, singleRoundLambda, type EditMode, type Scope } from './options.js';
import { Statistics } from './statistics.js';

export type Protocol = 'consecutive' | 'single-round';
export const protocols: readonly Protocol[] = ['consecutive', 'single-round'];

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
  /** Text corpus for E[kkᵀ]; default: the checkpoint's stats-corpus.txt, else text made from the whole dataset. */
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

/** Cumulative wall seconds of a mode per phase: the editor's four (EditReport.seconds) and evaluation. */
export interface PhaseSeconds { values: number; keys: number; solves: number; alpha: number; evaluation: number }

export interface MetricsLine {
  mode: SweepMethod;
  protocol: Protocol;
  edits: number;
  reliability: number;
  generality: number;
  locality: number;
  average: number;
  /** Editing seconds (evaluation excluded). */
  seconds: number;
  phases: PhaseSeconds;
}

export interface SweepSummary extends Omit<MetricsLine, 'edits'> {
  n: number;
  batch: number;
  editsPerSecond: number;
  model: string;
  data: string;
}

/** Seconds spent and where a mode stands, saved with its checkpoint. */
interface ModeProgress { edits: number; seconds: number; phases?: PhaseSeconds; scores?: RecordScores[] }

/**
 * What ran a sweep, one line per invocation in `runs.jsonl` (a resumed sweep may run on another machine):
 * with settings.json, everything a result depends on.
 */
export interface SweepRun {
  startedAt: string;
  comeba: string;
  gitCommit?: string;
  node: string;
  libtorch?: string;
  cuda: boolean;
  device: string;
  dtype: string;
  threads: number;
}

function describeRun(model: HookedModel): SweepRun {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  let gitCommit: string | undefined;
  if (existsSync(join(packageRoot, '.git'))) {
    try {
      gitCommit = execFileSync('git', ['-C', packageRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      gitCommit = undefined;  // not a git checkout after all, or no git: the version says enough
    }
  }
  const native = describeNative();
  return {
    startedAt: new Date().toISOString(), comeba: pkg.version, gitCommit, node: process.version, libtorch: native.libtorch?.version,
    cuda: native.runtime?.buildInfo.cudaCompiled ?? false, device: model.info.device, dtype: model.info.dtype, threads: loadNative().getThreads(),
  };
}

export async function runSweep(options: SweepOptions): Promise<SweepSummary[]> {
  validate(options);
  // Records with an empty target cannot be edited (two in zsRE's train split): leave them out.
  const all = loadDataset(options.data, options.format, { skipEmptyTargets: true });
  if (all.length < options.n) throw new InvalidArgumentError(`${options.data} holds ${all.length} cases, fewer than --n ${options.n}`);
  const cases = all.slice(0, options.n);
  const corpus = statsCorpus(options, all);
  mkdirSync(options.out, { recursive: true });
  // One model, snapshot and E[kkᵀ] for every mode: disposing a mode's editor leaves the model unedited.
  await using model = await HookedModel.load(options.model, { device: options.device, dtype: options.dtype });
  claimOutput(options.out, sweepSettings(options, model, corpus));
  removeOrphanedTemporaries(options.out); // left by a run that was killed mid-write
  appendFileSync(join(options.out, 'runs.jsonl'), `${JSON.stringify(describeRun(model))}\n`);
  if (corpus.text !== undefined) {
    writeAtomically(corpus.path, corpus.text);
    options.onEvent?.({ type: 'stats', message: `no --stats-corpus: using text made from the ${all.length} cases of the dataset (${corpus.path})` });
  }
  const evaluator = new Evaluator(model);
  const snapshot = await evaluator.snapshot(cases.map((c) => c.record));  // before any editor attaches
  const shared: SharedSetup = { model, evaluator, snapshot, stats: await statistics(model, options, corpus.path) };
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
  const phases: PhaseSeconds = saved.phases ?? { values: 0, keys: 0, solves: 0, alpha: 0, evaluation: 0 };
  let scores: RecordScores[] = saved.scores ?? [];
  keepMetricsUpTo(options.out, mode, options.protocol, edits);
  options.onEvent?.({ type: 'mode', mode, resumedAt: edits, n: options.n });
  let started = performance.now();
  const elapsed = () => seconds + (performance.now() - started) / 1000;
  const checkpoint = async (result: EvalResult) => {
    const line: MetricsLine = {
      mode, protocol: options.protocol, edits, reliability: result.reliability, generality: result.generality,
      locality: result.locality, average: result.average, seconds: elapsed(), phases: { ...phases },
    };
    // State first, then its progress file, then the metrics line: a kill anywhere resumes at a consistent point.
    if (consecutive) await editor.save(stateDir);
    writeAtomically(progressFile, JSON.stringify({ edits, seconds: line.seconds, phases, scores: consecutive ? undefined : scores }));
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
    const report = await editor.edit(batch.map((c) => c.request));
    for (const phase of ['values', 'keys', 'solves', 'alpha'] as const) phases[phase] += report.seconds[phase];
    if (options.protocol === 'single-round') {
      const evalStart = performance.now();
      const result = await evaluator.evaluate(batch.map((c) => c.record), sliceSnapshot(snapshot, edits, edits + batch.length));
      phases.evaluation += (performance.now() - evalStart) / 1000;
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
      phases.evaluation += (performance.now() - evalStart) / 1000;
      last = await checkpoint(result);
    }
  }
  if (!last) throw new InvalidArgumentError(`no checkpoint recorded for ${mode}`);
  return {
    ...last, n: options.n, batch: options.batch, editsPerSecond: options.n / Math.max(last.seconds, 1e-9),
    model: options.model, data: options.data,
  };
}

/**
 * The corpus for E[kkᵀ]: --stats-corpus, else the checkpoint's stats-corpus.txt, else (`text`, to be written to
 * `path`) text in the dataset's own distribution: every prompt completed with its true answer. That text is made
 * from all the cases, not the first n, so the statistics (and the results) do not change with --n.
 */
function statsCorpus(options: SweepOptions, all: EditCase[]): { path: string; text?: string } {
  const path = options.statsCorpus ?? join(options.model, 'stats-corpus.txt');
  if (existsSync(path)) return { path };
  const lines = all.flatMap(({ record: r }) => [
    `${r.prompt} ${r.trueTarget ?? ''}`, r.rephrase ? `${r.rephrase} ${r.trueTarget ?? ''}` : '', r.locality ? `${r.locality.prompt} ${r.locality.answer}` : '',
  ]).filter((l) => l.trim() !== '');
  return { path: join(options.out, 'stats-corpus.txt'), text: lines.join('\n') };
}

async function statistics(model: HookedModel, options: SweepOptions, corpus: string): Promise<Statistics> {
  const layers = resolveHyperparameters(model.info, { layers: options.layers }, readCheckpointDefaults(options.model)).layers;
  return Statistics.collect(model, { corpus, layers, cacheDir: join(options.out, 'stats') });
}

/**
 * What a sweep's results depend on, each under the flag that sets it, resolved (defaults filled in as the editor
 * will fill them, files identified by content). Values with a `path` are compared without it: a moved file with
 * the same content is the same input.
 */
type SweepSettings = Record<string, unknown>;

function sweepSettings(o: SweepOptions, model: HookedModel, corpus: { path: string; text?: string }): SweepSettings {
  const defaults = readCheckpointDefaults(o.model);
  const resolved = (m: SweepMethod) => resolveHyperparameters(model.info, { ...editorSettings(m, o), layers: o.layers, alphaZ: o.alphaZ }, defaults);
  // Layers, α and the value optimisation do not depend on the mode.
  const { layers, alphaZ, mode, scope, lambda, scopeKappa, alphaFloor, ...values } = resolved(o.modes[0]);
  const settings: SweepSettings = {
    '--model': { path: resolve(o.model), fingerprint: model.fingerprint },
    '--data': { path: resolve(o.data), sha256: sha256(readFileSync(o.data)) },
    '--format': o.format,
    '--n': o.n,
    '--batch': o.batch,
    '--protocol': o.protocol,
    '--eval-every': o.evalEvery,
    '--mode': sweepMethods.filter((m) => o.modes.includes(m)),
    '--layers': layers,
    '--alpha-z': alphaZ,
    '--stats-corpus': { path: resolve(corpus.path), sha256: sha256(corpus.text ?? readFileSync(corpus.path)) },
    '--device': o.device ?? 'cpu',
    '--dtype': o.dtype ?? 'float32',
    'editor defaults from the model (comeba.json, presets)': values,
  };
  for (const m of o.modes) {
    const h = resolved(m);
    settings[`--lambda (${m})`] = h.lambda;
    if (h.scope === 'calibrated') Object.assign(settings, { '--scope-kappa': h.scopeKappa, '--alpha-floor': h.alphaFloor });
  }
  return settings;
}

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** Files a sweep writes into `out`: their presence without settings.json means results nothing can check. */
const sweepOutputs = ['metrics.jsonl', 'summary.json', ...sweepMethods];

/**
 * Starts `out` with `settings` (settings.json), or checks that the sweep it holds has them: a rerun with other
 * settings would mix results (a new λ silently ignored, a new --batch counting edits wrongly), so it is refused.
 */
function claimOutput(out: string, settings: SweepSettings): void {
  const file = join(out, 'settings.json');
  const afresh = `pass another --out, or delete ${out}, to start afresh`;
  if (!existsSync(file)) {
    const found = sweepOutputs.filter((f) => existsSync(join(out, f)));
    if (found.length > 0) throw new InvalidArgumentError(`${out} holds sweep results (${found.join(', ')}) but no settings.json to check this run's against: ${afresh}`);
    writeAtomically(file, `${JSON.stringify(settings, null, 2)}\n`);
    return;
  }
  let saved: SweepSettings;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as SweepSettings;
  } catch (err) {
    throw new InvalidArgumentError(`${file} is not valid JSON: ${afresh}`, { cause: err });
  }
  const comparable = (v: unknown) => JSON.stringify(v, (key, x) => (key === 'path' ? undefined : x));
  const differing = [...new Set([...Object.keys(saved), ...Object.keys(settings)])].filter((k) => comparable(saved[k]) !== comparable(settings[k]));
  if (differing.length === 0) return;
  const changes = differing.map((k) => `${k} ${show(saved[k])} → ${show(settings[k])}`).join('; ');
  throw new InvalidArgumentError(`${out} holds a sweep with other settings (${changes}): rerun with the settings in ${file} to resume it, or ${afresh}`);
}

/** A setting as the user knows it: a file by its path and a short digest, anything else as JSON. */
function show(value: unknown): string {
  if (value === undefined) return 'unset';
  if (typeof value === 'object' && value !== null && 'path' in value) {
    const { path, ...id } = value as Record<string, unknown>;
    return `${String(path)} (${Object.entries(id).map(([k, x]) => `${k} ${String(x).slice(0, 12)}`).join(', ')})`;
  }
  return JSON.stringify(value);
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
  if (new Set(o.modes).size !== o.modes.length) throw new InvalidArgumentError(`--mode names a mode twice: ${o.modes.join(',')}`);
  if (!protocols.includes(o.protocol)) throw new InvalidArgumentError(`--protocol must be one of ${protocols.join(', ')}, not '${String(o.protocol)}'`);
  // A missing corpus given on purpose is a mistake, not a reason to fall back to another one.
  if (o.statsCorpus !== undefined && !(existsSync(o.statsCorpus) && statSync(o.statsCorpus).isFile())) {
    throw new InvalidArgumentError(`--stats-corpus ${o.statsCorpus}: no such file`);
  }
  // mkdir would fail later with ENOTDIR: say which file is in the way.
  for (let dir = resolve(o.out); ; dir = dirname(dir)) {
    const stat = existsSync(dir) ? statSync(dir) : undefined;
    if (stat && !stat.isDirectory()) throw new InvalidArgumentError(`--out ${o.out}: ${dir} is a file, not a folder; pass another --out`);
    if (stat || dir === dirname(dir)) break;
  }
}
