// Inputs a careless or hostile user can give, each once a crash, a hang or a silent wrong result: now a
// typed error that names the problem, with Node alive and nothing changed. Numbers refer to the items
// of the hardening issue; checkpoint-level cases live in checkpoint-errors.test.ts, the fuzzer in fuzz.test.ts.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  ConsecutiveEditor, DisposedError, HookedModel, InvalidArgumentError, InvalidRequestError, ModelMismatchError, Statistics,
  type EditRequest,
} from '../lib/index.js';
import { prepareRequest } from '../lib/edit/requests.js';
import {
  copyFixture, makeRandomCorpus, makeRandomGpt2, rawSafetensors, tempDir, tinyGpt2, tinyGptj,
} from './helpers.js';
import { corruptState, rebindFiles, rewriteState } from './state-files.js';

const layers = [1, 2];
const statsDir = tempDir('comeba-stats-');
let corpus: string | undefined;

async function editorFor(model: HookedModel): Promise<ConsecutiveEditor> {
  corpus ??= makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 300, 40);
  return ConsecutiveEditor.create(model, { stats: { corpus, cacheDir: statsDir }, layers, lambda: 50 });
}

const requests: EditRequest[] = [
  { prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' },
  { prompt: 'Alice works as a doctor in', subject: 'Alice', target: ' Rome' },
];

// ---- 1. JS input converted to tensors inside the error boundary ----------------------------------

test('1. replaceWeight with a negative, zero-by-negative or overflowing shape is a typed error, not an abort', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const at = model.editedModule(1);
  for (const shape of [[-2, -2], [0, -5], [2 ** 32, 2 ** 32]]) {
    const err = await t.throwsAsync(model.run([[1, 2, 3]], { hooks: [{ at, replaceWeight: { data: new Float32Array(4), shape } }] }), {
      instanceOf: InvalidArgumentError,
    });
    t.regex(err!.message, /negative dimension|too large|values but its shape needs/, String(shape));
  }
  t.is((await model.logits([[1, 2]])).shape[2], 512); // still alive
});

// ---- 2. prompts inserted literally ----------------------------------------------------------------

test("2. '$$', '$&' and '$'' in a prompt stay as they are in every context", async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  for (const prompt of ['It costs $$5 in {} today', 'A $& B {} C', "x $' y {} z", 'The $1 {} $<n>']) {
    const prepared = prepareRequest(model.tokenizer, { prompt, subject: 'Paris', target: 'Rome' }, ['{}', 'Some text. {}'], 0, 128);
    t.is(model.tokenizer.decode(prepared.contexts[0]), prompt.replace('{}', () => 'Paris'));
    t.is(model.tokenizer.decode(prepared.contexts[1]), `Some text. ${prompt.replace('{}', () => 'Paris')}`);
  }
});

// ---- 4. a saved editor state is verified before it is used ---------------------------------------

async function savedEditor(): Promise<{ dir: string; checksum: string }> {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await editorFor(model);
  await editor.edit(requests);
  const dir = tempDir('comeba-state-');
  await editor.save(dir);
  return { dir, checksum: await editor.checksum() };
}

const stateFileOf = (dir: string) => join(dir, JSON.parse(readFileSync(join(dir, 'editor.json'), 'utf8')).stateFile as string);

