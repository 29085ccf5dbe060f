// Evaluator metrics against a straightforward per-record reference written here: one unpadded forward per
// prompt, argmax and log-softmax in JS.
import test from 'ava';
import { ConsecutiveEditor, Evaluator, HookedModel, InvalidArgumentError, nGramEntropy, Statistics, type EvalRecord } from '../lib/index.js';
import { fixtureModels, makeRandomCorpus, referenceGeneration, tempDir, tinyGpt2 } from './helpers.js';

const records: EvalRecord[] = [
  { prompt: 'The city of Paris is in', target: 'Spain', rephrase: 'Paris lies in the country of', locality: { prompt: 'Alice works as a doctor in', answer: 'London' }, trueTarget: 'France' },
  { prompt: 'Alice works as a', target: 'lawyer in Rome', rephrase: 'By profession Alice is a', locality: { prompt: 'Bob speaks', answer: 'French and lives' }, trueTarget: 'doctor' },
  { prompt: 'The capital of Spain is', target: 'Berlin', trueTarget: 'Madrid' },
  { prompt: 'Maria walked to the old', target: 'library', rephrase: 'In the morning, Maria went to the', locality: { prompt: 'The city of', answer: 'Paris' }, trueTarget: 'house' },
];

/**
 * Per-token argmax and mean NLL of `target` after `prompt`, from one unpadded forward over EasyEdit's row
 * `prompt + " " + target`, the whole target included (METHOD.md §6); `short` drops its last token, as comeba's
 * rows did before.
 */
async function reference(model: HookedModel, prompt: string, target: string, short = false) {
  const p = model.tokenizer.encode(prompt);
  const t = model.tokenizer.encode(` ${target}`);
  const logits = await model.logits([[...p, ...(short ? t.slice(0, -1) : t)]]);
  const V = logits.shape[2];
  const argmax: number[] = [];
  let nll = 0;
  t.forEach((id, k) => {
    const row = Array.from(logits.data.subarray((p.length - 1 + k) * V, (p.length + k) * V));
    const max = Math.max(...row);
    argmax.push(row.indexOf(max));
    nll -= row[id] - max - Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
  });
  return { argmax, nll: nll / t.length, target: t };
}

const acc = (a: number[], b: number[]) => (100 * b.filter((id, i) => a[i] === id).length) / b.length;
const avg = (v: number[]) => v.reduce((s, x) => s + x, 0) / v.length;

test('metrics equal a per-record reference, before and after an edit', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  const evaluator = new Evaluator(model, { batchSize: 3, probabilities: true });
  const snapshot = await evaluator.snapshot(records);
  const unedited = await Promise.all(records.map((r) => (r.locality ? reference(model, r.locality.prompt, r.locality.answer) : null)));
  t.deepEqual(snapshot.locality, unedited.map((u) => u?.argmax ?? null));

  const check = async () => {
    const result = await evaluator.evaluate(records, snapshot);
    const rel: number[] = [], gen: number[] = [], loc: number[] = [], eff: number[] = [], para: number[] = [], nb: number[] = [];
    for (const [i, r] of records.entries()) {
      const a = await reference(model, r.prompt, r.target);
      rel.push(acc(a.argmax, a.target));
      t.is(result.records[i].reliability, rel[rel.length - 1]);
      const aTrue = await reference(model, r.prompt, r.trueTarget!);
      eff.push(Number(a.nll < aTrue.nll));
      if (r.rephrase) {
        const g = await reference(model, r.rephrase, r.target);
        gen.push(acc(g.argmax, g.target));
        para.push(Number(g.nll < (await reference(model, r.rephrase, r.trueTarget!)).nll));
      }
      if (r.locality) {
        const l = await reference(model, r.locality.prompt, r.locality.answer);
        loc.push(acc(l.argmax, unedited[i]!.argmax));
        nb.push(Number(l.nll < (await reference(model, r.locality.prompt, r.target)).nll));
      }
    }
    t.is(result.reliability, avg(rel));
    t.is(result.generality, avg(gen));
    t.is(result.locality, avg(loc));
    t.is(result.average, (avg(rel) + avg(gen) + avg(loc)) / 3);
    t.deepEqual(result.probabilities, { efficacy: 100 * avg(eff), paraphrase: 100 * avg(para), neighborhood: 100 * avg(nb) });
    t.is(result.records[2].generality, undefined);
    return result;
  };
  const before = await check();
  t.is(before.locality, 100);

  const corpus = makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 200, 32);
  const stats = await Statistics.collect(model, { corpus, layers: [1, 2], cacheDir: tempDir() });
  const requests = records.map((r) => ({ prompt: r.prompt, subject: r.prompt.split(' ').find((w) => /^[A-Z]/.test(w) && w !== 'The' && w !== 'In')!, target: r.target }));
  {
    await using editor = await ConsecutiveEditor.create(model, { stats, layers: [1, 2], lambda: 20, mode: 'memit' });
    await editor.edit(requests);
    const after = await check();
    t.notDeepEqual(after.records, before.records, 'the edit changed something to measure');
  }
  // comeba-hk: the validated hooks' z-score is taken over the whole row, so the row must be EasyEdit's.
  await using editor = await ConsecutiveEditor.create(model, { stats, layers: [1, 2], lambda: 20, alphaZ: 0.3 });
  await editor.edit(requests);
  const hooked = await check();
  t.notDeepEqual(hooked.records, before.records, 'the hooks changed something to measure');
  // The scoring primitive's NLL is the full row's, and measurably not that of the row without its last target
  // token (another z-score over the row, other swaps: this tiny model's argmax happens not to move, its NLL does).
  const multi = records.filter((r) => model.tokenizer.encode(` ${r.target}`).length > 1);
  const scored = await model.native.scoreTargets(multi.map((r) => model.tokenizer.encode(r.prompt)), multi.map((r) => model.tokenizer.encode(` ${r.target}`)));
  let shortGap = 0;
  for (const [i, r] of multi.entries()) {
    const full = await reference(model, r.prompt, r.target);
    t.true(Math.abs(scored.meanNll[i] - full.nll) <= 1e-5 * Math.max(1, full.nll), `${r.prompt}: ${scored.meanNll[i]} vs ${full.nll}`);
    // Both rows hold every position that predicts a target token; only the hooks' decisions differ.
    shortGap = Math.max(shortGap, Math.abs(full.nll - (await reference(model, r.prompt, r.target, true)).nll));
  }
  t.true(multi.length > 0 && shortGap > 1e-3, `rows without the last target token give another NLL (gap ${shortGap})`);
});

