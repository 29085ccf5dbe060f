// `comeba sweep`: the paper's editing protocol on a dataset for one or more modes, with a progress bar,
// metrics.jsonl per checkpoint, summary.json, a table and a chart. Rerun the same command to resume.

import { join } from 'node:path';
import { parseSweepArgs, sweepUsage } from '../sweep/args.js';
import { runSweep, type SweepEvent, type SweepSummary } from '../sweep/sweep.js';

export const summary = 'edit a dataset consecutively (or single-round) and report reliability, generality, locality';

export async function run(argv: string[]): Promise<number> {
  const options = parseSweepArgs(argv);
  if (!options) {
    console.log(sweepUsage);
    return 0;
  }
  const progress = new ProgressBar(process.stdout.isTTY === true);
  const summaries = await runSweep({ ...options, onEvent: (e) => progress.update(e) });
  progress.done();
  console.log(formatTable(summaries));
  const out = options.out;
  console.log(`\nmetrics ${join(out, 'metrics.jsonl')}\nsummary ${join(out, 'summary.json')}\nchart   ${join(out, 'chart.svg')}\nreport  ${join(out, 'report.html')}`);
  return 0;
}

/**
 * A one-line bar with edits/s and ETA on a terminal; plain lines at checkpoints otherwise. The rate is wall-clock
 * edits per second since the mode started (or resumed), evaluations included, so the ETA is when it will be done.
 */
export class ProgressBar {
  #tty: boolean;
  #write: (text: string) => unknown;
  #now: () => number;
  #mode = '';
  #startEdits = 0;
  #startMs = 0;

  constructor(tty: boolean, write: (text: string) => unknown = (text) => process.stdout.write(text), now = () => performance.now()) {
    this.#tty = tty;
    this.#write = write;
    this.#now = now;
  }

  update(e: SweepEvent): void {
    if (e.type === 'stats') return this.#line(`  ${e.message}`);
    if (e.type === 'mode') {
      this.#mode = e.mode;
      this.#startEdits = e.resumedAt;
      this.#startMs = this.#now();
      return this.#line(`${e.mode}: ${e.resumedAt > 0 ? `resuming at ${e.resumedAt}` : 'starting'} of ${e.n} edits`);
    }
    if (e.type === 'checkpoint') {
      const m = e.metrics;
      const generated = m.generated ? `  | generated rel ${m.generated.reliability.toFixed(1)}  gen ${m.generated.generality.toFixed(1)}  loc ${m.generated.locality.toFixed(1)}` : '';
      const general = m.perplexityRatio !== undefined ? `  | ppl ×${m.perplexityRatio.toFixed(3)}` : '';
      return this.#line(`  ${m.mode} @ ${String(m.edits).padStart(5)} edits  rel ${m.reliability.toFixed(1)}  gen ${m.generality.toFixed(1)}  loc ${m.locality.toFixed(1)}  avg ${m.average.toFixed(1)}${generated}${general}  (${m.seconds.toFixed(0)} s)`);
    }
    if (!this.#tty) return;
    const seconds = (this.#now() - this.#startMs) / 1000;
    const done = e.edits - this.#startEdits;
    // No rate before a measurable interval has passed (a resumed mode's first batch can be instant).
    const timing = done > 0 && seconds >= 0.05
      ? `${(done / seconds).toFixed(1)} edits/s  ETA ${formatSeconds(((e.n - e.edits) * seconds) / done)}`
      : 'measuring';
    const width = 30;
    const filled = Math.round((e.edits / e.n) * width);
    this.#write(`\r  ${this.#mode} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${e.edits}/${e.n}  ${timing}   `);
  }

  done(): void {
    if (this.#tty) this.#write('\r\x1b[K');
  }

  #line(text: string): void {
    if (this.#tty) this.#write('\r\x1b[K');
    this.#write(`${text}\n`);
  }
}

/** 42 s, 7 min 05 s, 2 h 03 min. */
export function formatSeconds(s: number): string {
  const t = Math.round(s);
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} min ${String(t % 60).padStart(2, '0')} s`;
  return `${Math.floor(t / 3600)} h ${String(Math.floor((t % 3600) / 60)).padStart(2, '0')} min`;
}

/** The results: teacher-forced and (where computed) generation-based metrics side by side. */
function formatTable(rows: SweepSummary[]): string {
  const extra: [string, (r: SweepSummary) => number | undefined][] = [
    ['gen-rel', (r) => r.generated?.reliability], ['gen-gen', (r) => r.generated?.generality], ['gen-loc', (r) => r.generated?.locality],
    ['gen-avg', (r) => r.generated?.average], ['portab.', (r) => r.portability], ['gen-port.', (r) => r.generated?.portability],
    ['ppl-ratio', (r) => r.perplexityRatio], ['fluency', (r) => r.fluency],
  ];
  const shown = extra.filter(([, get]) => rows.some((r) => get(r) !== undefined));
  const header = ['mode', 'n', 'batch', 'reliability', 'generality', 'locality', 'average', ...shown.map(([h]) => h), 'seconds', 'edits/s'];
  const body = rows.map((r) => [
    r.mode, String(r.n), String(r.batch),
    ...[r.reliability, r.generality, r.locality, r.average, ...shown.map(([, get]) => get(r) ?? Number.NaN), r.seconds, r.editsPerSecond].map((x) => x.toFixed(2)),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return ['', fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
}
