// HookedModel.generate's options beyond greedy decoding: sampling (temperature, top-k, top-p) checked against
// softmax of the model's own logits, stop strings, AbortSignal, per-token callbacks and the async iterator, also
// through an editor's hooks.
import test from 'ava';
import { AbortError, ConsecutiveEditor, HookedModel, Statistics } from '../lib/index.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';

const prompt = 'The city of Paris is in';
const V = 512;

/** softmax(logits / temperature) of the prompt's next token, in float64. */
async function nextTokenProbabilities(model: HookedModel, temperature: number): Promise<number[]> {
  const { data } = await model.logits([model.tokenizer.encodePrompt(prompt)], { logits: 'last' });
  const scaled = Array.from(data.subarray(0, V), (x) => x / temperature);
  const top = Math.max(...scaled);
  const e = scaled.map((x) => Math.exp(x - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

test('sampling follows softmax(logits / T) restricted to the top-p nucleus, and a seed repeats its tokens', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const temperature = 1.5;
  const topP = 0.6;
  const p = await nextTokenProbabilities(model, temperature);
  // The nucleus: the most likely tokens until their probability reaches topP.
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a]);
  const nucleus: number[] = [];
  for (let mass = 0; mass < topP; mass += p[order[nucleus.length]]) nucleus.push(order[nucleus.length]);
  const inNucleus = nucleus.reduce((s, i) => s + p[i], 0);
  t.true(nucleus.length >= 3, `a nucleus of ${nucleus.length} tokens`);
  const n = 600;
  const counts = new Map<number, number>();
  for (let seed = 0; seed < n; seed++) {
    const [token] = (await model.generate(prompt, { maxNewTokens: 1, temperature, topP, seed })).tokens;
    counts.set(token, (counts.get(token) ?? 0) + 1);
  }
  for (const [token, count] of counts) t.true(nucleus.includes(token), `token ${token} (${count}×) is outside the nucleus`);
  for (const token of nucleus) {
    const q = p[token] / inNucleus;
    const sd = Math.sqrt(n * q * (1 - q));
    const seen = counts.get(token) ?? 0;
    t.true(Math.abs(seen - n * q) <= 4.5 * sd + 1, `token ${token}: ${seen} of ${n}, expected ${(n * q).toFixed(1)} ± ${sd.toFixed(1)}`);
  }
  const a = await model.generate(prompt, { maxNewTokens: 12, temperature, topK: 40, topP: 0.9, seed: 7 });
  const b = await model.generate(prompt, { maxNewTokens: 12, temperature, topK: 40, topP: 0.9, seed: 7 });
  t.deepEqual(a.tokens, b.tokens);
  // Limits that leave one token are greedy.
  const greedy = await model.generate(prompt, { maxNewTokens: 12, stopAtEos: false });
  t.deepEqual((await model.generate(prompt, { maxNewTokens: 12, stopAtEos: false, topK: 1, seed: 3 })).tokens, greedy.tokens);
  t.deepEqual((await model.generate(prompt, { maxNewTokens: 12, stopAtEos: false, topP: 1e-9, temperature: 2, seed: 3 })).tokens, greedy.tokens);
});

test('a stop string ends the text before it and the tokens with the one that completed it', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const full = await model.generate(prompt, { maxNewTokens: 30, stopAtEos: false });
  t.is(full.finishReason, 'length');
  const stop = full.text.slice(Math.floor(full.text.length / 2), Math.floor(full.text.length / 2) + 3);
  const at = full.text.indexOf(stop);
  // The shortest prefix of the tokens whose text contains the stop string.
  const k = full.tokens.findIndex((_, i) => model.tokenizer.decode(full.tokens.slice(0, i + 1)).includes(stop)) + 1;
  const stopped = await model.generate(prompt, { maxNewTokens: 30, stopAtEos: false, stop: ['no such text here', stop] });
  t.is(stopped.finishReason, 'stop');
  t.is(stopped.text, full.text.slice(0, at));
  t.deepEqual(stopped.tokens, full.tokens.slice(0, k));
});

