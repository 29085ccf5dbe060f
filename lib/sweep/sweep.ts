// A sweep: the paper's protocol on a dataset, for one or more modes, resumable after a kill.
//   consecutive:  edit the first n cases in batches with no roll-back; evaluate the cases edited so far every
//                 `evalEvery` edits and at the end (evaluation never changes the editor).
//   single-round: edit each batch, evaluate it, roll back (the paper's Table 1 protocol).
// Every checkpoint reports the paper's teacher-forced metrics and, unless skipped, the generation-based ones
// (and portability where the records have multi-hop questions); consecutive sweeps also held-out perplexity (and
// fluency, at the end or at every checkpoint), each against the unedited model's.
// Layout of `out`: settings.json (what the results depend on; a rerun resumes only with the same), runs.jsonl
// (what ran it: versions, device, threads; a line per invocation), metrics.jsonl (one line per checkpoint, with
// seconds per phase), batches.jsonl (seconds and α per batch), summary.json (the results with their protocol
// and provenance), chart.svg, report.html, and per mode a folder with the editor state (consecutive) or the
// scores so far (single-round) as of the last checkpoint, and records.json (each record's scores and answers).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describeNative, loadNative, packageRoot } from '../addon/native.js';
import { oneOf } from '../args.js';
import { ConsecutiveEditor } from '../edit/ConsecutiveEditor.js';
import { readCheckpointDefaults, resolveHyperparameters, singleRoundLambda, type EditorHyperparameters } from '../edit/options.js';
import { InvalidArgumentError } from '../errors.js';
import { loadDataset, type EditCase } from '../eval/datasets.js';
import { Evaluator, summarise, type EvalResult, type RecordScores, type Snapshot } from '../eval/Evaluator.js';
import { removeOrphanedTemporaries, writeAtomically } from '../io/files.js';
import { acquireLock, lockName } from '../io/lock.js';
import { HookedModel } from '../model/HookedModel.js';
import { decisionRules, type ModelInfo } from '../model/types.js';
import { readDocuments, Statistics } from '../statistics/Statistics.js';
import { renderChart } from './chart.js';
import { writeReport } from './report.js';
import {
  evaluationDefaults, fluencyTimes, optionalMetrics, protocols, readJsonLines, readMetrics, sweepMethodOptions, sweepMethods, type Baseline, type BatchLine, type MetricsLine,
  type PhaseSeconds, type Protocol, type SweepMethod, type SweepOptions, type SweepRun, type SweepSettings, type SweepSummary, type SweepSummaryFile,
} from './types.js';

export * from './types.js';

/**
 * The editor a sweep gives each method, resolved once per run (comeba.json read once): the method's mode and
 * scope and the sweep's flags over the checkpoint's defaults, and single-round COMEBA-HK's λ (the paper's 5000)
 * below those — resolveHyperparameters decides the precedence.
 */
export function editorsOf(
  o: Pick<SweepOptions, 'model' | 'modes' | 'protocol' | 'lambda' | 'layers' | 'alphaZ' | 'scopeKappa' | 'alphaFloor' | 'values'>, info: ModelInfo,
): Record<SweepMethod, EditorHyperparameters> {
  const defaults = readCheckpointDefaults(o.model);
  return Object.fromEntries(o.modes.map((method) => {
    const { mode, scope, reedit } = sweepMethodOptions[method];
    const calibrated = scope === 'calibrated' ? { scopeKappa: o.scopeKappa, alphaFloor: o.alphaFloor } : {};
    const given = { mode, scope, reedit, ...calibrated, lambda: o.lambda, layers: o.layers, alphaZ: o.alphaZ, ...o.values };
    const protocolLambda = o.protocol === 'single-round' ? singleRoundLambda[mode] : undefined;
    return [method, resolveHyperparameters(info, given, defaults, protocolLambda)];
  })) as Record<SweepMethod, EditorHyperparameters>;
}

/** Seconds spent and where a mode stands, saved with its checkpoint. */
interface ModeProgress { edits: number; seconds: number; phases?: PhaseSeconds; scores?: RecordScores[] }

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
  mkdirSync(options.out, { recursive: true });
  // One sweep per --out at a time: two would both append to metrics.jsonl and save the same editors.
  const release = acquireLock(join(options.out, lockName), `the sweep in ${options.out}`);
  try {
    return await runLocked(options, all.slice(0, options.n));
  } finally {
    release();
  }
}

