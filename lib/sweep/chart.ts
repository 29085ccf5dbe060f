// A standalone SVG chart of a sweep: three panels side by side (reliability, generality, locality), the
// number of edits across and the 0–100 score up, one line per series (mode) with its points marked.
// No dependencies; the text is escaped for XML.

export interface ChartPoint {
  edits: number;
  reliability: number;
  generality: number;
  locality: number;
}

export interface ChartSeries {
  label: string;
  points: readonly ChartPoint[];
}

export interface ChartOptions {
  title?: string;
}

const chartMetrics = ['reliability', 'generality', 'locality'] as const;
type ChartMetric = (typeof chartMetrics)[number];

/** The chart's geometry, exported for tests: size, and each panel's plot area in SVG units. */
export const chartLayout = {
  width: 900,
  height: 320,
  panelWidth: 300,
  /** Plot area inside a panel, from the panel's left edge. */
  plotLeft: 46,
  plotRight: 284,
  /** Top of the plot area without / with a title. */
  plotTop: 34,
  plotTopWithTitle: 58,
  plotBottom: 252,
} as const;

const colours = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

/** Escapes text for XML content and attribute values. */
function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const fmt = (v: number) => String(Math.round(v * 100) / 100);

/**
 * Round ticks for 0…`max` edits: whole numbers 1, 2 or 5 × 10^k apart, plus `max` itself at the right edge
 * when it is not a tick and lies far enough from the last one for the labels not to overlap.
 */
function ticks(max: number, want = 5): number[] {
  const raw = max / want;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag);
  const out: number[] = [];
  for (let k = 0; k * step <= max * (1 + 1e-12); k++) out.push(k * step);
  if (max - out[out.length - 1] >= step / 2) out.push(max);
  return out;
}

function tickLabel(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
}

/** Renders `series` as an SVG document (900 × 320). Non-finite values are skipped. */
export function renderChart(series: readonly ChartSeries[], options: ChartOptions = {}): string {
  const L = chartLayout;
  const top = options.title ? L.plotTopWithTitle : L.plotTop;
  const bottom = L.plotBottom;
  const plotWidth = L.plotRight - L.plotLeft;
  const maxEdits = Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.edits).filter(Number.isFinite)));
  const xMax = maxEdits > 0 ? maxEdits : 1;
  const x = (panel: number, edits: number) => panel * L.panelWidth + L.plotLeft + (edits / xMax) * plotWidth;
  const y = (value: number) => bottom - (Math.min(100, Math.max(0, value)) / 100) * (bottom - top);

  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" viewBox="0 0 ${L.width} ${L.height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect x="0" y="0" width="${L.width}" height="${L.height}" fill="#ffffff"/>`);
  if (options.title) out.push(`<text class="title" x="${L.width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>`);

  chartMetrics.forEach((metric, panel) => {
    const left = panel * L.panelWidth + L.plotLeft;
    const right = panel * L.panelWidth + L.plotRight;
    out.push(`<g class="panel" data-metric="${metric}">`);
    out.push(`<text class="panel-title" x="${fmt((left + right) / 2)}" y="${top - 10}" text-anchor="middle" font-size="13" font-weight="bold">${metric[0].toUpperCase()}${metric.slice(1)}</text>`);
    for (const v of [0, 20, 40, 60, 80, 100]) {
      out.push(`<line class="grid" x1="${left}" y1="${fmt(y(v))}" x2="${right}" y2="${fmt(y(v))}" stroke="${v === 0 ? '#333333' : '#dddddd'}" stroke-width="1"/>`);
      out.push(`<text class="ytick" x="${left - 6}" y="${fmt(y(v) + 4)}" text-anchor="end" fill="#444444">${v}</text>`);
    }
    out.push(`<line class="axis" x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333333" stroke-width="1"/>`);
    for (const e of maxEdits > 0 ? ticks(maxEdits) : [0]) {
      out.push(`<line class="xtick" x1="${fmt(x(panel, e))}" y1="${bottom}" x2="${fmt(x(panel, e))}" y2="${bottom + 4}" stroke="#333333" stroke-width="1"/>`);
      out.push(`<text class="xtick-label" x="${fmt(x(panel, e))}" y="${bottom + 15}" text-anchor="middle" fill="#444444">${tickLabel(e)}</text>`);
    }
    out.push(`<text class="xlabel" x="${fmt((left + right) / 2)}" y="${bottom + 29}" text-anchor="middle" fill="#444444">edits</text>`);
    series.forEach((s, i) => {
      const colour = colours[i % colours.length];
      const pts = [...s.points]
        .filter((p) => Number.isFinite(p.edits) && Number.isFinite(p[metric]))
        .sort((a, b) => a.edits - b.edits)
        .map((p) => [x(panel, p.edits), y(p[metric])] as const);
      out.push(`<g class="series" data-series="${i}">`);
      out.push(`<polyline points="${pts.map(([px, py]) => `${fmt(px)},${fmt(py)}`).join(' ')}" fill="none" stroke="${colour}" stroke-width="2" stroke-linejoin="round"/>`);
      for (const [px, py] of pts) out.push(`<circle cx="${fmt(px)}" cy="${fmt(py)}" r="3" fill="${colour}"/>`);
      out.push(`</g>`);
    });
    out.push(`</g>`);
  });

  // Legend: one swatch and label per series, centred along the bottom.
  const itemWidth = (s: ChartSeries) => 28 + Math.min(s.label.length, 40) * 6.5;
  const total = series.reduce((w, s) => w + itemWidth(s), 0);
  let lx = Math.max(8, (L.width - total) / 2);
  const ly = L.height - 14;
  out.push(`<g class="legend">`);
  series.forEach((s, i) => {
    const colour = colours[i % colours.length];
    out.push(`<g class="legend-item" data-series="${i}">`);
    out.push(`<line x1="${fmt(lx)}" y1="${ly}" x2="${fmt(lx + 18)}" y2="${ly}" stroke="${colour}" stroke-width="2"/>`);
    out.push(`<circle cx="${fmt(lx + 9)}" cy="${ly}" r="3" fill="${colour}"/>`);
    out.push(`<text x="${fmt(lx + 23)}" y="${ly + 4}">${escapeXml(s.label)}</text>`);
    out.push(`</g>`);
    lx += itemWidth(s);
  });
  out.push(`</g>`);
  out.push(`</svg>`);
  return out.join('\n') + '\n';
}