test('an AbortSignal stops the generation between tokens and rejects with AbortError; a throwing onToken rejects with its error', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const controller = new AbortController();
  let seen = 0;
  const aborted = model.generate(prompt, {
    maxNewTokens: 60, stopAtEos: false, signal: controller.signal,
    onToken: () => { if (++seen === 3) controller.abort(); },
  });
  await t.throwsAsync(aborted, { instanceOf: AbortError });
  t.is(seen, 3, 'no token after the abort');
  await t.throwsAsync(model.generate(prompt, { signal: AbortSignal.abort() }), { instanceOf: AbortError });
  const oops = new Error('handler failed');
  await t.throwsAsync(model.generate(prompt, { maxNewTokens: 10, onToken: () => { throw oops; } }), { is: oops });
  // The model is fine afterwards.
  t.is((await model.generate(prompt, { maxNewTokens: 5, stopAtEos: false })).tokens.length, 5);
});

test('generateStream yields each token and its text; the pieces make up the text; leaving early stops the generation', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const options = { maxNewTokens: 25, stopAtEos: false, temperature: 0.8, seed: 11 };
  const whole = await model.generate(prompt, options);
  const pieces = [];
  const stream = model.generateStream(prompt, options);
  let result = await stream.next();
  for (; !result.done; result = await stream.next()) pieces.push(result.value);
  t.deepEqual(pieces.map((p) => p.token), whole.tokens);
  // The pieces make up the text, but for an incomplete character at its very end (held back, never completed).
  const joined = pieces.map((p) => p.text).join('');
  t.true(whole.text.startsWith(joined) && /^\uFFFD*$/.test(whole.text.slice(joined.length)), `${JSON.stringify(joined)} vs ${JSON.stringify(whole.text)}`);
  t.deepEqual(result.value, whole);
  let taken = 0;
  for await (const _ of model.generateStream(prompt, { maxNewTokens: 100, stopAtEos: false })) if (++taken === 2) break;
  t.is(taken, 2);
  t.is((await model.generate(prompt, { maxNewTokens: 3, stopAtEos: false })).tokens.length, 3, 'the model is free again');
});

test('through comeba-hk\'s hooks: streamed, stopped and plain generation agree token for token', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 200, 48);
  const stats = await Statistics.collect(model, { corpus, layers: [1, 2], cacheDir: tempDir('comeba-gen-stats-') });
  // A prompt long enough for α = 2.2 (a z-score over n tokens is at most (n − 1)/√n).
  const long = 'In the morning, Maria walked to the old library';
  const before = await model.logits([model.tokenizer.encodePrompt(long)], { logits: 'last' });
  await using editor = await ConsecutiveEditor.create(model, { stats, layers: [1, 2], lambda: 0.5 });
  const report = await editor.edit([{ prompt: 'In the morning, {} walked to the old library', subject: 'Maria', target: ' London' }]);
  const plain = await model.generate(long, { maxNewTokens: 20, stopAtEos: false });
  const after = await model.logits([model.tokenizer.encodePrompt(long)], { logits: 'last' });
  t.true(report.realised > 0.5 && after.data.some((x, i) => Math.abs(x - before.data[i]) > 1e-3), `the hooks act on this prompt (realised ${report.realised})`);
  const streamed: number[] = [];
  for await (const piece of model.generateStream(long, { maxNewTokens: 20, stopAtEos: false })) streamed.push(piece.token);
  t.deepEqual(streamed, plain.tokens);
  const stop = plain.text.slice(-4);
  const stopped = await model.generate(long, { maxNewTokens: 20, stopAtEos: false, stop: [stop] });
  t.is(stopped.text, plain.text.slice(0, plain.text.indexOf(stop)));
  t.deepEqual(stopped.tokens, plain.tokens.slice(0, stopped.tokens.length));
});