async function runLocked(options: SweepOptions, cases: EditCase[]): Promise<SweepSummary[]> {
  const skip = options.skip ?? [];
  const corpus = corpora(options);
  // One model, snapshot and E[kkᵀ] for every mode: disposing a mode's editor leaves the model unedited.
  await using model = await HookedModel.load(options.model, { device: options.device, dtype: options.dtype });
  const editors = editorsOf(options, model.info);
  const settings = sweepSettings(options, model, corpus, editors);
  claimOutput(options.out, settings);
  removeOrphanedTemporaries(options.out); // left by a run that was killed mid-write
  appendFileSync(join(options.out, 'runs.jsonl'), `${JSON.stringify(describeRun(model))}\n`);
  for (const file of new Set([corpus.source, corpus.stats, corpus.heldout])) if (file?.text !== undefined) writeAtomically(file.path, file.text);
  if (corpus.heldout && !options.heldout) {
    options.onEvent?.({ type: 'stats', message: `held-out perplexity on the last ${corpus.heldout.documents.length} documents of the statistics corpus, which the statistics leave out` });
  }
  const evaluator = new Evaluator(model, { generation: !skip.includes('generation'), extraTokens: evaluationDefaults.extraTokens });
  // Before any editor attaches: the unedited model's predictions, perplexity and fluency.
  const snapshot = await evaluator.snapshot(cases.map((c) => c.record));
  const fluencyPrompts = cases.slice(0, evaluationDefaults.fluencyPrompts).map((c) => c.record.prompt);
  const measure = async (withFluency: boolean): Promise<Baseline> => ({
    perplexity: corpus.heldout ? (await evaluator.perplexity(corpus.heldout.documents)).perplexity : undefined,
    fluency: skip.includes('fluency') || !withFluency ? undefined
      : (await evaluator.fluency(fluencyPrompts, { maxNewTokens: evaluationDefaults.fluencyTokens, decisions: options.fluencyDecisions })).fluency,
  });
  // Perplexity and fluency are taken in consecutive sweeps only (single-round rolls every batch back).
  const baseline = options.protocol === 'consecutive' ? await measure(true) : {};
  const shared: SharedSetup = {
    model, evaluator, snapshot, measure, baseline, editors, stats: await statistics(model, options, corpus.stats.path, editors[options.modes[0]].layers),
    // settings.json as on disk: a resumed sweep's file was written by its first run (paths may differ from ours).
    provenance: { settings: sha256(readFileSync(join(options.out, 'settings.json'))), run: readJsonLines<SweepRun>(join(options.out, 'runs.jsonl')).length - 1 },
  };
  const summaries: (SweepSummary & { contextTemplates: string[] })[] = [];
  for (const mode of options.modes) summaries.push(await runMode(options, cases, mode, shared));
  const summary: SweepSummaryFile = {
    format: 'comeba-sweep-summary/2', settings: JSON.parse(readFileSync(join(options.out, 'settings.json'), 'utf8')) as SweepSettings,
    settingsSha256: shared.provenance.settings,
    runs: readJsonLines<SweepRun>(join(options.out, 'runs.jsonl')), statistics: shared.stats.provenance,
    records: { first: cases[0].id, last: cases[cases.length - 1].id, count: cases.length }, baseline,
    evaluation: {
      ...evaluationDefaults, skipped: skip, heldoutDocuments: corpus.heldout?.documents.length,
      fluencyAt: options.fluencyAt ?? 'end', fluencyDecisions: options.fluencyDecisions ?? 'exact',
    },
    modes: summaries,
  };
  writeAtomically(join(options.out, 'summary.json'), JSON.stringify(summary, null, 2));
  const series = options.modes.map((mode) => ({ label: mode, points: readMetrics(options.out).filter((m) => m.mode === mode && m.protocol === options.protocol) }));
  writeAtomically(join(options.out, 'chart.svg'), renderChart(series, { title: `${options.protocol} editing, batch ${options.batch}` }));
  writeReport(options.out);
  return summaries.map(({ contextTemplates, ...s }) => s);
}

interface SharedSetup {
  model: HookedModel;
  /** Each method's editor settings, resolved. */
  editors: Record<SweepMethod, EditorHyperparameters>;
  evaluator: Evaluator;
  snapshot: Snapshot;
  stats: Statistics;
  /** Held-out perplexity (and fluency) of the model as it is now (through the hooks), and before any edit. */
  measure: (withFluency: boolean) => Promise<Baseline>;
  baseline: Baseline;
  provenance: { settings: string; run: number };
}