/**
 * Perplexity the plain way: one unpadded forward per document (the whole document, as every teacher-forced row
 * is: the validated hook's z-score is taken over the whole row), log-softmax in JS, every token after the first.
 */
async function referencePerplexity(model: HookedModel, texts: string[]): Promise<{ perplexity: number; tokens: number }> {
  let nll = 0;
  let tokens = 0;
  for (const text of texts) {
    const ids = model.tokenizer.encodePrompt(text).slice(0, model.info.contextLength);
    if (ids.length < 2) continue;
    const logits = await model.logits([ids]);
    const V = logits.shape[2];
    for (let k = 1; k < ids.length; k++) {
      const row = Array.from(logits.data.subarray((k - 1) * V, k * V));
      const max = Math.max(...row);
      nll -= row[ids[k]] - max - Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      tokens++;
    }
  }
  return { perplexity: Math.exp(nll / tokens), tokens };
}

for (const [name, dir] of fixtureModels.filter(([n]) => n === 'gpt2' || n === 'llama')) {
  test(`${name}: perplexity on held-out text equals a per-document reference, before and after an edit`, async (t) => {
    await using model = await HookedModel.load(dir);
    const texts = [
      'The city of Paris is known for its river, its music and its food.', 'Hello', '',
      'After many years as a teacher, Nina moved to Oslo to learn Norwegian.', 'word '.repeat(200),
    ];
    const evaluator = new Evaluator(model, { batchSize: 2 });
    const before = await evaluator.perplexity(texts);
    const expected = await referencePerplexity(model, texts);
    t.is(before.tokens, expected.tokens);
    t.is(before.documents, model.tokenizer.bos === undefined ? 3 : 4);  // '' and, without BOS, 'Hello' (1 token) have nothing to score
    t.true(Math.abs(before.perplexity / expected.perplexity - 1) < 1e-5, `${before.perplexity} vs ${expected.perplexity}`);
    await using editor = await ConsecutiveEditor.create(model, {
      stats: { corpus: makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30), cacheDir: tempDir() }, layers: [0, 1], lambda: 50,
    });
    await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }]);
    const after = await evaluator.perplexity(texts);
    const expectedAfter = await referencePerplexity(model, texts);
    t.true(Math.abs(after.perplexity / expectedAfter.perplexity - 1) < 1e-5, `${after.perplexity} vs ${expectedAfter.perplexity}`);
    t.not(after.perplexity, before.perplexity);
    await t.throwsAsync(evaluator.perplexity(['']), { message: /at least one text of two or more tokens/ });
  });
}

