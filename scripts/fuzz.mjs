#!/usr/bin/env node
// The long run of test/fuzz-cases.ts: N seeded corruptions of a checkpoint header, a saved editor state and a
// statistics file, and N folders mixed from two diverged copies of a state, each loaded in a child process of its
// own so that a crash (a signal, an abort) or a hang (past --timeout) is seen as such. Prints a tally and every violation; exits 1 if there was any.
//   node scripts/fuzz.mjs [--cases 2000] [--from 0] [--jobs 2] [--timeout 30]
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { cases: { type: 'string', default: '2000' }, from: { type: 'string', default: '0' }, jobs: { type: 'string', default: '2' }, timeout: { type: 'string', default: '30' } },
});
const [cases, from, jobs, timeout] = [values.cases, values.from, values.jobs, values.timeout].map(Number);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function runCase(kind, seed) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fuzz-cases.ts', kind, String(seed)], {
      cwd: root, env: { ...process.env, OMP_NUM_THREADS: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout * 1000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && out.trim()) return resolve(JSON.parse(out.trim().split('\n').pop()));
      const why = signal === 'SIGKILL' ? `VIOLATION hang (killed after ${timeout} s)` : `VIOLATION crash (exit ${code}, signal ${signal}): ${err.trim().split('\n').slice(-3).join(' | ')}`;
      resolve({ kind, seed, mutation: '?', result: why });
    });
  });
}

const queue = [];
for (let seed = from; seed < from + cases; seed++) for (const kind of ['checkpoint', 'state', 'statistics', 'chain']) queue.push([kind, seed]);
const tally = new Map();
const violations = [];
const started = performance.now();
let done = 0;
await Promise.all(Array.from({ length: jobs }, async () => {
  while (queue.length) {
    const [kind, seed] = queue.shift();
    const o = await runCase(kind, seed);
    const key = `${kind}: ${o.result.startsWith('VIOLATION') ? 'VIOLATION' : o.result}`;
    tally.set(key, (tally.get(key) ?? 0) + 1);
    if (o.result.startsWith('VIOLATION')) violations.push(o);
    if (++done % 200 === 0) console.error(`${done} cases, ${((performance.now() - started) / 1000).toFixed(0)} s`);
  }
}));
console.log(`${done} cases (seeds ${from}…${from + cases - 1}, checkpoint and state) in ${((performance.now() - started) / 1000).toFixed(0)} s`);
for (const [k, n] of [...tally].sort()) console.log(`  ${k}: ${n}`);
for (const v of violations) console.log(`VIOLATION ${v.kind} seed ${v.seed} (${v.mutation}): ${v.result}`);
process.exit(violations.length ? 1 : 0);
