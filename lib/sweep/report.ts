// report.html: a sweep folder as one self-contained page (no network needed to view it): the results table
// with the protocol, every metric against the number of edits per mode, α per layer over the batches, seconds
// per batch, and a searchable table of what each mode now answers. Charts are drawn in the page by Chartist
// (SVG, no dependencies, 38 kB, MIT), inlined with its stylesheet. Older sweep folders (summary.json a plain
// list, no batches.jsonl or records.json) give a page with what they hold.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { writeAtomically } from '../io/files.js';
import { readJsonLines, sweepMethods, type BatchLine, type MetricsLine, type SweepSummary, type SweepSummaryFile } from './types.js';

/** A metric the page charts: where it is in a metrics line, its title, and its axis. */
interface ChartedMetric { key: string; title: string; percent: boolean }

/** The page's charts of metrics against edits, in order; a chart appears when some line has its metric. */
export const chartedMetrics: readonly ChartedMetric[] = [
  { key: 'reliability', title: 'Reliability (teacher-forced)', percent: true },
  { key: 'generality', title: 'Generality (teacher-forced)', percent: true },
  { key: 'locality', title: 'Locality (teacher-forced)', percent: true },
  { key: 'average', title: 'Average (teacher-forced)', percent: true },
  { key: 'generated.reliability', title: 'Reliability (generated)', percent: true },
  { key: 'generated.generality', title: 'Generality (generated)', percent: true },
  { key: 'generated.locality', title: 'Locality (generated)', percent: true },
  { key: 'generated.average', title: 'Average (generated)', percent: true },
  { key: 'portability', title: 'Portability (teacher-forced)', percent: true },
  { key: 'generated.portability', title: 'Portability (generated)', percent: true },
  { key: 'perplexityRatio', title: 'Held-out perplexity / unedited', percent: false },
  { key: 'fluency', title: 'Fluency (n-gram entropy)', percent: false },
];

/** What the page is drawn from, embedded in it as JSON. */
export interface ReportData {
  title: string;
  summary: Partial<SweepSummaryFile> & { modes: SweepSummary[] };
  metrics: MetricsLine[];
  batches: BatchLine[];
  /** Per mode: the records as last evaluated, with their scores and answers. */
  records: Record<string, { id: string; prompt: string; target: string; rephrase?: string; locality?: { prompt: string; answer: string }; scores?: Record<string, unknown> }[]>;
  charts: readonly ChartedMetric[];
}