test('4. a state file with a flipped data byte, a bad α, or NaN/Inf in ΔW or C_accu is refused at load', async (t) => {
  const { dir, checksum } = await savedEditor();
  await using model = await HookedModel.load(tinyGpt2);
  const original = readFileSync(stateFileOf(dir));
  const cases: [string, () => void, RegExp][] = [
    ['a flipped data byte', () => corruptState(stateFileOf(dir), (bytes) => { bytes[bytes.length - 3] ^= 0x10; }), /does not match its digest/],
    ['α NaN (digests recomputed)', () => rewriteState(stateFileOf(dir), 'alpha', (v) => { v[0] = NaN; }), /α of layer 1 is not a finite number/],
    ['α +Inf', () => rewriteState(stateFileOf(dir), 'alpha', (v) => { v[1] = Infinity; }), /α of layer 2 is not a finite number/],
    ['α negative', () => rewriteState(stateFileOf(dir), 'alpha', (v) => { v[0] = -1; }), /α of layer 1 is not a finite number ≥ 0/],
    ['NaN in ΔW', () => rewriteState(stateFileOf(dir), 'delta.2', (v) => { v[7] = NaN; }), /ΔW of layer 2 contains NaN or Inf/],
    ['Inf in C_accu', () => rewriteState(stateFileOf(dir), 'c_accu.1', (v) => { v[0] = -Infinity; }), /C_accu of layer 1 is not a finite/],
  ];
  for (const [name, corrupt, message] of cases) {
    writeFileSync(stateFileOf(dir), original);
    corrupt();
    rebindFiles(dir); // a rewritten header with editor.json's binding updated: the value checks refuse it
    const err = await t.throwsAsync(ConsecutiveEditor.load(model, dir), { instanceOf: InvalidArgumentError }, name);
    t.regex(err!.message, message, name);
  }
  writeFileSync(stateFileOf(dir), original);
  rebindFiles(dir);
  await using editor = await ConsecutiveEditor.load(model, dir);
  t.is(await editor.checksum(), checksum);
});

test('4. a damaged editor.json is a typed error that says what is wrong', async (t) => {
  const { dir } = await savedEditor();
  await using model = await HookedModel.load(tinyGpt2);
  const path = join(dir, 'editor.json');
  const saved = JSON.parse(readFileSync(path, 'utf8'));
  const cases: [string, string, RegExp][] = [
    ['not JSON', '{"format": "comeba-editor/1", ', /not valid JSON/],
    ['null', 'null', /not a JSON object/],
    ['without options', JSON.stringify({ ...saved, options: undefined }), /options are missing/],
    ['options lacking λ', JSON.stringify({ ...saved, options: { ...saved.options, lambda: undefined } }), /options\.lambda is missing/],
    ['a state file outside the folder', JSON.stringify({ ...saved, stateFile: '../elsewhere.safetensors' }), /stateFile/],
    ['a negative step', JSON.stringify({ ...saved, step: -1 }), /step/],
  ];
  for (const [name, text, message] of cases) {
    writeFileSync(path, text);
    const err = await t.throwsAsync(ConsecutiveEditor.load(model, dir), { instanceOf: InvalidArgumentError }, name);
    t.regex(err!.message, message, name);
  }
});

test('4. save removes temporaries that killed writers left behind, and keeps those of live writers', async (t) => {
  const { dir } = await savedEditor();
  const dead = join(dir, 'state-7.safetensors.tmp-999999999-0');
  const live = join(dir, `editor.json.tmp-${process.ppid}-3`); // a process that runs: our parent
  writeFileSync(dead, 'half a file');
  writeFileSync(live, 'being written');
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await ConsecutiveEditor.load(model, dir);
  await editor.save(dir);
  t.false(existsSync(dead));
  t.true(existsSync(live));
});

test('4. loads keep succeeding while other writers save new steps into the same folder', async (t) => {
  const dir = tempDir('comeba-shared-state-');
  // Two writers at different steps save in turn; a reader loads all the while.
  const writers: ConsecutiveEditor[] = [];
  const models: HookedModel[] = [];
  for (const batches of [1, 2]) {
    const model = await HookedModel.load(tinyGpt2);
    const editor = await editorFor(model);
    for (let i = 0; i < batches; i++) await editor.edit(requests);
    models.push(model);
    writers.push(editor);
  }
  await writers[0].save(dir);
  const reader = await HookedModel.load(tinyGpt2);
  let saving = true;
  const saves = (async () => {
    for (let i = 0; i < 40; i++) await writers[i % 2].save(dir);
    saving = false;
  })();
  let loads = 0;
  while (saving) {
    const editor = await ConsecutiveEditor.load(reader, dir);
    t.true(editor.step === 1 || editor.step === 2);
    await editor.dispose();
    loads++;
  }
  await saves;
  t.log(`${loads} loads during 40 saves`);
  t.true(loads > 0);
  for (const m of [...models, reader]) await m.dispose();
});

