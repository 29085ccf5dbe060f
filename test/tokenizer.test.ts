// Decoding equals transformers' for every fixture tokenizer: generated-text metrics compare strings, so a space
// cleaned up where transformers keeps it can flip an exact match. The reference is transformers' own decode of
// seeded random ids (scripts/make-decode-reference.py), with the clean-up settings a tokenizer_config.json may carry.
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '../lib/model/Tokenizer.js';
import { fixtures as fixturesDir } from './helpers.js';

interface Reference {
  transformers: string;
  cases: { ids: number[]; text: string }[];
  variants: { config: Record<string, unknown>; texts: string[] }[];
}

const fixtures = readdirSync(fixturesDir).filter((f) => f.startsWith('tiny-'));

for (const fixture of fixtures) {
  test(`${fixture}: decode equals transformers' on 1,000 random id sequences, with and without a clean-up setting`, (t) => {
    const dir = join(fixturesDir, fixture);
    const reference = JSON.parse(readFileSync(join(dir, 'reference', 'decode.json'), 'utf8')) as Reference;
    const check = (tokenizer: Tokenizer, texts: string[], label: string) => {
      const wrong = reference.cases.filter(({ ids }, i) => tokenizer.decode(ids) !== texts[i]);
      t.is(wrong.length, 0, `${label}: ${wrong.length} of ${texts.length} differ, e.g. ${JSON.stringify(wrong.slice(0, 2).map(({ ids }) => [ids, tokenizer.decode(ids)]))}`);
    };
    // A leading BOS has no text in comeba's decode (it is the prompt's start); transformers prints it.
    const bos = Tokenizer.fromFolder(dir).bos;
    const texts = (ts: string[]) => ts.map((s, i) => (reference.cases[i].ids[0] === bos && bos !== undefined ? s.replace(/^<s>/, '') : s));
    check(Tokenizer.fromFolder(dir), texts(reference.cases.map((c) => c.text)), 'as the checkpoint says');
    for (const v of reference.variants) check(Tokenizer.fromFolder(dir, v.config), texts(v.texts), JSON.stringify(v.config));
    // The clean-up acts on this vocabulary when forced: the cases are not blind to it.
    const forced = reference.variants.find((v) => Object.keys(v.config).length === 2)!;
    t.true(forced.texts.filter((s, i) => s !== reference.cases[i].text).length >= 50, `transformers ${reference.transformers}`);
  });
}