/** Reads a sweep folder into the page's data. */
export function readSweepFolder(dir: string): ReportData {
  const summaryFile = join(dir, 'summary.json');
  if (!existsSync(summaryFile)) throw new InvalidArgumentError(`${dir} holds no summary.json: not a finished sweep folder (run or resume the sweep first)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(summaryFile, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(`${summaryFile} is not valid JSON`, { cause: err });
  }
  // Before format 2, summary.json was the list of per-mode summaries alone.
  const summary = (Array.isArray(parsed) ? { modes: parsed } : parsed) as ReportData['summary'];
  if (!Array.isArray(summary.modes)) throw new InvalidArgumentError(`${summaryFile} is not a sweep summary`);
  const records: ReportData['records'] = {};
  for (const mode of sweepMethods) {
    const file = join(dir, mode, 'records.json');
    if (existsSync(file)) records[mode] = JSON.parse(readFileSync(file, 'utf8')) as ReportData['records'][string];
  }
  const first = summary.modes[0];
  const protocol = first?.protocol ?? 'consecutive';
  return {
    title: first ? `${protocol} editing of ${first.n} cases in batches of ${first.batch}` : 'comeba sweep',
    summary,
    metrics: readJsonLines<MetricsLine>(join(dir, 'metrics.jsonl')),
    batches: readJsonLines<BatchLine>(join(dir, 'batches.jsonl')),
    records,
    charts: chartedMetrics,
  };
}

/** Writes `<dir>/report.html` from the sweep folder `dir`; returns its path. */
export function writeReport(dir: string): string {
  const file = join(dir, 'report.html');
  writeAtomically(file, renderReport(readSweepFolder(dir)));
  return file;
}

const require = createRequire(import.meta.url);
const asset = (path: string) => readFileSync(require.resolve(path), 'utf8');

/** JSON that can sit inside a <script> element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function renderReport(data: ReportData): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>comeba — ${escapeHtml(data.title)}</title>
<style>${asset('chartist/dist/index.css')}</style>
<style>${pageStyle}</style>
</head>
<body>
<header><h1>comeba sweep</h1><p id="subtitle">${escapeHtml(data.title)}</p></header>
<section><h2>Results</h2><div id="table"></div></section>
<section><h2>Metrics against the number of edits</h2><div id="charts" class="grid"></div></section>
<section><h2>Editing</h2><div id="editing" class="grid"></div></section>
<section><h2>Records</h2><p><input id="search" type="search" placeholder="search prompts, targets and answers" size="50"> <span id="count"></span> <button id="prev">◀</button> <button id="next">▶</button></p><div id="records"></div></section>
<section><h2>Protocol and provenance</h2><div id="provenance"></div></section>
<script id="data" type="application/json">${scriptJson(data)}</script>
<script>${asset('chartist/dist/index.umd.js')}</script>
<script>${pageScript}</script>
</body>
</html>
`;
}

const colours = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

const pageStyle = `
${colours.map((c, i) => `.ct-series-${String.fromCharCode(97 + i)} .ct-line, .ct-series-${String.fromCharCode(97 + i)} .ct-point { stroke: ${c}; }`).join('\n')}
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1300px; color: #222; padding: 0 1em; }
h1 { margin: 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .6em; border-bottom: 1px solid #eee; text-align: right; vertical-align: top; }
th { background: #f6f6f6; } td.text, th.text { text-align: left; max-width: 22em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 1em; }
figure { margin: 0; border: 1px solid #eee; padding: .5em; } figcaption { font-weight: 600; }
.chart { height: 220px; }
.legend span { display: inline-block; margin-right: 1.2em; } .legend i { display: inline-block; width: 1.6em; height: 3px; vertical-align: middle; margin-right: .4em; }
.hit { color: #137333; } .miss { color: #b3261e; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; font-size: 12px; }
`;

// Runs in the page: builds the tables and asks Chartist for the charts. Any error is shown on the page and
// kept in body[data-errors], which the rendering test reads.
const pageScript = `
(function () {
  'use strict';
  var errors = [];
  window.addEventListener('error', function (e) { errors.push(String(e.message)); document.body.dataset.errors = errors.join('\\n'); });
  var data = JSON.parse(document.getElementById('data').textContent);
  var colours = ${JSON.stringify(colours)};
  var modes = data.summary.modes.map(function (m) { return m.mode; });
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { if (k === 'text') e.textContent = attrs[k]; else e.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }
  function get(obj, path) { return path.split('.').reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj); }
  function fmt(v, digits) { return typeof v === 'number' && isFinite(v) ? v.toFixed(digits === undefined ? 2 : digits) : '–'; }

  // Results table: teacher-forced and generated side by side.
  var columns = [
    ['mode', 'mode'], ['n', 'n'], ['batch', 'batch'],
    ['reliability', 'rel'], ['generality', 'gen'], ['locality', 'loc'], ['average', 'avg'],
    ['generated.reliability', 'rel (gen.)'], ['generated.generality', 'gen (gen.)'], ['generated.locality', 'loc (gen.)'], ['generated.average', 'avg (gen.)'],
    ['portability', 'port.'], ['generated.portability', 'port. (gen.)'], ['perplexityRatio', 'ppl ratio'], ['fluency', 'fluency'],
    ['seconds', 'seconds'], ['editsPerSecond', 'edits/s']
  ].filter(function (c) { return data.summary.modes.some(function (m) { return get(m, c[0]) !== undefined; }); });
  var table = el('table', {}, [el('tr', {}, columns.map(function (c) { return el('th', { text: c[1], class: c[0] === 'mode' ? 'text' : '' }); }))]);
  data.summary.modes.forEach(function (m) {
    table.appendChild(el('tr', {}, columns.map(function (c) {
      var v = get(m, c[0]);
      return el('td', { text: typeof v === 'number' && c[0] !== 'n' && c[0] !== 'batch' ? fmt(v) : String(v), class: c[0] === 'mode' ? 'text' : '' });
    })));
  });
  document.getElementById('table').appendChild(table);

  // A line chart of series [{ name, data: [{x, y}] }] with its legend; the stylesheet colours series a, b, c…
  function chart(parent, title, series, options) {
    var box = el('div', { class: 'chart' });
    var legend = el('div', { class: 'legend' }, series.map(function (s, i) {
      return el('span', {}, [el('i', { style: 'background:' + colours[i % colours.length] }), document.createTextNode(s.name)]);
    }));
    parent.appendChild(el('figure', {}, [el('figcaption', { text: title }), box, legend]));
    var xs = [];
    series.forEach(function (s) { s.data.forEach(function (p) { xs.push(p.x); }); });
    var low = Math.min.apply(null, xs), high = Math.max.apply(null, xs);
    new Chartist.LineChart(box, { series: series }, Object.assign({
      axisX: { type: Chartist.FixedScaleAxis, ticks: ticks(low, high, 6), low: low, high: high },
      showPoint: true, lineSmooth: false, fullWidth: true, chartPadding: { right: 20 }
    }, options || {}));
  }
  // At most "most" round ticks (1, 2, 2.5 or 5 × 10^k apart) within [low, high]: Chartist's own scale put a label
  // every 50 edits, too close to read ("200250300…") at common widths.
  function ticks(low, high, most) {
    if (!(high > low)) return [low];
    var raw = (high - low) / most, magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    // whole numbers of edits: never a step below 1
    var step = Math.max(1, [1, 2, 2.5, 5, 10].map(function (m) { return m * magnitude; }).filter(function (s) { return s >= raw; })[0]);
    var out = [];
    for (var x = Math.ceil(low / step) * step; x <= high + 1e-9 * step; x += step) out.push(Math.round(x * 1e6) / 1e6);
    return out;
  }

  // Metrics against edits, one chart per metric, one line per mode.
  var charts = document.getElementById('charts');
  data.charts.forEach(function (c) {
    if (!data.metrics.some(function (l) { return typeof get(l, c.key) === 'number'; })) return;
    var series = modes.map(function (mode) {
      return { name: mode, data: data.metrics.filter(function (l) { return l.mode === mode && typeof get(l, c.key) === 'number'; })
        .map(function (l) { return { x: l.edits, y: get(l, c.key) }; }) };
    });
    // A metric taken once per mode (fluency, at the end) is a column of the results table, not a one-point line.
    if (series.every(function (s) { return s.data.length <= 1; })) return;
    chart(charts, c.title, series, c.percent ? { low: 0, high: 100 } : { axisY: { offset: 56 } });
  });

  // α per layer over the batches (modes with validated hooks), and seconds per batch.
  var editing = document.getElementById('editing');
  modes.forEach(function (mode, mi) {
    var lines = data.batches.filter(function (b) { return b.mode === mode && b.alpha.length > 0; });
    if (lines.length === 0 || mode.indexOf('comeba-hk') !== 0) return;
    var layers = lines[0].alpha.map(function (a) { return a.layer; });
    var series = layers.map(function (layer) {
      return { name: 'layer ' + layer, data: lines.map(function (b) { var a = b.alpha.filter(function (x) { return x.layer === layer; })[0]; return { x: b.edits, y: a ? a.alpha : null }; }) };
    });
    chart(editing, 'α per layer after each batch (' + mode + ')', series, { showPoint: false });
  });
  if (data.batches.length > 0) {
    var seconds = modes.map(function (mode) {
      return { name: mode, data: data.batches.filter(function (b) { return b.mode === mode; }).map(function (b) { return { x: b.edits, y: b.seconds.total }; }) };
    });
    chart(editing, 'Seconds per batch', seconds, { showPoint: false, low: 0 });
  } else {
    editing.appendChild(el('p', { text: 'This sweep folder has no batches.jsonl (made by an older comeba): no α or per-batch timings.' }));
  }

  // Records: what each mode now answers, searchable.
  var recordModes = modes.filter(function (m) { return data.records[m]; });
  var holder = document.getElementById('records');
  if (recordModes.length === 0) {
    holder.appendChild(el('p', { text: 'This sweep folder has no records.json (made by an older comeba, or before its first checkpoint).' }));
  } else {
    // Only one page of rows is in the DOM (10,000 records × 4 modes made 213k nodes and a slow search); the search
    // runs over one lower-cased text per record, built once.
    var base = data.records[recordModes[0]];
    var head = ['id', 'prompt → target', 'rephrase', 'locality → answer'].map(function (h) { return el('th', { text: h, class: 'text' }); });
    recordModes.forEach(function (m) { head.push(el('th', { text: m + ': prompt / rephrase / locality', class: 'text' })); });
    var cellsOf = function (r) { return [r.id, r.prompt + ' → ' + r.target, r.rephrase || '', r.locality ? r.locality.prompt + ' → ' + r.locality.answer : '']; };
    var answersOf = function (m, i) {
      var s = (data.records[m][i] || {}).scores || {};
      var a = s.answers || {}, g = s.generated || {};
      var out = [['prompt', 'reliability'], ['rephrase', 'generality'], ['locality', 'locality']]
        .filter(function (p) { return a[p[0]] !== undefined; })
        .map(function (p) { return { text: (g[p[1]] === 100 ? '✓ ' : '✗ ') + a[p[0]], hit: g[p[1]] === 100 }; });
      return out.length ? out : [{ text: 'rel ' + fmt(s.reliability, 0) + ' / gen ' + fmt(s.generality, 0) + ' / loc ' + fmt(s.locality, 0) }];
    };
    var texts = base.map(function (r, i) {
      return cellsOf(r).concat(recordModes.map(function (m) { return answersOf(m, i).map(function (x) { return x.text; }).join(' '); })).join(' ').toLowerCase();
    });
    var rowOf = function (i) {
      var tr = el('tr', {}, cellsOf(base[i]).map(function (c) { return el('td', { text: c, class: 'text' }); }));
      recordModes.forEach(function (m) {
        tr.appendChild(el('td', { class: 'text' }, answersOf(m, i).map(function (x) {
          return x.hit === undefined ? el('span', { text: x.text }) : el('div', { text: x.text, class: x.hit ? 'hit' : 'miss' });
        })));
      });
      return tr;
    };
    var pageSize = 100, page = 0, matches = [];
    var body = el('tbody');
    holder.appendChild(el('table', {}, [el('thead', {}, [el('tr', {}, head)]), body]));
    var search = document.getElementById('search'), count = document.getElementById('count');
    var prev = document.getElementById('prev'), next = document.getElementById('next');
    var render = function () {
      var pages = Math.max(1, Math.ceil(matches.length / pageSize));
      page = Math.min(page, pages - 1);
      body.textContent = '';
      matches.slice(page * pageSize, (page + 1) * pageSize).forEach(function (i) { body.appendChild(rowOf(i)); });
      count.textContent = matches.length + ' of ' + base.length + ' records' + (pages > 1 ? ', page ' + (page + 1) + ' of ' + pages : '');
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
      prev.style.display = next.style.display = pages > 1 ? '' : 'none';
    };
    var filter = function () {
      var q = search.value.toLowerCase();
      matches = [];
      texts.forEach(function (t, i) { if (t.indexOf(q) >= 0) matches.push(i); });
      page = 0;
      render();
    };
    prev.addEventListener('click', function () { page -= 1; render(); });
    next.addEventListener('click', function () { page += 1; render(); });
    search.addEventListener('input', filter);
    filter();
  }

  // Protocol and provenance, as recorded.
  var prov = { settings: data.summary.settings, runs: data.summary.runs, statistics: data.summary.statistics, records: data.summary.records,
    baseline: data.summary.baseline, evaluation: data.summary.evaluation,
    contextTemplates: data.summary.modes.map(function (m) { return { mode: m.mode, templates: m.contextTemplates }; }) };
  document.getElementById('provenance').appendChild(el('pre', { text: JSON.stringify(prov, null, 2) }));
  document.body.dataset.rendered = 'true';
})();
`;
