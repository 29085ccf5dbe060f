// Incremental editor checkpoints: the first save into a folder writes the full state, later ones the batches'
// keys and ΔW; loading rebuilds C_accu bit for bit; a half-written checkpoint leaves the last complete one;
// folders saved by the previous format (editor.json format 1) still load.
import test from 'ava';
import { copyFileSync, cpSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConsecutiveEditor, HookedModel, InvalidArgumentError, type EditMode, type EditRequest, type ReEdit } from '../lib/index.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';
import { corruptState } from './state-files.js';

const statsDir = tempDir('comeba-stats-');
let corpus: string | undefined;
const subjects = ['Paris', 'Alice', 'Maria', 'Bob', 'London', 'France', 'Rome', 'Spain'];
const batch = (b: number, n = 3): EditRequest[] => Array.from({ length: n }, (_, i) => ({
  prompt: 'The city of {} is in', subject: subjects[(b + i) % subjects.length], target: subjects[(b * 3 + i + 1) % subjects.length],
}));

async function editorFor(model: HookedModel, mode: EditMode = 'comeba-hk', reedit: ReEdit = 'none'): Promise<ConsecutiveEditor> {
  corpus ??= makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 300, 40);
  return ConsecutiveEditor.create(model, { mode, reedit, stats: { corpus, cacheDir: statsDir }, layers: [1, 2], lambda: 50, vSteps: 3 });
}

const editorJson = (dir: string) => JSON.parse(readFileSync(join(dir, 'editor.json'), 'utf8'));

// comeba-hk+retarget: the subjects come back every 8 requests, so its key history moves keys and is saved too.
for (const [mode, reedit] of [['comeba-hk', 'none'], ['comeba-hk', 'retarget'], ['comeba-wo-hk', 'none'], ['memit', 'none']] as const) {
  test(`${mode}${reedit === 'none' ? '' : `+${reedit}`}: later saves write only keys and ΔW; every checkpoint loads bit-identical, and a loaded editor goes on saving incrementally`, async (t) => {
    const dir = tempDir('comeba-state-');
    await using model = await HookedModel.load(tinyGpt2);
    await using editor = await editorFor(model, mode, reedit);
    await editor.edit(batch(0));
    const full = await editor.save(dir);
    t.false(full.incremental);
    const reports = [];
    const checksums = [await editor.checksum()];
    for (let b = 1; b <= 4; b++) {
      await editor.edit(batch(b));
      if (b % 2 === 0) {
        reports.push(await editor.save(dir));
        checksums.push(await editor.checksum());
      }
    }
    // memit's C never changes: its checkpoints are ΔW (as large as a full save) and an empty keys file.
    const bound = mode === 'memit' ? full.bytes + 1024 : full.bytes / 2;
    t.true(reports.every((r) => r.incremental && r.bytes > 0 && r.bytes < bound), JSON.stringify({ full, reports }));
    const saved = editorJson(dir);
    t.like(saved, { format: 'comeba-editor/2', step: 5 });
    t.is(saved.keyFiles.length, 2);
    t.deepEqual(readdirSync(dir).sort(), ['editor.json', saved.base, ...saved.keyFiles, saved.stateFile].sort());
    t.is((await editor.save(dir)).bytes, 0, 'nothing new: nothing written');

    // Load in another model instance: the same state to the bit; then both edit on and save into their folders.
    await using model2 = await HookedModel.load(tinyGpt2);
    await using loaded = await ConsecutiveEditor.load(model2, dir);
    t.is(loaded.step, 5);
    t.is(await loaded.checksum(), checksums.at(-1)!);
    // The value losses too: under retarget they include the subjects' earlier edits (France and Rome come back),
    // which editor.json carries; three Adam steps can end at the same state without them.
    const [fromLoaded, fromOriginal] = [await loaded.edit(batch(5)), await editor.edit(batch(5))];
    t.deepEqual(fromLoaded.values, fromOriginal.values);
    t.is(await loaded.checksum(), await editor.checksum());
    const next = await loaded.save(dir);
    t.true(next.incremental);
    await using model3 = await HookedModel.load(tinyGpt2);
    await using again = await ConsecutiveEditor.load(model3, dir);
    t.is(await again.checksum(), await editor.checksum());
    t.is(editorJson(dir).keyFiles.length, 3);
  });
}

