// A writer process for test/lock.test.ts: loads tiny-gpt2, edits, and saves its editor into one folder `rounds`
// times (another batch between saves), printing one JSON line per save attempt: saved (with the state's checksum and
// when the save finished) or refused (with the error's code and message).
import { ConsecutiveEditor, HookedModel } from '../lib/index.js';
import { tinyGpt2 } from './helpers.js';

const [dir, seedText, roundsText, cacheDir] = process.argv.slice(2);
const seed = Number(seedText);
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
