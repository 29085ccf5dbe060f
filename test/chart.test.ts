// The sweep chart: a well-formed standalone SVG with three panels, one polyline per series per panel, points
// where the data says, NaN skipped and text escaped. Node has no DOMParser, so structure is checked with a
// small tag-balance parser and regexes.
import test from 'ava';
import { chartLayout, renderChart, type ChartSeries } from '../lib/sweep/chart.js';

interface Element { name: string; attrs: Record<string, string>; children: Element[]; text: string }

/** A minimal XML parser for the SVG we write: fails on unbalanced tags, bad attributes or stray `<`/`&`. */
function parseXml(xml: string): Element {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  const root: Element = { name: '#document', attrs: {}, children: [], text: '' };
  const stack: Element[] = [root];
  const tagRe = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  const checkText = (text: string) => {
    if (text.includes('<') || text.includes('>')) throw new Error(`stray < or > in ${JSON.stringify(text)}`);
    const amp = text.match(/&(?!(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/);
    if (amp) throw new Error(`unescaped & in ${JSON.stringify(text)}`);
  };
  let i = 0;
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    const text = body.slice(i, lt < 0 ? body.length : lt);
    checkText(text);
    stack[stack.length - 1].text += text;
    if (lt < 0) break;
    tagRe.lastIndex = lt;
    const m = tagRe.exec(body);
    if (!m) throw new Error(`malformed tag at ${lt}: ${body.slice(lt, lt + 60)}`);
    const [, close, name, attrText, selfClose] = m;
    if (close) {
      const open = stack.pop();
      if (!open || open.name !== name || stack.length === 0) throw new Error(`</${name}> closes <${open?.name}>`);
    } else {
      const attrs: Record<string, string> = {};
      for (const [, k, v] of attrText.matchAll(/([\w:-]+)="([^"]*)"/g)) {
        if (k in attrs) throw new Error(`duplicate attribute ${k}`);
        checkText(v);
        attrs[k] = v;
      }
      const el: Element = { name, attrs, children: [], text: '' };
      stack[stack.length - 1].children.push(el);
      if (!selfClose) stack.push(el);
    }
    i = tagRe.lastIndex;
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1].name}>`);
  if (root.children.length !== 1) throw new Error('more than one root element');
  if (root.text.trim() !== '') throw new Error('text outside the root element');
  return root.children[0];
}

const all = (el: Element, pred: (e: Element) => boolean): Element[] =>
  [...(pred(el) ? [el] : []), ...el.children.flatMap((c) => all(c, pred))];
const byClass = (el: Element, cls: string) => all(el, (e) => (e.attrs.class ?? '').split(' ').includes(cls));
const unescape = (s: string) => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
const pointsOf = (poly: Element) => (poly.attrs.points.trim() === '' ? [] : poly.attrs.points.trim().split(/\s+/).map((p) => p.split(',').map(Number) as [number, number]));

const series: ChartSeries[] = [
  { label: 'comeba-hk', points: [{ edits: 0, reliability: 100, generality: 90, locality: 100 }, { edits: 200, reliability: 80, generality: 60, locality: 95 }, { edits: 1000, reliability: 66.9, generality: 56.1, locality: 97.2 }] },
  { label: 'memit <baseline> & "co"', points: [{ edits: 200, reliability: 50, generality: Number.NaN, locality: 90 }, { edits: 1000, reliability: 34.9, generality: 33, locality: 70.7 }] },
  { label: 'empty', points: [] },
];

test('the chart is a well-formed SVG with three panels, one polyline per series per panel', (t) => {
  const svg = renderChart(series, { title: 'Consecutive <1k> edits & more' });
  t.true(svg.startsWith('<?xml'));
  const root = parseXml(svg);
  t.is(root.name, 'svg');
  t.is(root.attrs.xmlns, 'http://www.w3.org/2000/svg');
  t.is(root.attrs.width, '900');
  t.is(root.attrs.height, '320');
  const panels = byClass(root, 'panel');
  t.deepEqual(panels.map((p) => p.attrs['data-metric']), ['reliability', 'generality', 'locality']);
  for (const [k, panel] of panels.entries()) {
    const polys = all(panel, (e) => e.name === 'polyline');
    t.is(polys.length, series.length);
    const metric = (['reliability', 'generality', 'locality'] as const)[k];
    series.forEach((s, i) => {
      const group = byClass(panel, 'series').find((g) => g.attrs['data-series'] === String(i))!;
      const expected = s.points.filter((p) => Number.isFinite(p[metric])).length;
      t.is(pointsOf(all(group, (e) => e.name === 'polyline')[0]).length, expected, `${metric} / ${s.label}`);
      t.is(all(group, (e) => e.name === 'circle').length, expected, `${metric} / ${s.label} markers`);
    });
    // Gridlines and tick labels 0…100 on y; ticks on x from 0 to at most the largest edit count.
    t.deepEqual(byClass(panel, 'ytick').map((e) => e.text), ['0', '20', '40', '60', '80', '100']);
    t.is(byClass(panel, 'grid').length, 6);
    const xt = byClass(panel, 'xtick-label').map((e) => e.text);
    t.is(xt[0], '0');
    t.true(xt.length >= 3, xt.join(','));
  }
  t.is(byClass(root, 'title')[0].text, 'Consecutive &lt;1k&gt; edits &amp; more');
  t.is(unescape(byClass(root, 'title')[0].text), 'Consecutive <1k> edits & more');
  t.false(svg.includes('NaN'));
});

test('coordinates: edits 0 → plot left, max edits → plot right, 100 → top, 0 → bottom', (t) => {
  const svg = renderChart(series, { title: 'x' });
  const L = chartLayout;
  const top = L.plotTopWithTitle;
  const panels = byClass(parseXml(svg), 'panel');
  const first = (panel: number, s: number) => pointsOf(all(byClass(panels[panel], 'series')[s], (e) => e.name === 'polyline')[0]);
  // Series 0, reliability: (0, 100) at the top-left corner, (1000, 66.9) at the right edge.
  const rel = first(0, 0);
  t.deepEqual(rel[0], [L.plotLeft, top]);
  t.is(rel[2][0], L.plotRight);
  t.true(Math.abs(rel[2][1] - (L.plotBottom - 0.669 * (L.plotBottom - top))) < 0.01);
  t.true(Math.abs(rel[1][0] - (L.plotLeft + 0.2 * (L.plotRight - L.plotLeft))) < 0.01);
  // The same point in the third panel is shifted by two panel widths.
  const loc = first(2, 0);
  t.deepEqual(loc[0], [2 * L.panelWidth + L.plotLeft, top]);
  t.is(loc[2][0], 2 * L.panelWidth + L.plotRight);
  // Without a title the plot starts higher; value 0 sits on the bottom.
  const plain = byClass(parseXml(renderChart([{ label: 'a', points: [{ edits: 0, reliability: 0, generality: 100, locality: 50 }, { edits: 10, reliability: 0, generality: 100, locality: 50 }] }])), 'panel');
  const p0 = pointsOf(all(plain[0], (e) => e.name === 'polyline')[0]);
  t.deepEqual(p0, [[L.plotLeft, L.plotBottom], [L.plotRight, L.plotBottom]]);
  const p1 = pointsOf(all(plain[1], (e) => e.name === 'polyline')[0]);
  t.deepEqual(p1.map((p) => p[1]), [L.plotTop, L.plotTop]);
  // Every coordinate stays inside the 900 × 320 canvas.
  const coords = (re: RegExp) => [...svg.matchAll(re)].map((m) => Number(m[1]));
  t.true(coords(/ (?:cx|x1|x2|x)="([^"]+)"/g).every((x) => x >= 0 && x <= L.width));
  t.true(coords(/ (?:cy|y1|y2|y)="([^"]+)"/g).every((y) => y >= 0 && y <= L.height));
});

test('the legend has one entry per series, in distinct colours, with its label escaped', (t) => {
  const svg = renderChart(series);
  const root = parseXml(svg);
  const items = byClass(root, 'legend-item');
  t.is(items.length, 3);
  t.deepEqual(items.map((i) => unescape(all(i, (e) => e.name === 'text')[0].text)), series.map((s) => s.label));
  t.true(svg.includes('memit &lt;baseline&gt; &amp; &quot;co&quot;'));
  t.false(svg.includes('<baseline>'));
  const colours = items.map((i) => all(i, (e) => e.name === 'line')[0].attrs.stroke);
  t.is(new Set(colours).size, 3);
  // The series' lines use their legend colour in every panel.
  for (const panel of byClass(root, 'panel')) {
    t.deepEqual(byClass(panel, 'series').map((g) => all(g, (e) => e.name === 'polyline')[0].attrs.stroke), colours);
  }
});

test('degenerate input: no series, a single point at 0 edits, values out of range', (t) => {
  const none = parseXml(renderChart([]));
  t.is(byClass(none, 'panel').length, 3);
  t.is(all(none, (e) => e.name === 'polyline').length, 0);
  const one = parseXml(renderChart([{ label: 'x', points: [{ edits: 0, reliability: 120, generality: -5, locality: Number.POSITIVE_INFINITY }] }]));
  const polys = all(one, (e) => e.name === 'polyline').map(pointsOf);
  t.deepEqual(polys.map((p) => p.length), [1, 1, 0]);
  t.deepEqual(polys[0][0], [chartLayout.plotLeft, chartLayout.plotTop]); // clamped to 100
  t.deepEqual(polys[1][0], [chartLayout.panelWidth + chartLayout.plotLeft, chartLayout.plotBottom]); // clamped to 0
});

test('x ticks are whole edit counts from 0, ending at the largest edit count', (t) => {
  const labels = (max: number) => {
    const svg = renderChart([{ label: 'a', points: [{ edits: 0, reliability: 1, generality: 1, locality: 1 }, { edits: max, reliability: 1, generality: 1, locality: 1 }] }]);
    return byClass(byClass(parseXml(svg), 'panel')[0], 'xtick-label').map((e) => e.text);
  };
  t.deepEqual(labels(1000), ['0', '200', '400', '600', '800', '1000']);
  t.deepEqual(labels(1919), ['0', '500', '1000', '1500', '1919']);
  t.deepEqual(labels(1), ['0', '1']);
  t.deepEqual(labels(10), ['0', '2', '4', '6', '8', '10']);
});
