// report.html rendered in headless Chromium from the file system with the network cut off: no console message,
// the charts drawn by Chartist as SVG, the tables filled, a screenshot that is not blank; also for a sweep
// folder in the older layout. Skipped (saying why) where Chromium is missing; CI installs it and sets
// COMEBA_REQUIRE_CHROMIUM=1, which makes a missing Chromium a failure.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateSync } from 'node:zlib';
import { chartedMetrics } from '../lib/sweep/report.js';
import { runSweep, type SweepSummaryFile } from '../lib/sweep/sweep.js';
import { needing, tempDir, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find((c) => spawnSync('which', [c]).status === 0);
const withChromium = needing(test, chromium !== undefined, 'no chromium on PATH', 'COMEBA_REQUIRE_CHROMIUM', 'apt-get install chromium');

/** Chromium headless on `file`, every host unresolvable and a dead proxy: nothing can come from the network. */
function browse(file: string, ...flags: string[]) {
  const run = spawnSync(chromium!, [
    '--headless', '--no-sandbox', '--disable-gpu', '--enable-logging=stderr', '--v=0', '--host-resolver-rules=MAP * ~NOTFOUND',
    '--proxy-server=127.0.0.1:9', '--window-size=1300,2600', ...flags, `file://${file}`,
  ], { encoding: 'utf8', timeout: 60_000 });
  const consoleLines = run.stderr.split('\n').filter((l) => /:CONSOLE[:(]/.test(l));
  return { status: run.status, stdout: run.stdout, stderr: run.stderr, consoleLines };
}

/** Decodes an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into its pixels. */
function decodePng(png: Buffer): { width: number; height: number; channels: number; pixels: Uint8Array } {
  let at = 8;
  let width = 0, height = 0, channels = 0;
  const idat: Buffer[] = [];
  while (at < png.length) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    if (type === 'IHDR') {
      [width, height] = [body.readUInt32BE(0), body.readUInt32BE(4)];
      if (body[8] !== 8 || body[12] !== 0 || ![2, 6].includes(body[9])) throw new Error('unexpected PNG layout');
      channels = body[9] === 6 ? 4 : 3;
    }
    if (type === 'IDAT') idat.push(body);
    at += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    for (let x = 0; x < stride; x++) {
      const v = raw[y * (stride + 1) + 1 + x];
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      pixels[y * stride + x] = (v + [0, a, b, (a + b) >> 1, paeth][filter]) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

let swept: Promise<string> | undefined;
/** A finished two-mode sweep on the tiny fixture. */
const sweep = () => (swept ??= (async () => {
  const out = tempDir('comeba-report-');
  await runSweep({
    model: tinyGpt2, data: join(root, 'testbed', 'counterfact.json'), format: 'counterfact', n: 4, batch: 2, modes: ['comeba-hk', 'memit'],
    protocol: 'consecutive', evalEvery: 2, out, layers: [1, 2], lambda: 100,
  });
  return out;
})());

/** Renders `dir`/report.html and checks what every report must show; returns the dumped DOM. */
function checkRendered(t: ExecutionContext, dir: string): string {
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  t.notRegex(html, /<(script|img|iframe)[^>]+src=|<link[^>]+href=|url\(\s*['"]?https?:/i, 'the page loads nothing from elsewhere');
  const dom = browse(join(dir, 'report.html'), '--dump-dom');
  t.is(dom.status, 0, dom.stderr);
  t.deepEqual(dom.consoleLines, [], 'no console message (errors, failed loads)');
  t.regex(dom.stdout, /data-rendered="true"/, 'the page script ran to its end');
  t.notRegex(dom.stdout, /data-errors=/);
  const shot = join(dir, 'screenshot.png');
  rmSync(shot, { force: true });
  const screenshot = browse(join(dir, 'report.html'), `--screenshot=${shot}`);
  t.is(screenshot.status, 0, screenshot.stderr);
  t.deepEqual(screenshot.consoleLines, []);
  const { pixels, channels, width, height } = decodePng(readFileSync(shot));
  t.is(width, 1300);
  // Not blank: many pixels off-white, and the charts' colours present.
  let ink = 0;
  const colours = new Set<string>();
  for (let i = 0; i < width * height; i++) {
    const [r, g, b] = [pixels[i * channels], pixels[i * channels + 1], pixels[i * channels + 2]];
    if (r + g + b < 600) ink++;
    colours.add(`${r >> 4},${g >> 4},${b >> 4}`);
  }
  t.true(ink > 0.01 * width * height, `${ink} inked pixels`);
  t.true(colours.has('1,7,11') && colours.has('13,2,2'), 'the first two series colours (#1f77b4, #d62728) are drawn');
  // Readable axes: every x-axis label fits the room Chartist gives it with a gap (a 12 px digit is about 7 px wide).
  const labels = [...dom.stdout.matchAll(/<foreignObject[^>]*width="([\d.]+)"[^>]*><span class="ct-label ct-horizontal[^>]*>([^<]*)</g)];
  t.true(labels.length > 0, 'x-axis labels');
  for (const [, width, text] of labels) {
    t.true(Number(width) >= 8 * text.length, `label "${text}" in ${width} px`);
    t.regex(text, /^\d+$/);
  }
  return dom.stdout;
}

withChromium('report.html renders offline in Chromium: one chart per metric, α and seconds per batch, the tables', async (t) => {
  const dir = await sweep();
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as SweepSummaryFile;
  const dom = checkRendered(t, dir);
  // A chart per metric the sweep has at several evaluation points (teacher-forced, generated, perplexity ratio; no
  // portability on CounterFact; fluency, taken once at the end, is a column of the results table instead),
  // + α (comeba-hk) + seconds per batch: each an SVG with one line per series.
  const charted = chartedMetrics.filter((c) => !c.key.includes('portability') && c.key !== 'fluency');
  t.false(dom.includes('>Fluency (n-gram entropy)</figcaption>'), 'no one-point fluency chart');
  t.regex(dom, /<th class="">fluency<\/th>/);
  const svgs = dom.match(/<svg[^>]*class="ct-chart-line"/g) ?? [];
  t.is(svgs.length, charted.length + 2);
  for (const c of charted) t.true(dom.includes(`>${c.title}</figcaption>`), c.title);
  t.true((dom.match(/class="ct-line"/g) ?? []).length >= charted.length * 2 + 2 + 2, 'a line per mode in each metric chart, per layer in α, per mode in seconds');
  t.regex(dom, /α per layer after each batch \(comeba-hk\)/);
  // The results table: one row per mode; the records table: one row per record, with each mode's answers.
  for (const m of summary.modes) t.regex(dom, new RegExp(`<td class="text">${m.mode}</td>`));
  t.regex(dom, /4 of 4 records/);
  t.true((dom.match(/class="(hit|miss)"/g) ?? []).length >= 4 * 2 * 3 - 4, 'answers for prompt, rephrase and locality per mode');
  t.regex(dom, /"settingsSha256"|settings/);
});

withChromium('comeba report regenerates the page from an older sweep folder (summary.json a list, no batches or records)', async (t) => {
  const dir = tempDir('comeba-report-old-');
  cpSync(await sweep(), dir, { recursive: true });
  const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as SweepSummaryFile;
  writeFileSync(join(dir, 'summary.json'), JSON.stringify(summary.modes.map(({ contextTemplates, ...m }) => m)));
  for (const f of ['batches.jsonl', 'report.html', join('comeba-hk', 'records.json'), join('memit', 'records.json')]) rmSync(join(dir, f));
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'lib', 'cli', 'main.ts'), 'report', dir], { cwd: root, encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  t.is(run.stdout.trim(), join(dir, 'report.html'));
  const dom = checkRendered(t, dir);
  t.regex(dom, /no batches\.jsonl/);
  t.regex(dom, /no records\.json/);
  t.true(existsSync(join(dir, 'report.html')));
  const missing = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'lib', 'cli', 'main.ts'), 'report', tempDir('comeba-report-empty-')], { cwd: root, encoding: 'utf8' });
  t.is(missing.status, 2);
  t.regex(missing.stderr, /holds no summary\.json/);
});

withChromium('the records table shows one page of 100 rows at a time, with the count and the page, however many records there are', async (t) => {
  const dir = tempDir('comeba-report-many-');
  cpSync(await sweep(), dir, { recursive: true });
  // 250 records per mode, made from the sweep's own (distinct ids; the last one findable by its id).
  for (const mode of ['comeba-hk', 'memit']) {
    const file = join(dir, mode, 'records.json');
    const records = JSON.parse(readFileSync(file, 'utf8')) as { id: string }[];
    writeFileSync(file, JSON.stringify(Array.from({ length: 250 }, (_, i) => ({ ...records[i % records.length], id: `record-${i}` }))));
  }
  // …and evaluation points every 200 edits up to 1,000, as npm start's, where Chartist's own axis put a label every
  // 50 edits, 21 px apart ("200250300…").
  const metrics = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { mode: string; edits: number });
  const lines = ['comeba-hk', 'memit'].flatMap((mode) => {
    const last = metrics.filter((m) => m.mode === mode).at(-1)!;
    return Array.from({ length: 5 }, (_, i) => JSON.stringify({ ...last, edits: 200 * (i + 1) }));
  });
  writeFileSync(join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);
  const run = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'lib', 'cli', 'main.ts'), 'report', dir], { cwd: root, encoding: 'utf8' });
  t.is(run.status, 0, run.stderr);
  const dom = checkRendered(t, dir);
  t.regex(dom, />1000</, 'the axis reaches the last evaluation point');
  t.regex(dom, /250 of 250 records, page 1 of 3/);
  const shown = [...dom.matchAll(/>record-(\d+)</g)].map((m) => Number(m[1]));
  t.deepEqual(shown, Array.from({ length: 100 }, (_, i) => i));
});
