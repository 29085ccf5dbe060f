// Async behaviour and lifetime: the event loop keeps turning during long native work, disposal is
// idempotent and final, bad input is a typed error, and a failure never takes Node down.
import test from 'ava';
import { DisposedError, HookedModel, InvalidArgumentError, DeviceUnavailableError } from '../lib/index.js';
import { makeRandomGpt2, tinyGpt2 } from './helpers.js';

test('a timer keeps firing while a forward pass of over a second runs', async (t) => {
  const dir = makeRandomGpt2({ nLayer: 8, nEmbd: 512, nHead: 8, nCtx: 512, vocab: 512 });
  await using model = await HookedModel.load(dir);
  // Grow the batch until one forward takes over a second on this machine, however fast it is.
  for (let rows = 2; ; rows *= 2) {
    const batch = Array.from({ length: rows }, (_, b) => Array.from({ length: 512 }, (_, i) => (i * 7 + b) % 512));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const start = performance.now();
    await model.logits(batch);
    const elapsed = performance.now() - start;
    clearInterval(timer);
    if (elapsed < 1000 && rows < 256) continue;
    t.true(elapsed >= 1000, `even ${rows} rows took only ${elapsed.toFixed(0)} ms`);
    // A blocked loop would give zero ticks; a free one about elapsed/10.
    t.true(ticks >= elapsed / 10 / 4, `${ticks} ticks in ${elapsed.toFixed(0)} ms`);
    t.log(`forward of ${rows} × 512 tokens: ${elapsed.toFixed(0)} ms, ${ticks} timer ticks`);
    return;
  }
});

test('dispose is idempotent and later calls throw DisposedError', async (t) => {
  const model = await HookedModel.load(tinyGpt2);
  const pending = model.logits([[1, 2, 3]]);
  await model.dispose();
  await model.dispose();
  t.true(model.disposed);
  // A call already running completes: it holds the weights until it is done.
  t.deepEqual((await pending).shape, [1, 3, 512]);
  await t.throwsAsync(model.logits([[1]]), { instanceOf: DisposedError });
  await t.throwsAsync(model.generate('Hello'), { instanceOf: DisposedError });
});

test('Symbol.asyncDispose frees the model at the end of the scope', async (t) => {
  let escaped: HookedModel | undefined;
  {
    await using model = await HookedModel.load(tinyGpt2);
    escaped = model;
    t.false(model.disposed);
  }
  t.true(escaped.disposed);
});

test('bad token input is a typed error naming the problem', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const cases: [unknown, RegExp][] = [
    [[], /batch is empty/],
    [[[]], /row 0 has no tokens/],
    [[[1, 512]], /token id 512 outside the vocabulary/],
    [[[1, -1]], /token id -1/],
    [[[1.5]], /expected an integer/],
    [['abc'], /expected an array of token ids/],
    [[Array(129).fill(1)], /context is 128/],
  ];
  for (const [batch, message] of cases) {
    const err = await t.throwsAsync(model.logits(batch as number[][]), { instanceOf: InvalidArgumentError });
    t.regex(err!.message, message);
  }
  await t.throwsAsync(model.generate([1, 2], { maxNewTokens: 200 }), { instanceOf: InvalidArgumentError, message: /context is 128/ });
});

test('bad load options are typed errors', async (t) => {
  await t.throwsAsync(HookedModel.load(tinyGpt2, { dtype: 'float8' as never }), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(HookedModel.load(tinyGpt2, { device: 'tpu' as never }), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(HookedModel.load(tinyGpt2, { device: 'cuda:7' }), { instanceOf: DeviceUnavailableError });
});
