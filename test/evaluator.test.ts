// Evaluator metrics against a straightforward per-record reference written here: one unpadded forward per
// prompt, argmax and log-softmax in JS.
import test from 'ava';
import { ConsecutiveEditor, Evaluator, HookedModel, Statistics, type EvalRecord } from '../lib/index.js';
import { makeRandomCorpus, tempDir, tinyGpt2 } from './helpers.js';

const records: EvalRecord[] = [
  { prompt: 'The city of Paris is in', target: 'Spain', rephrase: 'Paris lies in the country of', locality: { prompt: 'Alice works as a doctor in', answer: 'London' }, trueTarget: 'France' },
  { prompt: 'Alice works as a', target: 'lawyer in Rome', rephrase: 'By profession Alice is a', locality: { prompt: 'Bob speaks', answer: 'French and lives' }, trueTarget: 'doctor' },
  { prompt: 'The capital of Spain is', target: 'Berlin', trueTarget: 'Madrid' },
  { prompt: 'Maria walked to the old', target: 'library', rephrase: 'In the morning, Maria went to the', locality: { prompt: 'The city of', answer: 'Paris' }, trueTarget: 'house' },
];

/** Per-token argmax and mean NLL of `target` after `prompt`, from one unpadded forward. */
async function reference(model: HookedModel, prompt: string, target: string) {
  const p = model.tokenizer.encode(prompt);
  const t = model.tokenizer.encode(` ${target}`);
  const logits = await model.logits([[...p, ...t]]);
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
  await using editor = await ConsecutiveEditor.create(model, { stats, layers: [1, 2], lambda: 20, mode: 'memit' });
  await editor.edit(records.map((r) => ({ prompt: r.prompt, subject: r.prompt.split(' ').find((w) => /^[A-Z]/.test(w) && w !== 'The' && w !== 'In')!, target: r.target })));
  const after = await check();
  t.notDeepEqual(after.records, before.records, 'the edit changed something to measure');
});
