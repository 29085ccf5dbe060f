// A process for test/disk-full.test.ts, run in a mount namespace of its own where `dir` is a small tmpfs: saves an
// editor, fills the disk, and saves again (into the same folder, incremental; and into a new one, full), then frees
// the space and saves once more. Prints one JSON line per step.
import { readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConsecutiveEditor, HookedModel } from '../lib/index.js';
import { tinyGpt2 } from './helpers.js';

const [dir, cacheDir] = process.argv.slice(2);
const say = (o: object) => console.log(JSON.stringify(o));
const temporaries = (folder: string) => readdirSync(folder).filter((f) => f.includes('.tmp-'));
const filler = join(dir, 'filler');
/** Fills the disk until `leave` bytes are free. */
const fill = (leave: number) => {
  const { bavail, bsize } = statfsSync(dir);
  writeFileSync(filler, Buffer.alloc(Math.max(0, bavail * bsize - leave)));
};
/** The checksum of the state a fresh editor loads from `folder` (another model instance: one editor per model). */
const loaded = async (folder: string) => {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await ConsecutiveEditor.load(model, folder, { stats: { corpus: `${tinyGpt2}/stats-corpus.txt`, cacheDir } });
  return await editor.checksum();
};
const attempt = async (what: string, save: () => Promise<unknown>) => {
  try {
    await save();
    say({ what, saved: true });
  } catch (err) {
    const e = err as Error & { code?: string };
    say({ what, saved: false, code: e.code, name: e.name, message: e.message });
  }
};

await using model = await HookedModel.load(tinyGpt2);
await using editor = await ConsecutiveEditor.create(model, {
  stats: { corpus: `${tinyGpt2}/stats-corpus.txt`, cacheDir }, layers: [1, 2], lambda: 50, vSteps: 2,
});
const a = join(dir, 'a'), b = join(dir, 'b');
await editor.edit([{ prompt: 'The home of {} is', subject: 'Paris', target: ' Rome' }]);
const first = await editor.save(a);
const c1 = await editor.checksum();
await editor.edit([{ prompt: 'The home of {} is', subject: 'Alice', target: ' Spain' }]);
const c2 = await editor.checksum();

fill(16 * 1024); // a keys file may fit; ΔW does not
await attempt('incremental, disk full', () => editor.save(a));
say({ what: 'after', temporaries: temporaries(a), loads: (await loaded(a)) === c1 });
await attempt('full, disk full', () => editor.save(b));
say({ what: 'after', temporaries: temporaries(b), files: readdirSync(b).filter((f) => !f.startsWith('.')) });

rmSync(filler);
await attempt('incremental, space freed', () => editor.save(a));
say({ what: 'after', temporaries: temporaries(a), loads: (await loaded(a)) === c2 });
await attempt('full, space freed', () => editor.save(b));
say({ what: 'after', temporaries: temporaries(b), loads: (await loaded(b)) === c2, bytes: first.bytes });
