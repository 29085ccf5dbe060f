// A seeded fuzzer over safetensors headers (checkpoints) and saved editor states: every corrupted file
// is either refused with a typed error or loads to exactly the original. scripts/fuzz.mjs runs the same
// cases by the thousand, each in a child process.
import test from 'ava';
import { Fuzzer } from './fuzz-cases.js';

const cases = 300; // per kind: about 15 s on 2 cores

for (const kind of ['checkpoint', 'state'] as const) {
  test(`${cases} corrupted ${kind} files: typed refusals or identical loads, nothing else`, async (t) => {
    t.timeout(120_000);
    const fuzzer = new Fuzzer();
    const tally = new Map<string, number>();
    for (let seed = 0; seed < cases; seed++) {
      const outcome = kind === 'state' ? await fuzzer.stateCase(seed) : await fuzzer.checkpointCase(seed);
      t.false(outcome.result.startsWith('VIOLATION'), `seed ${seed} (${outcome.mutation}): ${outcome.result}`);
      tally.set(outcome.result, (tally.get(outcome.result) ?? 0) + 1);
    }
    t.log([...tally].map(([r, n]) => `${r}: ${n}`).join(', '));
    t.true((tally.get('refused INVALID_CHECKPOINT') ?? 0) + (tally.get('refused INVALID_ARGUMENT') ?? 0) > cases / 2);
  });
}