// ---- 5. the fingerprint covers every byte of the weights ------------------------------------------

test('5. a change past the first MiB of the weights changes the fingerprint, and a saved state is refused', async (t) => {
  const dir = makeRandomGpt2({ nLayer: 3, nEmbd: 128, nHead: 4, nCtx: 64, vocab: 512 });
  const path = join(dir, 'model.safetensors');
  t.true(readFileSync(path).length > 2 << 20);
  const stateDir = tempDir('comeba-state-');
  let before: string;
  {
    await using model = await HookedModel.load(dir);
    before = model.fingerprint;
    await using editor = await ConsecutiveEditor.create(model, {
      stats: { corpus: makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 50, 20), cacheDir: statsDir }, layers: [1], lambda: 50,
    });
    await editor.save(stateDir);
  }
  const bytes = readFileSync(path);
  bytes[bytes.length - 5] ^= 0x01; // last tensor, far past the first MiB
  writeFileSync(path, bytes);
  await using model = await HookedModel.load(dir);
  t.not(model.fingerprint, before);
  await t.throwsAsync(ConsecutiveEditor.load(model, stateDir), { instanceOf: ModelMismatchError });
});

// ---- 9. untyped or misleading errors ----------------------------------------------------------------

test('9. bad arguments to load, generate, run and edit are InvalidArgumentErrors', async (t) => {
  await t.throwsAsync(HookedModel.load(tinyGpt2, null as never), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(HookedModel.load(tinyGpt2, { device: 'cuda:99999999999999999999' }), { instanceOf: InvalidArgumentError, message: /unknown device/ });
  await using model = await HookedModel.load(tinyGpt2);
  for (const maxNewTokens of [0, -1, 1.5, NaN]) {
    await t.throwsAsync(model.generate('Hello', { maxNewTokens }), { instanceOf: InvalidArgumentError, message: /maxNewTokens/ });
  }
  await t.throwsAsync(model.generate('Hello', { topK: -2 }), { instanceOf: InvalidArgumentError, message: /topK/ });
  const err = await t.throwsAsync(model.run([[1, 2]], { hooks: [{ at: 'transformer.h.99999999999999999999', record: 'output', positions: [[0]] }] }), {
    instanceOf: InvalidArgumentError,
  });
  t.regex(err!.message, /layer 99999999999999999999 does not exist/);
  await using editor = await editorFor(model);
  await t.throwsAsync(editor.edit(requests, { signal: {} as AbortSignal }), { instanceOf: InvalidArgumentError, message: /AbortSignal/ });
  await t.throwsAsync(editor.edit(requests, { onProgress: 5 as never }), { instanceOf: InvalidArgumentError, message: /onProgress/ });
  t.is(editor.step, 0);
});

test('9. a prompt too long for the context is an InvalidRequestError with the index of the request', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await editorFor(model);
  const long = `${'word '.repeat(model.info.contextLength)}{}`;
  const err = await t.throwsAsync(editor.edit([requests[0], { prompt: long, subject: 'Paris', target: 'Rome' }]), { instanceOf: InvalidRequestError });
  t.is(err!.index, 1);
  t.regex(err!.message, /exceed the model's context of 128 tokens/);
  t.is(editor.step, 0);
});

test('9. statistics that are not positive semi-definite are refused at load', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const F = model.info.dFf;
  // I − 2uuᵀ with u = (e0 + e1)/√2: symmetric, diagonal ≥ 0, eigenvalue −1.
  const sum = new Float64Array(F * F);
  for (let i = 0; i < F; i++) sum[i * F + i] = 1;
  sum[0] = 0; sum[F + 1] = 0; sum[1] = -1; sum[F] = -1;
  const header = {
    'sum.1': { dtype: 'F64', shape: [F, F], data_offsets: [0, sum.byteLength] },
    count: { dtype: 'I64', shape: [1], data_offsets: [sum.byteLength, sum.byteLength + 8] },
  };
  const file = join(tempDir(), 'indefinite.safetensors');
  writeFileSync(file, rawSafetensors(header, Buffer.concat([Buffer.from(sum.buffer), Buffer.from(new BigInt64Array([1n]).buffer)])));
  const err = await t.throwsAsync(Statistics.load(model, file), { instanceOf: InvalidArgumentError });
  t.regex(err!.message, /'sum\.1' is not positive semi-definite/);
  sum[1] = 0; sum[F] = 0; sum[F + 1] = 1; sum[0] = 1; // the identity is fine
  writeFileSync(file, rawSafetensors(header, Buffer.concat([Buffer.from(sum.buffer), Buffer.from(new BigInt64Array([1n]).buffer)])));
  await using stats = await Statistics.load(model, file);
  t.deepEqual(stats.provenance.layers, [1]);
});