test('a checkpoint killed half-way (its files written, editor.json not) leaves the last complete one, and the next save removes the leftovers', async (t) => {
  const dir = tempDir('comeba-state-');
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await editorFor(model);
  await editor.edit(batch(0));
  await editor.save(dir);
  await editor.edit(batch(1));
  await editor.save(dir);
  const complete = await editor.checksum();
  const before = new Map(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));
  // The next checkpoint's files land, then the process dies before editor.json moves on (so nothing is removed).
  await editor.edit(batch(2));
  await editor.save(dir);
  const written = editorJson(dir);
  for (const [f, bytes] of before) writeFileSync(join(dir, f), bytes);
  t.true(readdirSync(dir).includes(written.stateFile));
  await using model2 = await HookedModel.load(tinyGpt2);
  await using loaded = await ConsecutiveEditor.load(model2, dir);
  t.is(loaded.step, 2);
  t.is(await loaded.checksum(), complete);
  await loaded.edit(batch(2));
  t.true((await loaded.save(dir)).incremental);
  const now = editorJson(dir);
  t.deepEqual(readdirSync(dir).sort(), ['editor.json', now.base, ...now.keyFiles, now.stateFile].sort(), 'the leftovers are gone');
  t.is(await loaded.checksum(), await editor.checksum());
});

test('a damaged chain is refused with what is wrong: a corrupt keys file, keys files out of order, a missing one', async (t) => {
  const dir = tempDir('comeba-state-');
  {
    await using model = await HookedModel.load(tinyGpt2);
    await using editor = await editorFor(model);
    for (let b = 0; b < 3; b++) {
      await editor.edit(batch(b));
      await editor.save(dir);
    }
  }
  const saved = editorJson(dir);
  const original = readFileSync(join(dir, 'editor.json'), 'utf8');
  await using model = await HookedModel.load(tinyGpt2);
  const refused = async (message: RegExp) => {
    const err = await t.throwsAsync(ConsecutiveEditor.load(model, dir), { instanceOf: InvalidArgumentError });
    t.regex(err!.message, message);
  };
  writeFileSync(join(dir, 'editor.json'), JSON.stringify({ ...saved, keyFiles: [...saved.keyFiles].reverse() }));
  await refused(/holds the batches after step 2, but the state before it is at step 1/);
  writeFileSync(join(dir, 'editor.json'), JSON.stringify({ ...saved, keyFiles: [saved.keyFiles[1]] }));
  await refused(/holds the batches after step 2, but the state before it is at step 1/);
  writeFileSync(join(dir, 'editor.json'), JSON.stringify({ ...saved, keyFiles: ['../keys-00000000-1-2.safetensors', saved.keyFiles[1]] }));
  await refused(/keyFiles is not a list/);
  writeFileSync(join(dir, 'editor.json'), original);
  const keys = join(dir, saved.keyFiles[0]);
  const bytes = readFileSync(keys);
  corruptState(keys, (b) => { b[b.length - 5] ^= 0x01; });
  await refused(/does not match its digest/);
  writeFileSync(keys, bytes);
  renameSync(keys, `${keys}.moved`);
  await refused(/cannot open|No such file|cannot load/);
  renameSync(`${keys}.moved`, keys);
  await using editor = await ConsecutiveEditor.load(model, dir);
  t.is(editor.step, 3);
});

test('a folder saved in format 1 (editor.json with a full state-<n>.safetensors) still loads, and the next save starts a chain there', async (t) => {
  const dir = tempDir('comeba-state-');
  let checksum: string;
  {
    await using model = await HookedModel.load(tinyGpt2);
    await using editor = await editorFor(model);
    await editor.edit(batch(0));
    await editor.edit(batch(1));
    await editor.save(dir);
    checksum = await editor.checksum();
  }
  // Format 1 stored exactly the base file's content under state-<step>.safetensors.
  const saved = editorJson(dir);
  renameSync(join(dir, saved.base), join(dir, 'state-2.safetensors'));
  const { chain, base, keyFiles, ...v1 } = saved;
  writeFileSync(join(dir, 'editor.json'), JSON.stringify({ ...v1, format: 'comeba-editor/1', stateFile: 'state-2.safetensors' }));
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await ConsecutiveEditor.load(model, dir);
  t.is(await editor.checksum(), checksum);
  await editor.edit(batch(2));
  t.false((await editor.save(dir)).incremental, 'the first save after a format-1 load writes a base');
  t.true(readdirSync(dir).every((f) => f === 'editor.json' || f.startsWith('base-')));
});