const baseRecords = records;
for (const [name, dir] of fixtureModels.filter(([n]) => n === 'gpt2' || n === 'llama')) {
  test(`${name}: generation-based metrics equal greedy continuations computed by full recomputation, before and after an edit`, async (t) => {
    await using model = await HookedModel.load(dir);
    const evaluator = new Evaluator(model, { batchSize: 3, generation: true, extraTokens: 2 });
    const length = (text: string) => model.tokenizer.encode(` ${text}`).length + 2;
    // One more record whose target (set after the edit) is what the edited model generates anyway, so that
    // both outcomes occur; the snapshot reads only locality prompts.
    const records: EvalRecord[] = [...baseRecords, { prompt: 'Bob speaks French and lives', target: '?', rephrase: 'Bob speaks French and lives' }];
    const snapshot = await evaluator.snapshot(records);
    const unedited = await Promise.all(records.map((r) => (r.locality ? referenceGeneration(model, r.locality.prompt, length(r.locality.answer)) : null)));
    t.deepEqual(snapshot.generatedLocality, unedited);
    // Edit so that some records' targets are generated: the metrics must see it.
    await using editor = await ConsecutiveEditor.create(model, {
      stats: { corpus: makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30), cacheDir: tempDir() }, layers: [0, 1], lambda: 50, vSteps: 40,
    });
    await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }, { prompt: 'The capital of {} is', subject: 'Spain', target: 'Berlin' }]);
    // Targets are continuations after a space (EasyEdit's rule): take the first prompt whose continuation is one.
    for (const prompt of ['Bob speaks French and lives', 'The city of', 'Hello, my name is', 'Maria walked to the', 'In the morning,']) {
      const continuation = model.tokenizer.decode(await referenceGeneration(model, prompt, 3));
      if (/^ \w/.test(continuation)) {
        Object.assign(records[records.length - 1], { prompt, rephrase: prompt, target: continuation.trimStart() });
        break;
      }
    }
    t.not(records[records.length - 1].target, '?', 'no prompt continues with a word');
    const result = await evaluator.evaluate(records, snapshot);
    for (const [i, r] of records.entries()) {
      const starts = async (prompt: string) => (model.tokenizer.decode(await referenceGeneration(model, prompt, length(r.target))).startsWith(` ${r.target}`) ? 100 : 0);
      const expected: Record<string, number> = { reliability: await starts(r.prompt) };
      if (r.rephrase) expected.generality = await starts(r.rephrase);
      if (r.locality) expected.locality = (await referenceGeneration(model, r.locality.prompt, length(r.locality.answer))).join() === unedited[i]!.join() ? 100 : 0;
      t.deepEqual(result.records[i].generated, expected, `record ${i}`);
    }
    const mean = (k: 'reliability' | 'generality' | 'locality') => {
      const v = result.records.flatMap((s) => (s.generated?.[k] === undefined ? [] : [s.generated[k]!]));
      return v.reduce((a, b) => a + b, 0) / v.length;
    };
    t.like(result.generated, { reliability: mean('reliability'), generality: mean('generality'), locality: mean('locality') });
    t.true(result.generated!.reliability > 0 && result.generated!.reliability < 100, 'a meaningful case: some targets generated, some not');
    t.log(`teacher-forced ${result.reliability.toFixed(1)} / ${result.generality.toFixed(1)} / ${result.locality.toFixed(1)}, generated ${result.generated!.reliability.toFixed(1)} / ${result.generated!.generality.toFixed(1)} / ${result.generated!.locality.toFixed(1)}`);
    await t.throwsAsync(evaluator.evaluate(records, { locality: snapshot.locality }), { message: /no generations/ });
  });
}

test("n-gram entropy is MEMIT's: the mean of 2/3 · H(bigrams) and 4/3 · H(trigrams), in bits", (t) => {
  // a b a b a b: bigrams ab ×3, ba ×2; trigrams aba ×2, bab ×2.
  const h2 = -(0.6 * Math.log2(0.6) + 0.4 * Math.log2(0.4));
  const h3 = 1;
  t.true(Math.abs(nGramEntropy('a b a b a b') - ((2 / 3) * h2 + (4 / 3) * h3) / 2) < 1e-12);
  t.is(nGramEntropy('same same same same'), 0);  // one bigram, one trigram
  t.is(nGramEntropy('Paris, France.'), nGramEntropy('Paris , France .'));  // punctuation marks are words
  t.true(nGramEntropy('the cat sat on the mat while the dog ran') > nGramEntropy('the cat the cat the cat the cat the cat'));
});

