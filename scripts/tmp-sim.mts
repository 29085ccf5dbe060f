// Whitened cosine of subject keys on the testbed: same person (other relations' prompts) vs other people.
import { readFileSync } from 'node:fs';
import { HookedModel, Statistics } from '../lib/index.js';
const model = await HookedModel.load('/work/main/testbed/model');
const records = JSON.parse(readFileSync('/work/main/testbed/counterfact.json', 'utf8')).slice(0, 240);
const stats = await Statistics.collect(model, { corpus: '/work/main/testbed/model/stats-corpus.txt', layers: [0, 1, 2] });
const F = model.info.dFf;
for (const layer of [0, 1, 2]) {
  const E = (await stats.secondMoment(layer)).data;
  // Cholesky of E (lower), in JS.
  const L = new Float64Array(F * F);
  for (let i = 0; i < F; i++) for (let j = 0; j <= i; j++) {
    let s = E[i * F + j];
    for (let k = 0; k < j; k++) s -= L[i * F + k] * L[j * F + k];
    L[i * F + j] = i === j ? Math.sqrt(Math.max(s, 1e-12)) : s / L[j * F + j];
  }
  const keys: Float64Array[] = [];
  for (const r of records) {
    const at = r.prompt.indexOf(r.subject) + r.subject.length;
    const ids = model.tokenizer.encodePrompt(r.prompt);
    const pos = model.tokenizer.encodePrompt(r.prompt.slice(0, at)).length - 1;
    const out = await model.run([ids], { hooks: [{ at: `transformer.h.${layer}.mlp.c_proj`, record: 'input', positions: [[pos]] }] });
    const k = Float64Array.from(out.records[0]!.data as Float32Array);
    // u = L⁻¹ k
    const u = new Float64Array(F);
    for (let i = 0; i < F; i++) { let s = k[i]; for (let j = 0; j < i; j++) s -= L[i * F + j] * u[j]; u[i] = s / L[i * F + i]; }
    keys.push(u);
  }
  const cos = (a: Float64Array, b: Float64Array) => { let d = 0, na = 0, nb = 0; for (let i = 0; i < F; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; } return d / Math.sqrt(na * nb); };
  const same: number[] = [], other: number[] = [];
  for (let i = 0; i < keys.length; i++) for (let j = i + 1; j < keys.length; j++) (records[i].subject === records[j].subject ? same : other).push(cos(keys[i], keys[j]));
  const q = (a: number[], p: number) => [...a].sort((x, y) => x - y)[Math.floor(p * (a.length - 1))];
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  console.log(`layer ${layer}: same person n=${same.length} min ${q(same, 0).toFixed(3)} p5 ${q(same, 0.05).toFixed(3)} median ${q(same, 0.5).toFixed(3)}; other people n=${other.length} mean ${mean(other).toFixed(3)} p99 ${q(other, 0.99).toFixed(3)} p99.9 ${q(other, 0.999).toFixed(3)} max ${q(other, 1).toFixed(3)}`);
}