test('9. a GPT-J config with n_positions 1e9 loads without allocating for positions it never sees', async (t) => {
  const files = ['config.json', 'model.safetensors.index.json', 'tokenizer.json', 'tokenizer_config.json',
    ...readdirSync(tinyGptj).filter((f) => f.endsWith('.safetensors'))];
  const dir = copyFixture(tinyGptj, files);
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, n_positions: 1e9 }));
  const rss = process.memoryUsage.rss();
  await using model = await HookedModel.load(dir);
  t.true(process.memoryUsage.rss() - rss < 200 << 20, 'the load took more than 200 MB');
  await using reference = await HookedModel.load(tinyGptj);
  t.deepEqual((await model.logits([[5, 6, 7]])).data, (await reference.logits([[5, 6, 7]])).data);
});

test('9. an onProgress handler that throws rejects the edit with its error and leaves the editor unchanged', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await editorFor(model);
  await editor.edit(requests);
  const checksum = await editor.checksum();
  for (const phase of ['values', 'alpha', 'done']) {
    const boom = new Error(`handler failed at ${phase}`);
    const err = await t.throwsAsync(editor.edit(requests, { onProgress: (p) => { if (p.phase === phase) throw boom; } }));
    t.is(err, boom);
    t.is(await editor.checksum(), checksum, phase);
    t.is(editor.step, 1);
  }
  await editor.edit(requests, { onProgress: () => undefined });
  t.is(editor.step, 2);
});

// ---- 10. disposal cascades ----------------------------------------------------------------------

test("10. disposing a model disposes its editor and statistics; they refuse work instead of using freed weights", async (t) => {
  const model = await HookedModel.load(tinyGpt2);
  const editor = await editorFor(model);
  const stats = editor.statistics;
  await editor.edit(requests);
  await model.dispose();
  t.true(editor.disposed);
  t.true(stats.disposed);
  await t.throwsAsync(editor.edit(requests), { instanceOf: DisposedError });
  await t.throwsAsync(editor.save(tempDir()), { instanceOf: DisposedError });
  await t.throwsAsync(stats.secondMoment(1), { instanceOf: DisposedError });
  // An editor disposed first leaves the model working.
  await using other = await HookedModel.load(tinyGpt2);
  const e2 = await editorFor(other);
  await e2.dispose();
  t.is((await other.logits([[1, 2]])).shape[2], 512);
});

// ---- 7. non-regular files -------------------------------------------------------------------------

test('7. a FIFO in place of a comeba.json or a saved editor.json is refused, not read forever', async (t) => {
  const dir = copyFixture(tinyGpt2, ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  execFileSync('mkfifo', [join(dir, 'comeba.json')]);
  await using model = await HookedModel.load(dir);
  await t.throwsAsync(editorFor(model), { instanceOf: InvalidArgumentError, message: /not a regular file/ });
  const stateDir = tempDir();
  execFileSync('mkfifo', [join(stateDir, 'editor.json')]);
  await using plain = await HookedModel.load(tinyGpt2);
  await t.throwsAsync(ConsecutiveEditor.load(plain, stateDir), { instanceOf: InvalidArgumentError, message: /not a regular file/ });
});
