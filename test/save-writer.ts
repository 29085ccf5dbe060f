// A writer process for test/lock.test.ts: loads tiny-gpt2, edits, and saves its editor into one folder `rounds`
// times (another batch between saves), printing one JSON line per save attempt: saved (with the state's checksum and
// when the save finished) or refused (with the error's code and message). With `delayMs`, every synchronous file
// operation of the library waits 0–delayMs ms first, widening each window between them for the other writer.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { ConsecutiveEditor, HookedModel } from '../lib/index.js';
import { tinyGpt2 } from './helpers.js';

const [dir, seedText, roundsText, cacheDir, delayText] = process.argv.slice(2);
const seed = Number(seedText);
const delayMs = Number(delayText ?? 0);
if (delayMs > 0) {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let state = seed + 1;
  const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (const name of ['openSync', 'writeSync', 'closeSync', 'writeFileSync', 'readFileSync', 'renameSync', 'rmSync', 'linkSync', 'readdirSync', 'existsSync', 'statSync'] as const) {
    const original = fs[name] as (...args: unknown[]) => unknown;
    (fs as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      Atomics.wait(sleeper, 0, 0, random() * delayMs);
      return original(...args);
    };
  }
  syncBuiltinESMExports();  // the library's `import { renameSync } from 'node:fs'` bindings now see these
}
const subjects = ['Paris', 'Alice', 'Maria', 'Bob', 'London', 'France'];
await using model = await HookedModel.load(tinyGpt2);
await using editor = await ConsecutiveEditor.create(model, {
  stats: { corpus: `${tinyGpt2}/stats-corpus.txt`, cacheDir }, layers: [1, 2], lambda: 50, vSteps: 2,
});
for (let round = 0; round < Number(roundsText); round++) {
  const subject = subjects[(seed + round) % subjects.length];
  await editor.edit([{ prompt: `The home of {} is`, subject, target: seed % 2 === 0 ? ' Rome' : ' Spain' }]);
  try {
    await editor.save(dir);
    console.log(JSON.stringify({ saved: true, checksum: await editor.checksum(), step: editor.step, at: performance.timeOrigin + performance.now() }));
  } catch (err) {
    const e = err as Error & { code?: string };
    console.log(JSON.stringify({ saved: false, code: e.code, message: e.message }));
  }
}
