// `comeba queue submit|status|collect`: a grid of sweeps and sharded statistics as BullMQ jobs on the user's
// Redis (lib/queue/queue.ts); `comeba worker` runs them.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { renderChart, type ChartSeries } from '../sweep/chart.js';
import { InvalidArgumentError } from '../errors.js';
import { gridJobs, readGrid, submitGrid, type JobRow } from '../queue/queue.js';
import { readMetrics, type SweepSummaryFile } from '../sweep/sweep.js';

export const summary = 'submit a grid of sweeps and statistics shards to Redis (BullMQ); show its jobs; collect its results';

const usage = `usage: comeba queue submit GRID.json --redis URL      add the grid's jobs (again: nothing is added twice)
       comeba queue status NAME --redis URL         a table of the grid's jobs: state, progress, attempts, failures
       comeba queue collect NAME --redis URL --results DIR
                                                    one table (grid.md, grid.json) and chart (grid.svg) of its sweeps

GRID.json: { "name": "lambda-study",
             "sweeps": [ { "model": "/models/gpt2-xl", "data": "cf.json", "n": 2000, "mode": "comeba-hk" } ],
             "grid": { "base": { "model": "/models/gpt2-xl", "data": "cf.json", "n": 2000 },
                       "vary": { "mode": ["comeba-hk", "memit"], "lambda": [5000, 15000] } },
             "stats": [ { "name": "wiki", "model": "/models/gpt2-xl", "corpus": "wiki.txt", "shards": 8 } ] }
Sweep entries take comeba sweep's options without the dashes (no "out"); statistics entries comeba stats's.
Paths must be valid on every worker. Results: <results>/<name>/sweeps/<id>/ and <results>/<name>/stats/<stats name>.safetensors.`;

export async function run(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest, allowPositionals: true,
    options: { redis: { type: 'string', default: process.env.COMEBA_REDIS ?? 'redis://127.0.0.1:6379' }, results: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || verb === undefined || verb === '--help' || verb === '-h') {
    console.log(usage);
    return verb === undefined ? 2 : 0;
  }
  if (positionals.length !== 1) throw new InvalidArgumentError(`queue ${verb} takes one ${verb === 'submit' ? 'grid file' : 'grid name'}`);
  const redis = values.redis!;
  if (verb === 'submit') {
    const grid = readGrid(positionals[0]);
    const added = await submitGrid(redis, grid);
    console.log(`${grid.name}: ${added.sweeps} sweeps, ${added.shards} statistics shards submitted to ${redis}`);
    return 0;
  }
  if (verb === 'status') {
    const jobs = await gridJobs(redis, positionals[0]);
    if (jobs.length === 0) throw new InvalidArgumentError(`no jobs of a grid named ${positionals[0]} on ${redis}`);
    console.log(formatJobs(jobs));
    return jobs.some((j) => j.state === 'failed') ? 1 : 0;
  }
  if (verb === 'collect') {
    if (values.results === undefined) throw new InvalidArgumentError('collect needs --results DIR (the folder the workers write to)');
    const jobs = await gridJobs(redis, positionals[0]);
    if (jobs.length === 0) throw new InvalidArgumentError(`no jobs of a grid named ${positionals[0]} on ${redis}`);
    const { table, files } = collectGrid(values.results, positionals[0], jobs);
    console.log(table);
    console.log(`\n${files.join('\n')}`);
    return 0;
  }
  throw new InvalidArgumentError(`unknown queue command '${verb}' (submit, status, collect)`);
}

export function formatJobs(jobs: JobRow[]): string {
  const rows = [['job', 'kind', 'state', 'progress', 'attempts', 'failure'], ...jobs.map((j) => [j.id, j.kind, j.state, j.progress, String(j.attempts), j.failed.split('\n')[0].slice(0, 80)])];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const counts = Object.entries(jobs.reduce<Record<string, number>>((m, j) => ({ ...m, [j.state]: (m[j.state] ?? 0) + 1 }), {})).map(([s, n]) => `${n} ${s}`).join(', ');
  return [...rows.map((r) => r.map((v, c) => v.padEnd(widths[c])).join('  ').trimEnd()), '', counts].join('\n');
}

/** One row per sweep and mode from each finished sweep folder, with the options that vary across the grid; a chart. */
export function collectGrid(results: string, name: string, jobs: JobRow[]): { table: string; files: string[] } {
  const sweeps = jobs.filter((j) => j.kind === 'sweep');
  const specs = sweeps.map((j) => j.spec as Record<string, unknown>);
  const keys = [...new Set(specs.flatMap((s) => Object.keys(s)))].filter((k) => k !== 'mode' && new Set(specs.map((s) => JSON.stringify(s[k]))).size > 1);
  const rows: Record<string, unknown>[] = [];
  const series: ChartSeries[] = [];
  for (const job of sweeps) {
    const id = job.id.split('.').pop()!;
    const folder = join(results, name, 'sweeps', id);
    const file = join(folder, 'summary.json');
    const options = Object.fromEntries(keys.map((k) => [k, (job.spec as Record<string, unknown>)[k] ?? '']));
    if (!existsSync(file)) {
      rows.push({ sweep: id, ...options, state: job.state });
      continue;
    }
    const summary = JSON.parse(readFileSync(file, 'utf8')) as SweepSummaryFile;
    for (const m of summary.modes) {
      rows.push({ sweep: id, ...options, mode: m.mode, n: m.n, reliability: m.reliability, generality: m.generality, locality: m.locality, average: m.average, state: job.state });
      series.push({ label: `${[id.slice(0, 6), ...keys.map((k) => `${k} ${options[k]}`)].join(' ')} ${m.mode}`, points: readMetrics(folder).filter((l) => l.mode === m.mode) });
    }
  }
  const dir = join(results, name);
  mkdirSync(dir, { recursive: true });
  const header = ['sweep', ...keys, 'mode', 'n', 'reliability', 'generality', 'locality', 'average', 'state'];
  const cell = (v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(2) : String(v ?? ''));
  const table = [`| ${header.join(' | ')} |`, `|${header.map(() => ' --- ').join('|')}|`, ...rows.map((r) => `| ${header.map((h) => cell(r[h])).join(' | ')} |`)].join('\n');
  const files = [join(dir, 'grid.json'), join(dir, 'grid.md'), join(dir, 'grid.svg')];
  writeFileSync(files[0], JSON.stringify(rows, null, 2));
  writeFileSync(files[1], `# ${name}\n\n${table}\n`);
  writeFileSync(files[2], renderChart(series, { title: name }));
  return { table, files };
}
