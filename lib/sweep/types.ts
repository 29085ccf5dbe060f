// The sweep's data: its options and events, and the lines and files it writes (metrics.jsonl, batches.jsonl,
// summary.json), read by the report page too. Imports nothing of sweep/ itself.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EditMode, ReEdit, Scope, ValueOptions } from '../edit/options.js';
import type { DatasetFormat } from '../eval/datasets.js';
import type { Decisions, Device, Dtype } from '../model/types.js';
import type { StatisticsProvenance } from '../statistics/Statistics.js';

export type Protocol = 'consecutive' | 'single-round';
export const protocols: readonly Protocol[] = ['consecutive', 'single-round'];

/**
 * What a sweep compares: the edit modes, and comeba-hk with one option of ours (docs/method.md "Editing scope", "Re-edits"),
 * named comeba-hk+<option>; the table gives each method's editor options, in the order reports show them.
 */
export const sweepMethodOptions = {
  'comeba-hk': { mode: 'comeba-hk', scope: 'paper', reedit: 'none' },
  'comeba-hk+carried': { mode: 'comeba-hk', scope: 'carried', reedit: 'none' },
  'comeba-hk+calibrated': { mode: 'comeba-hk', scope: 'calibrated', reedit: 'none' },
  'comeba-hk+studentized': { mode: 'comeba-hk', scope: 'studentized', reedit: 'none' },
  'comeba-hk+retarget': { mode: 'comeba-hk', scope: 'paper', reedit: 'retarget' },
  'comeba-wo-hk': { mode: 'comeba-wo-hk', scope: 'paper', reedit: 'none' },
  memit: { mode: 'memit', scope: 'paper', reedit: 'none' },
} as const satisfies Record<string, { mode: EditMode; scope: Scope; reedit: ReEdit }>;
export type SweepMethod = keyof typeof sweepMethodOptions;
export const sweepMethods = Object.keys(sweepMethodOptions) as readonly SweepMethod[];

/** Metrics a sweep computes unless told to skip them (the teacher-forced ones are always computed). */
export type OptionalMetric = 'generation' | 'perplexity' | 'fluency';
export const optionalMetrics: readonly OptionalMetric[] = ['generation', 'perplexity', 'fluency'];

/** When a consecutive sweep takes fluency: at its last checkpoint (the default), or at every one. */
export type FluencyAt = 'end' | 'checkpoints';
export const fluencyTimes: readonly FluencyAt[] = ['end', 'checkpoints'];

/** How the sweep's extra metrics are taken, one table. */
export const evaluationDefaults = {
  /** Generation-based metrics: tokens generated beyond the target's length. */
  extraTokens: 2,
  /**
   * Fluency, at the last checkpoint unless `fluencyAt` says every one (through validated hooks with exact
   * decisions a 100-token generation is recomputed whenever a new token flips an earlier swap decision: 7–8× the
   * unedited cost on the testbed; settled decisions cost about the unedited one): the prompts of the first this
   * many cases, each continued by `fluencyTokens` greedy tokens (MEMIT: 100).
   */
  fluencyPrompts: 50,
  fluencyTokens: 100,
  /** Held-out perplexity without --heldout: this share of the statistics corpus's documents, at most `heldoutMax`, from its end. */
  heldoutShare: 0.05,
  heldoutMax: 200,
} as const;

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
  /** The value optimisation's settings given on the command line (the rest from comeba.json, the preset, the defaults). */
  values?: Partial<ValueOptions>;
  /** Text corpus for E[kkᵀ]; default: the checkpoint's stats-corpus.txt (required without this or `stats`). */
  statsCorpus?: string;
  /** A statistics file (comeba stats, or merged shards) instead of a corpus; perplexity then needs `heldout`. */
  stats?: string;
  /** Where statistics collected from `statsCorpus` are cached (default <out>/stats): sweeps of one model and corpus can share one. */
  statsCache?: string;
  /** Held-out text for perplexity; default: the last documents of the statistics corpus, which the statistics then leave out. */
  heldout?: string;
  /** Optional metrics not to compute. */
  skip?: OptionalMetric[];
  /** Consecutive sweeps: fluency at the last checkpoint (default) or at every one. */
  fluencyAt?: FluencyAt;
  /** How the validated hooks decide while fluency's text is generated (default exact; docs/method.md "Generation"). */
  fluencyDecisions?: Decisions;
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
  /** The paper's teacher-forced metrics (EasyEdit's), 0–100. */
  reliability: number;
  generality: number;
  locality: number;
  average: number;
  /** Teacher-forced accuracy on multi-hop questions (records that have them). */
  portability?: number;
  /** Generation-based reliability, generality, locality, their average and portability (unless skipped). */
  generated?: { reliability: number; generality: number; locality: number; average: number; portability?: number };
  /** Consecutive: perplexity on the held-out text, and its ratio to the unedited model's (unless skipped). */
  perplexity?: number;
  perplexityRatio?: number;
  /** Consecutive, at the last checkpoint (every one with --fluency-at checkpoints): MEMIT's n-gram entropy of greedy generations, and the unedited model's (unless skipped). */
  fluency?: number;
  fluencyBefore?: number;
  /** Editing seconds (evaluation excluded). */
  seconds: number;
  phases: PhaseSeconds;
  /** Consecutive: bytes this checkpoint's editor save wrote (the first save of a run writes the full state). */
  stateBytes?: number;
  /** SHA-256 of settings.json, and the line of runs.jsonl of the invocation that wrote this line (0-based). */
  settings: string;
  run: number;
}

export interface SweepSummary extends Omit<MetricsLine, 'edits' | 'settings' | 'run' | 'stateBytes'> {
  n: number;
  batch: number;
  editsPerSecond: number;
  model: string;
  data: string;
}

/** One committed batch: its phases' seconds and each edited layer's α after it. */
export interface BatchLine {
  mode: SweepMethod;
  protocol: Protocol;
  edits: number;
  seconds: { values: number; keys: number; solves: number; alpha: number; total: number };
  alpha: { layer: number; alpha: number }[];
}

/** summary.json: the results with everything needed to reproduce them. */
export interface SweepSummaryFile {
  format: 'comeba-sweep-summary/2';
  /** settings.json's content, and its SHA-256 (what each metrics line names). */
  settings: SweepSettings;
  settingsSha256: string;
  runs: SweepRun[];
  statistics: StatisticsProvenance;
  /** The records evaluated: the dataset's first n (ids of the first and last). */
  records: { first: string; last: string; count: number };
  /** The unedited model's held-out perplexity and fluency, what the ratios compare with. */
  baseline: Baseline;
  evaluation: typeof evaluationDefaults & { skipped: OptionalMetric[]; heldoutDocuments?: number; fluencyAt: FluencyAt; fluencyDecisions: Decisions };
  modes: (SweepSummary & { contextTemplates: string[] })[];
}

export interface Baseline { perplexity?: number; fluency?: number }

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

/** settings.json: every flag and default a result depends on. */
export type SweepSettings = Record<string, unknown>;

/** The lines of a JSON-lines file that parse (a kill may leave a torn last line); none when it is missing. */
export function readJsonLines<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').flatMap((line) => {
    try {
      return line.trim() ? [JSON.parse(line) as T] : [];
    } catch {
      return [];
    }
  });
}

export const readMetrics = (out: string): MetricsLine[] => readJsonLines<MetricsLine>(join(out, 'metrics.jsonl'));