test('fluency is the n-gram entropy of the greedy continuation of each prompt, through the hooks', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await ConsecutiveEditor.create(model, {
    stats: { corpus: makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30), cacheDir: tempDir() }, layers: [0, 1], lambda: 50,
  });
  await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }]);
  const evaluator = new Evaluator(model);
  const prompts = ['The city of Paris is in', 'Alice works as a'];
  const result = await evaluator.fluency(prompts, { maxNewTokens: 12 });
  for (const [i, prompt] of prompts.entries()) {
    const text = model.tokenizer.decode(await referenceGeneration(model, prompt, 12));
    t.is(result.texts[i].text, text);
    t.is(result.texts[i].entropy, nGramEntropy(text));
  }
  t.is(result.fluency, (result.texts[0].entropy + result.texts[1].entropy) / 2);
  // Settled decisions: the texts generate() gives with them, token by token.
  const settled = await evaluator.fluency(prompts, { maxNewTokens: 12, decisions: 'settled' });
  for (const [i, prompt] of prompts.entries()) {
    const { text } = await model.generate(prompt, { maxNewTokens: 12, stopAtEos: false, decisions: 'settled' });
    t.is(settled.texts[i].text, text);
  }
  await t.throwsAsync(evaluator.fluency(prompts, { decisions: 'eager' as 'exact' }), { instanceOf: InvalidArgumentError, message: /fluency: decisions must be one of exact, settled/ });
});

test('portability: multi-hop questions scored on the new answer (teacher-forced per question, generated: any question, any alias)', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await ConsecutiveEditor.create(model, {
    stats: { corpus: makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30), cacheDir: tempDir() }, layers: [0, 1], lambda: 50, vSteps: 40,
  });
  await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }]);
  // A question whose greedy continuation is a word, that word as an alias: one generated hit is certain.
  let question = '';
  let alias = '';
  for (const q of ['Paris is a city in the country of', 'The city of', 'Bob speaks French and lives', 'Hello, my name is', 'In the morning,']) {
    const continuation = model.tokenizer.decode(await referenceGeneration(model, q, 2));
    if (/^ \w/.test(continuation)) {
      [question, alias] = [q, continuation.trimStart()];
      break;
    }
  }
  t.not(question, '', 'no question continues with a word');
  const recs: EvalRecord[] = [
    { prompt: 'The city of Paris is in', target: 'Spain', portability: { questions: ['Where is the city of Paris?', question], answer: 'Spain', aliases: ['Espana', alias] } },
    { prompt: 'Alice works as a', target: 'lawyer', portability: { questions: ['What does Alice do?'], answer: 'lawyer in Rome' } },
    { prompt: 'The capital of Spain is', target: 'Berlin' },
  ];
  const evaluator = new Evaluator(model, { batchSize: 2, generation: true, extraTokens: 1 });
  const result = await evaluator.evaluate(recs, await evaluator.snapshot(recs));
  for (const [i, r] of recs.entries()) {
    if (!r.portability) {
      t.is(result.records[i].portability, undefined);
      t.is(result.records[i].generated!.portability, undefined);
      continue;
    }
    const p = r.portability;
    const perQuestion = await Promise.all(p.questions.map(async (q) => {
      const ref = await reference(model, q, p.answer);
      return acc(ref.argmax, ref.target);
    }));
    t.is(result.records[i].portability, avg(perQuestion), `record ${i}`);
    const answers = [p.answer, ...(p.aliases ?? [])];
    const length = Math.max(...answers.map((a) => model.tokenizer.encode(` ${a}`).length)) + 1;
    let hit = 0;
    for (const q of p.questions) {
      const text = model.tokenizer.decode(await referenceGeneration(model, q, length));
      if (answers.some((a) => text.startsWith(` ${a}`))) hit = 100;
    }
    t.is(result.records[i].generated!.portability, hit, `record ${i} generated`);
  }
  t.is(result.records[0].generated!.portability, 100);
  t.is(result.portability, avg([result.records[0].portability!, result.records[1].portability!]));
  t.is(result.generated!.portability, avg([100, result.records[1].generated!.portability!]));
  t.is(result.average, avg([result.reliability, result.generality, result.locality].filter((v) => !Number.isNaN(v))), 'portability stays out of the average');
});

test('batched generation through comeba-hk hooks gives each row what generating it alone gives', async (t) => {
  await using model = await HookedModel.load(tinyGpt2);
  await using editor = await ConsecutiveEditor.create(model, {
    mode: 'comeba-hk', stats: { corpus: makeRandomCorpus((ids) => model.tokenizer.decode(ids), 512, 100, 30), cacheDir: tempDir() }, layers: [0, 1], lambda: 50,
  });
  await editor.edit([{ prompt: 'The city of {} is in', subject: 'Paris', target: 'Spain' }, { prompt: '{} works as a', subject: 'Alice', target: 'lawyer' }]);
  const prompts = ['The city of Paris is in', 'Alice works as a', 'Paris', 'In the morning, Maria went to the old library in Paris and', 'Bob'];
  const evaluator = new Evaluator(model, { batchSize: 4 });
  const result = await evaluator.fluency(prompts, { maxNewTokens: 16 });
  for (const [i, prompt] of prompts.entries()) {
    t.is(result.texts[i].text, (await model.generate(prompt, { maxNewTokens: 16, stopAtEos: false })).text, prompts[i]);
  }
});
