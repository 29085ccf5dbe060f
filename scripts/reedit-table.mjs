#!/usr/bin/env node
// Reliability after a sweep, split by how many times the record's subject had been edited before it (the re-edit
// protocol's diagnostic; npm run sweep:reedit prints it): reads <out>/<method>/records.json (in edit order) and the dataset's subjects.
//   node scripts/reedit-table.mjs [--out comeba-sweep] [--data testbed/counterfact.json] [--metric reliability]
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { out: { type: 'string', default: 'comeba-sweep' }, data: { type: 'string', default: 'testbed/counterfact.json' }, metric: { type: 'string', default: 'reliability' } },
});
const subjectOf = new Map(JSON.parse(readFileSync(values.data, 'utf8')).map((r) => [String(r.case_id), r.subject]));
const methods = readdirSync(values.out).filter((m) => existsSync(join(values.out, m, 'records.json')));
if (methods.length === 0) throw new Error(`no <method>/records.json under ${values.out}`);

const rows = methods.map((method) => {
  const records = JSON.parse(readFileSync(join(values.out, method, 'records.json'), 'utf8'));
  const seen = new Map();
  const byOrder = [];
  const last = new Map();
  for (const r of records) {
    const subject = subjectOf.get(String(r.id));
    if (subject === undefined) throw new Error(`record ${r.id} is not in ${values.data}`);
    const order = seen.get(subject) ?? 0;
    seen.set(subject, order + 1);
    (byOrder[order] ??= []).push(r.scores[values.metric]);
    last.set(subject, r.scores[values.metric]);
  }
  return { method, byOrder, last: [...last.values()] };
});
const mean = (xs) => (xs.length ? (xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(1) : '–');
const depth = Math.max(...rows.map((r) => r.byOrder.length));
const ordinal = (i) => `${i + 1}${['st', 'nd', 'rd'][i] ?? 'th'}`;
console.log(`| ${values.metric} after the sweep | ${Array.from({ length: depth }, (_, i) => `${ordinal(i)} edit of a subject`).join(' | ')} | last edit of each subject |`);
console.log(`|---|${'---|'.repeat(depth + 1)}`);
for (const r of rows) console.log(`| ${r.method} | ${Array.from({ length: depth }, (_, i) => mean(r.byOrder[i] ?? [])).join(' | ')} | ${mean(r.last)} |`);
console.log(`\n(records per column: ${Array.from({ length: depth }, (_, i) => rows[0].byOrder[i]?.length ?? 0).join(', ')}; subjects: ${rows[0].last.length})`);