async function runMode(options: SweepOptions, cases: EditCase[], mode: SweepMethod, shared: SharedSetup): Promise<SweepSummary & { contextTemplates: string[] }> {
  const { model, evaluator, snapshot, stats, baseline, editors } = shared;
  const dir = join(options.out, mode);
  mkdirSync(dir, { recursive: true });
  const records = cases.map((c) => c.record);
  const progressFile = join(dir, 'progress.json');
  const saved: ModeProgress = existsSync(progressFile) ? JSON.parse(readFileSync(progressFile, 'utf8')) : { edits: 0, seconds: 0 };
  const consecutive = options.protocol === 'consecutive';
  const stateDir = join(dir, 'editor');
  await using editor = consecutive && existsSync(join(stateDir, 'editor.json'))
    ? await ConsecutiveEditor.load(model, stateDir, { stats })
    : await ConsecutiveEditor.create(model, { ...editors[mode], stats });
  // Consecutive: the saved editor state is the truth (it is written first at a checkpoint).
  let edits = consecutive ? Math.min(editor.step * options.batch, options.n) : saved.edits;
  let seconds = saved.seconds;
  const phases: PhaseSeconds = saved.phases ?? { values: 0, keys: 0, solves: 0, alpha: 0, evaluation: 0 };
  let scores: RecordScores[] = saved.scores ?? [];
  keepLinesUpTo(options.out, 'metrics.jsonl', mode, options.protocol, edits);
  keepLinesUpTo(options.out, 'batches.jsonl', mode, options.protocol, edits);
  options.onEvent?.({ type: 'mode', mode, resumedAt: edits, n: options.n });
  let started = performance.now();
  const elapsed = () => seconds + (performance.now() - started) / 1000;
  const checkpoint = async ({ result, now }: Evaluation) => {
    const line = metricsLine({ mode, protocol: options.protocol, edits, seconds: elapsed(), phases: { ...phases }, ...shared.provenance }, result, now, baseline);
    // State first, then its progress file, then the metrics line: a kill anywhere resumes at a consistent point.
    if (consecutive) line.stateBytes = (await editor.save(stateDir)).bytes;
    writeAtomically(progressFile, JSON.stringify({ edits, seconds: line.seconds, phases, scores: consecutive ? undefined : scores }));
    writeAtomically(join(dir, 'records.json'), JSON.stringify(cases.slice(0, edits).map((c, i) => ({ id: c.id, ...c.record, scores: result.records[i] }))));
    appendFileSync(join(options.out, 'metrics.jsonl'), `${JSON.stringify(line)}\n`);
    options.onEvent?.({ type: 'checkpoint', mode, metrics: line });
    return line;
  };

  // Consecutive: the edited model now; single-round: the scores each batch got before its roll-back.
  const evaluateNow = async (): Promise<Evaluation> => consecutive
    ? { result: await evaluator.evaluate(records.slice(0, edits), sliceSnapshot(snapshot, 0, edits)), now: await shared.measure(edits === options.n || options.fluencyAt === 'checkpoints') }
    : { result: summarise(scores), now: {} };
  const recorded = () => readMetrics(options.out).find((m) => m.mode === mode && m.protocol === options.protocol && m.edits === edits);
  // Killed after saving a checkpoint's state but before its metrics line: write the line now.
  let last = recorded();
  if (edits > 0 && !last) last = await checkpoint(await evaluateNow());
  while (edits < options.n) {
    const batch = cases.slice(edits, Math.min(edits + options.batch, options.n));
    const report = await editor.edit(batch.map((c) => c.request));
    for (const phase of ['values', 'keys', 'solves', 'alpha'] as const) phases[phase] += report.seconds[phase];
    const batchLine: BatchLine = {
      mode, protocol: options.protocol, edits: edits + batch.length, seconds: report.seconds, alpha: report.layers.map((l) => ({ layer: l.layer, alpha: l.alphaAfter })),
    };
    appendFileSync(join(options.out, 'batches.jsonl'), `${JSON.stringify(batchLine)}\n`);
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
  const { edits: _, settings: _s, run: _r, stateBytes: _b, ...result } = last;
  return {
    ...result, n: options.n, batch: options.batch, editsPerSecond: options.n / Math.max(last.seconds, 1e-9),
    model: options.model, data: options.data, contextTemplates: [...editor.contextTemplates],
  };
}

interface Evaluation { result: EvalResult; now: Baseline }

/** An evaluation point's line of metrics.jsonl: the scores, and perplexity and fluency against the unedited model's. */
function metricsLine(
  base: Pick<MetricsLine, 'mode' | 'protocol' | 'edits' | 'seconds' | 'phases' | 'settings' | 'run'>, result: EvalResult, now: Baseline, baseline: Baseline,
): MetricsLine {
  const { mode, protocol, edits, seconds, phases, settings, run } = base;
  const line: MetricsLine = {
    mode, protocol, edits, reliability: result.reliability, generality: result.generality, locality: result.locality, average: result.average,
    seconds, phases, settings, run,
  };
  if (!Number.isNaN(result.portability)) line.portability = result.portability;
  if (result.generated) {
    const { portability, ...g } = result.generated;
    line.generated = Number.isNaN(portability) ? g : { ...g, portability };
  }
  if (now.perplexity !== undefined) Object.assign(line, { perplexity: now.perplexity, perplexityRatio: now.perplexity / baseline.perplexity! });
  if (now.fluency !== undefined) Object.assign(line, { fluency: now.fluency, fluencyBefore: baseline.fluency });
  return line;
}

/** A corpus file of the sweep: where it is, and its text when the sweep writes it there. */
interface CorpusFile { path: string; text?: string }

interface Corpora {
  /** The statistics corpus as given, what settings.json identifies. */
  source: CorpusFile;
  /** What the statistics read: `source`, less the held-out documents when those come from it. */
  stats: CorpusFile;
  /** Held-out text for perplexity (none when skipped). */
  heldout?: CorpusFile & { documents: string[] };
}

/**
 * The corpus for E[kkᵀ]: --stats-corpus, else the checkpoint's stats-corpus.txt (the testbed ships one), never the
 * dataset's own text, which would put the evaluated prompts into the statistics. The held-out text: --heldout,
 * else the corpus's last documents (evaluationDefaults), which the statistics then do not see (both parts written
 * as JSON lines).
 */
function corpora(options: SweepOptions): Corpora {
  if (options.stats) {
    const source = { path: options.stats };
    if (options.skip?.includes('perplexity')) return { source, stats: source };
    if (!options.heldout) throw new InvalidArgumentError(`--stats ${options.stats} brings no text to hold out for perplexity: pass --heldout FILE or --skip perplexity`);
    const documents = readDocuments(readFileSync(options.heldout, 'utf8'), options.heldout);
    if (documents.length === 0) throw new InvalidArgumentError(`--heldout ${options.heldout} holds no text`);
    return { source, stats: source, heldout: { path: options.heldout, documents } };
  }
  const source: CorpusFile = { path: options.statsCorpus ?? join(options.model, 'stats-corpus.txt') };
  if (!existsSync(source.path)) {
    throw new InvalidArgumentError(
      `--model ${options.model} has no stats-corpus.txt: pass --stats-corpus FILE (text in the model's training distribution, e.g. WikiText) or --stats FILE (comeba stats)`,
    );
  }
  if (options.skip?.includes('perplexity')) return { source, stats: source };
  if (options.heldout) {
    const documents = readDocuments(readFileSync(options.heldout, 'utf8'), options.heldout);
    if (documents.length === 0) throw new InvalidArgumentError(`--heldout ${options.heldout} holds no text`);
    return { source, stats: source, heldout: { path: options.heldout, documents } };
  }
  const documents = readDocuments(source.text ?? readFileSync(source.path, 'utf8'), source.path);
  const k = Math.min(evaluationDefaults.heldoutMax, Math.floor(documents.length * evaluationDefaults.heldoutShare));
  if (k < 1) throw new InvalidArgumentError(`the statistics corpus ${source.path} has too few documents (${documents.length}) to hold some out: pass --heldout FILE or --skip perplexity`);
  const jsonl = (docs: string[]) => docs.map((text) => JSON.stringify({ text })).join('\n') + '\n';
  const heldout = documents.slice(-k);
  return {
    source,
    stats: { path: join(options.out, 'stats-corpus.jsonl'), text: jsonl(documents.slice(0, -k)) },
    heldout: { path: join(options.out, 'heldout.jsonl'), text: jsonl(heldout), documents: heldout },
  };
}

// Layers do not depend on the method.
async function statistics(model: HookedModel, options: SweepOptions, corpus: string, layers: number[]): Promise<Statistics> {
  if (options.stats) return Statistics.load(model, options.stats);
  return Statistics.collect(model, { corpus, layers, cacheDir: options.statsCache ?? join(options.out, 'stats') });
}

/**
 * What a sweep's results depend on, each under the flag that sets it, resolved (defaults filled in as the editor
 * will fill them, files identified by content). Values with a `path` are compared without it: a moved file with
 * the same content is the same input.
 */
function sweepSettings(o: SweepOptions, model: HookedModel, corpus: Corpora, editors: Record<SweepMethod, EditorHyperparameters>): SweepSettings {
  const resolved = (m: SweepMethod) => editors[m];
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
    [o.stats ? '--stats' : '--stats-corpus']: { path: resolve(corpus.source.path), sha256: corpus.source.text !== undefined ? sha256(corpus.source.text) : sha256File(corpus.source.path) },
    '--heldout': corpus.heldout ? { path: resolve(corpus.heldout.path), sha256: sha256(corpus.heldout.text ?? readFileSync(corpus.heldout.path)) } : 'none',
    '--skip': optionalMetrics.filter((m) => o.skip?.includes(m)),
    // only where not the default, so that folders of sweeps from before these flags resume
    ...(o.fluencyAt === 'checkpoints' ? { '--fluency-at': o.fluencyAt } : {}),
    ...(o.fluencyDecisions === 'settled' ? { '--fluency-decisions': o.fluencyDecisions } : {}),
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

/** A file's SHA-256 read in chunks (statistics files can be many gigabytes, past what one Buffer holds). */
function sha256File(path: string): string {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(1 << 24);
  const fd = openSync(path, 'r');
  try {
    for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0;) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Files a sweep writes into `out`: their presence without settings.json means results nothing can check. */
const sweepOutputs = ['metrics.jsonl', 'batches.jsonl', 'summary.json', ...sweepMethods];

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
  const slice: Snapshot = { locality: snapshot.locality.slice(from, to) };
  if (snapshot.generatedLocality) slice.generatedLocality = snapshot.generatedLocality.slice(from, to);
  return slice;
}

/** Drops this mode's lines in `name` beyond the resumed checkpoint (and any torn line). */
function keepLinesUpTo(out: string, name: 'metrics.jsonl' | 'batches.jsonl', mode: SweepMethod, protocol: Protocol, edits: number): void {
  const file = join(out, name);
  const lines = readJsonLines<{ mode: SweepMethod; protocol: Protocol; edits: number }>(file).filter((m) => !(m.mode === mode && m.protocol === protocol && m.edits > edits));
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
  if (o.stats !== undefined && o.statsCorpus !== undefined) throw new InvalidArgumentError('--stats and --stats-corpus are two sources of E[kkᵀ]: pass one');
  for (const [flag, file] of [['--stats-corpus', o.statsCorpus], ['--stats', o.stats], ['--heldout', o.heldout]] as const) {
    if (file !== undefined && !(existsSync(file) && statSync(file).isFile())) throw new InvalidArgumentError(`${flag} ${file}: no such file`);
  }
  for (const m of o.skip ?? []) {
    if (!optionalMetrics.includes(m)) throw new InvalidArgumentError(`--skip takes ${optionalMetrics.join(', ')}, not '${String(m)}'`);
  }
  if (o.fluencyAt !== undefined) oneOf('--fluency-at', String(o.fluencyAt), fluencyTimes);
  if (o.fluencyDecisions !== undefined) oneOf('--fluency-decisions', String(o.fluencyDecisions), decisionRules);
  if (o.fluencyAt === 'checkpoints' && (o.skip?.includes('fluency') || o.protocol === 'single-round')) {
    throw new InvalidArgumentError(`--fluency-at checkpoints takes fluency in a consecutive sweep: not with ${o.protocol === 'single-round' ? '--protocol single-round' : '--skip fluency'}`);
  }
  // mkdir would fail later with ENOTDIR: say which file is in the way.
  for (let dir = resolve(o.out); ; dir = dirname(dir)) {
    const stat = existsSync(dir) ? statSync(dir) : undefined;
    if (stat && !stat.isDirectory()) throw new InvalidArgumentError(`--out ${o.out}: ${dir} is a file, not a folder; pass another --out`);
    if (stat || dir === dirname(dir)) break;
  }
}
