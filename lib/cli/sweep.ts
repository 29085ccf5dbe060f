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

/** A one-line bar with edits/s and ETA on a terminal; plain lines at checkpoints otherwise. */
class ProgressBar {
  #tty: boolean;
  #mode = '';
  #startEdits = 0;
  #startSeconds = 0;

  constructor(tty: boolean) {
    this.#tty = tty;
  }

  update(e: SweepEvent): void {
    if (e.type === 'stats') return this.#line(`  ${e.message}`);
    if (e.type === 'mode') {
      this.#mode = e.mode;
      this.#startEdits = e.resumedAt;
      this.#startSeconds = -1;
      return this.#line(`${e.mode}: ${e.resumedAt > 0 ? `resuming at ${e.resumedAt}` : 'starting'} of ${e.n} edits`);
    }
    if (e.type === 'checkpoint') {
      const m = e.metrics;
      const generated = m.generated ? `  | generated rel ${m.generated.reliability.toFixed(1)}  gen ${m.generated.generality.toFixed(1)}  loc ${m.generated.locality.toFixed(1)}` : '';
      const general = m.perplexityRatio !== undefined ? `  | ppl ×${m.perplexityRatio.toFixed(3)}` : '';
      return this.#line(`  ${m.mode} @ ${String(m.edits).padStart(5)} edits  rel ${m.reliability.toFixed(1)}  gen ${m.generality.toFixed(1)}  loc ${m.locality.toFixed(1)}  avg ${m.average.toFixed(1)}${generated}${general}  (${m.seconds.toFixed(0)} s)`);
    }
    if (!this.#tty) return;
    if (this.#startSeconds < 0) this.#startSeconds = e.seconds - 1e-9;
    const rate = (e.edits - this.#startEdits) / Math.max(e.seconds - this.#startSeconds, 1e-9);
    const eta = (e.n - e.edits) / Math.max(rate, 1e-9);
    const width = 30;
    const filled = Math.round((e.edits / e.n) * width);
    process.stdout.write(`\r  ${this.#mode} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${e.edits}/${e.n}  ${rate.toFixed(1)} edits/s  ETA ${eta.toFixed(0)} s   `);
  }

  done(): void {
    if (this.#tty) process.stdout.write('\r\x1b[K');
  }

  #line(text: string): void {
    if (this.#tty) process.stdout.write('\r\x1b[K');
    console.log(text);
  }
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