test('bytes on disk over 100 batches: one base, then keys and ΔW per checkpoint, as the formula says', async (t) => {
  const dir = tempDir('comeba-state-');
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await editorFor(model);
  const { dModel: C, dFf: F } = model.info;
  const L = 2;
  const n = 10;
  const written: number[] = [];
  for (let b = 0; b < 100; b++) {
    await editor.edit(batch(b, n));
    if ((b + 1) % 10 === 0) written.push((await editor.save(dir)).bytes);
  }
  const onDisk = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
  const full = written[0];
  // Each incremental checkpoint: ΔW (C·F float32) and the keys of its 10 batches (F × 100 float64) per layer,
  // plus headers; the full one adds C_accu (F² float64) per layer.
  const payload = L * (C * F * 4 + F * 10 * n * 8);
  for (const w of written.slice(1)) t.true(w >= payload && w < payload + 16384, `${w} vs ${payload}`);
  t.true(full >= L * (C * F * 4 + F * F * 8));
  t.true(onDisk < full + 9 * L * F * 10 * n * 8 + L * C * F * 4 + 32768);
  t.log(`full ${full} B, incremental ${written[1]} B per checkpoint of 10 batches; ${onDisk} B on disk after 100 batches (format-1 saves: ${full} B each)`);
});

test('two copies of a folder that both go on editing: a file of one copy in the other\'s folder is refused, naming it', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const a = tempDir('comeba-copy-a-');
  const b = tempDir('comeba-copy-b-');
  {
    await using editor = await editorFor(model);
    await editor.edit(batch(0));
    await editor.save(a);
    await editor.edit(batch(1));
    await editor.save(a);
  }
  cpSync(a, b, { recursive: true });
  // Each copy goes on with its own batch: both write keys-<chain>-2-3 and delta-<chain>-3.
  for (const [dir, b0] of [[a, 2], [b, 7]] as const) {
    await using editor = await ConsecutiveEditor.load(model, dir);
    await editor.edit(batch(b0));
    await editor.save(dir);
  }
  const named = (dir: string) => JSON.parse(readFileSync(join(dir, 'editor.json'), 'utf8')) as { keyFiles: string[]; stateFile: string };
  t.deepEqual(named(a), { ...named(a), keyFiles: named(b).keyFiles, stateFile: named(b).stateFile }, 'the copies name the same files');
  const checksumOfA = await (async () => { await using e = await ConsecutiveEditor.load(model, a); return await e.checksum(); })();
  for (const file of [named(a).keyFiles.at(-1)!, named(a).stateFile]) {
    const mixed = tempDir('comeba-mixed-');
    cpSync(a, mixed, { recursive: true });
    copyFileSync(join(b, file), join(mixed, file));
    await t.throwsAsync(ConsecutiveEditor.load(model, mixed), { instanceOf: InvalidArgumentError, message: new RegExp(`${file} is not the file .*editor\\.json was saved with`) });
  }
  await using intact = await ConsecutiveEditor.load(model, a);
  t.is(await intact.checksum(), checksumOfA);
});

test('held keys are bounded: once they outweigh a full state (d_ff columns), they are dropped and the next save is a full one', async (t) => {
  const dir = tempDir('comeba-held-');
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await editorFor(model);
  const F = model.info.dFf;
  await editor.edit(batch(0));
  await editor.save(dir);
  // Below d_ff held columns: the next save is incremental.
  let columns = 0;
  for (let b = 1; columns + 32 < F; b++, columns += 32) await editor.edit(batch(b, 32));
  t.true((await editor.save(dir)).incremental, `${columns} columns held`);
  // Reaching d_ff columns since that save: the keys are dropped, and the next save writes the full state.
  for (let b = 20, held = 0; held < F; b++, held += 32) await editor.edit(batch(b, 32));
  const full = await editor.save(dir);
  t.false(full.incremental);
  const checksum = await editor.checksum();
  await editor.dispose(); // one editor per model
  await using loaded = await ConsecutiveEditor.load(model, dir);
  t.is(await loaded.checksum(), checksum);
});
