// A seeded fuzzer over safetensors headers (checkpoints), saved editor states and statistics files, and over
// folders mixed from two diverged copies of one editor state: every corrupted file or mixed folder is either
// refused with a typed error or loads to exactly the original (a mixed folder: the state its editor.json names). scripts/fuzz.mjs runs the same
// cases by the thousand, each in a child process.
import test from 'ava';
import { Fuzzer, fuzzKinds } from './fuzz-cases.js';

// About 15 s per kind on 2 cores. A mixed folder takes 3 of its 6 files from either copy: 16 distinct folders.
const casesOf = { checkpoint: 300, state: 300, statistics: 300, chain: 48 };

for (const kind of fuzzKinds) {
  const cases = casesOf[kind];
  const what = kind === 'chain' ? 'folders mixed from two diverged copies of a state' : `corrupted ${kind} files`;
  test(`${cases} ${what}: typed refusals or identical loads, nothing else`, async (t) => {
    t.timeout(120_000);
    const fuzzer = new Fuzzer();
    const tally = new Map<string, number>();
    for (let seed = 0; seed < cases; seed++) {
      const outcome = await fuzzer.case(kind, seed);
      t.false(outcome.result.startsWith('VIOLATION'), `seed ${seed} (${outcome.mutation}): ${outcome.result}`);
      tally.set(outcome.result, (tally.get(outcome.result) ?? 0) + 1);
    }
    t.log([...tally].map(([r, n]) => `${r}: ${n}`).join(', '));
    t.true((tally.get('refused INVALID_CHECKPOINT') ?? 0) + (tally.get('refused INVALID_ARGUMENT') ?? 0) > cases / 2);
  });
}
