// Dataset loading: each format from small inline fixtures, malformed records, options, and the real
// development files in ../shared/data (skipped, saying why, where they are missing; CI requires them).
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { detectFormat, loadDataset, type DatasetFormat, type EditCase } from '../lib/eval/datasets.js';
import { ComebaError, InvalidArgumentError, InvalidDatasetError } from '../lib/errors.js';
import { needingSharedData, sharedData, tempDir } from './helpers.js';

const sharedTest = needingSharedData(test);

const dir = tempDir('comeba-datasets-');
let fileCount = 0;
/** Writes `content` (a value as JSON, or text as is) to a fresh temp file and returns its path. */
function write(content: unknown, ext = '.json'): string {
  const path = join(dir, `data-${fileCount++}${ext}`);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

const cf0 = {
  case_id: 0, prompt: 'The mother tongue of Danielle Darrieux is', target_new: 'English', subject: 'Danielle Darrieux', ground_truth: 'French',
  rephrase_prompt: 'Where Danielle Darrieux is from, people speak the language of', locality_prompt: 'Michel Rocard is a native speaker of', locality_ground_truth: 'French',
};
const cf1 = {
  case_id: 10, prompt: 'BBC One, by', target_new: 'Sega', subject: 'BBC One', ground_truth: 'BBC',
  rephrase_prompt: 'BBC One is my favorite product out of everything owned by', locality_prompt: 'BBC Radio, by', locality_ground_truth: 'BBC',
};
const zs0 = {
  subject: 'UniFirst', src: 'What is the product made by UniFirst?', pred: 'uniform', rephrase: 'What will be the product of UniFirst?', alt: 'unmanned aircraft',
  answers: ['uniform'], loc: "nq question: john goodman's character in the big lebowski", loc_ans: 'Walter Sobchak', cond: 'uniform >> unmanned aircraft || What is the product made by UniFirst?',
};
const zs1 = {
  subject: 'Watts Humphrey', src: 'What university did Watts Humphrey attend?', pred: 'Trinity College', rephrase: 'What university did Watts Humphrey take part in?', alt: 'University of Michigan',
  answers: [], loc: 'nq question: who played desmond doss father in hacksaw ridge', loc_ans: 'Hugo Weaving',
};
const mm0 = {
  case_id: 0,
  requested_rewrite: { prompt: 'The mother tongue of {} is', relation_id: 'P103', target_new: { str: 'English', id: 'Q1860' }, target_true: { str: 'French', id: 'Q150' }, subject: 'Danielle Darrieux' },
  paraphrase_prompts: ['Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native', 'An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language'],
  neighborhood_prompts: ['The mother tongue of Léon Blum is', 'The native language of Montesquieu is'],
  attribute_prompts: ['J.\u00a0R.\u00a0R. Tolkien is a native speaker of'],
  generation_prompts: ["Danielle Darrieux's mother tongue is"],
};

const expectedCf: EditCase[] = [
  {
    id: '0',
    request: { prompt: 'The mother tongue of Danielle Darrieux is', subject: 'Danielle Darrieux', target: 'English' },
    record: {
      prompt: 'The mother tongue of Danielle Darrieux is', target: 'English', rephrase: 'Where Danielle Darrieux is from, people speak the language of',
      locality: { prompt: 'Michel Rocard is a native speaker of', answer: 'French' }, trueTarget: 'French',
    },
  },
  {
    id: '10',
    request: { prompt: 'BBC One, by', subject: 'BBC One', target: 'Sega' },
    record: {
      prompt: 'BBC One, by', target: 'Sega', rephrase: 'BBC One is my favorite product out of everything owned by',
      locality: { prompt: 'BBC Radio, by', answer: 'BBC' }, trueTarget: 'BBC',
    },
  },
];

/** Asserts that `fn` throws an InvalidDatasetError naming `file`, record `index` and (when given) `field`. */
function throwsAt(t: import('ava').ExecutionContext, fn: () => unknown, file: string, index: number | undefined, field?: string, pattern?: RegExp) {
  const err = t.throws(fn, { instanceOf: InvalidDatasetError });
  if (!err) return;
  t.true(err instanceof ComebaError);
  t.is((err as InvalidDatasetError).code, 'INVALID_DATASET');
  t.true(err.message.includes(file), `message names the file: ${err.message}`);
  t.is((err as InvalidDatasetError).file, file);
  t.is((err as InvalidDatasetError).index, index);
  if (index !== undefined) t.true(err.message.includes(`record ${index}`), `message names the record: ${err.message}`);
  if (field !== undefined) {
    t.is((err as InvalidDatasetError).field, field);
    t.true(err.message.includes(field), `message names the field: ${err.message}`);
  }
  if (pattern) t.regex(err.message, pattern);
}

test('counterfact (EasyEdit) records map to requests and evaluation records', (t) => {
  const path = write([cf0, cf1]);
  t.deepEqual(loadDataset(path, 'counterfact'), expectedCf);
  t.is(detectFormat(path), 'counterfact');
});

test('zsre (MEND) records map to requests and evaluation records; the nq prefix is kept or stripped', (t) => {
  const path = write([zs0, zs1]);
  const expected: EditCase[] = [
    {
      id: '0',
      request: { prompt: 'What is the product made by UniFirst?', subject: 'UniFirst', target: 'unmanned aircraft' },
      record: {
        prompt: 'What is the product made by UniFirst?', target: 'unmanned aircraft', rephrase: 'What will be the product of UniFirst?',
        locality: { prompt: "nq question: john goodman's character in the big lebowski", answer: 'Walter Sobchak' }, trueTarget: 'uniform',
      },
    },
    {
      id: '1',
      request: { prompt: 'What university did Watts Humphrey attend?', subject: 'Watts Humphrey', target: 'University of Michigan' },
      record: {
        prompt: 'What university did Watts Humphrey attend?', target: 'University of Michigan', rephrase: 'What university did Watts Humphrey take part in?',
        // No answers: the true target falls back to `pred`.
        locality: { prompt: 'nq question: who played desmond doss father in hacksaw ridge', answer: 'Hugo Weaving' }, trueTarget: 'Trinity College',
      },
    },
  ];
  t.deepEqual(loadDataset(path, 'zsre'), expected);
  t.deepEqual(loadDataset(path, 'zsre', { stripNqPrefix: false }), expected);
  const stripped = loadDataset(path, 'zsre', { stripNqPrefix: true });
  t.deepEqual(stripped.map((c) => c.record.locality?.prompt), ["john goodman's character in the big lebowski", 'who played desmond doss father in hacksaw ridge']);
  t.deepEqual(stripped.map((c) => ({ ...c, record: { ...c.record, locality: undefined } })), expected.map((c) => ({ ...c, record: { ...c.record, locality: undefined } })));
  t.is(detectFormat(path), 'zsre');
});

test('memit (ROME/MEMIT CounterFact) records map to requests and evaluation records', (t) => {
  const path = write([mm0, { ...mm0, case_id: 7, paraphrase_prompts: [], neighborhood_prompts: [] }]);
  const request = { prompt: 'The mother tongue of {} is', subject: 'Danielle Darrieux', target: 'English' };
  t.deepEqual(loadDataset(path, 'memit'), [
    {
      id: '0',
      request,
      record: {
        prompt: 'The mother tongue of Danielle Darrieux is', target: 'English', rephrase: mm0.paraphrase_prompts[0],
        locality: { prompt: 'The mother tongue of Léon Blum is', answer: 'French' }, trueTarget: 'French',
      },
    },
    { id: '7', request, record: { prompt: 'The mother tongue of Danielle Darrieux is', target: 'English', trueTarget: 'French' } },
  ]);
  t.is(detectFormat(path), 'memit');
});

test('jsonl: snake_case and camelCase fields, blank lines, optional parts, ids', (t) => {
  const lines = [
    JSON.stringify({ prompt: '{} plays the', subject: 'Toko Yasuda', target: 'piano', rephrase: 'Toko Yasuda is incredible at', locality_prompt: 'John Lennon performs on the', locality_answer: 'guitar', true_target: 'guitar' }),
    '',
    JSON.stringify({ id: 'x-1', prompt: 'The capital of Spain is', subject: 'Spain', target: 'Berlin', localityPrompt: 'Paris is in', localityAnswer: 'France', trueTarget: 'Madrid' }),
    '   ',
    JSON.stringify({ prompt: 'Alice works as a', subject: 'Alice', target: 'lawyer' }),
  ];
  const path = write(lines.join('\r\n') + '\n', '.jsonl');
  t.deepEqual(loadDataset(path, 'jsonl'), [
    {
      id: '0',
      request: { prompt: '{} plays the', subject: 'Toko Yasuda', target: 'piano' },
      record: {
        prompt: 'Toko Yasuda plays the', target: 'piano', rephrase: 'Toko Yasuda is incredible at',
        locality: { prompt: 'John Lennon performs on the', answer: 'guitar' }, trueTarget: 'guitar',
      },
    },
    {
      id: 'x-1',
      request: { prompt: 'The capital of Spain is', subject: 'Spain', target: 'Berlin' },
      record: { prompt: 'The capital of Spain is', target: 'Berlin', locality: { prompt: 'Paris is in', answer: 'France' }, trueTarget: 'Madrid' },
    },
    { id: '2', request: { prompt: 'Alice works as a', subject: 'Alice', target: 'lawyer' }, record: { prompt: 'Alice works as a', target: 'lawyer' } },
  ]);
  t.is(detectFormat(path), 'jsonl');
  // Detected by content too, whatever the extension.
  t.is(detectFormat(write(lines.join('\n'), '.txt')), 'jsonl');
});

test('a subject that differs from the prompt only in letter case takes the prompt\'s spelling', (t) => {
  const path = write([{ ...cf1, subject: 'bbc one' }]);
  const [c] = loadDataset(path, 'counterfact');
  t.deepEqual(c.request, { prompt: 'BBC One, by', subject: 'BBC One', target: 'Sega' });
  t.is(c.record.prompt, 'BBC One, by');
});

test('limit takes the first N cases and leaves later (even malformed) records unread', (t) => {
  const path = write([cf0, cf1, { case_id: 'broken' }]);
  t.deepEqual(loadDataset(path, 'counterfact', { limit: 1 }), expectedCf.slice(0, 1));
  t.deepEqual(loadDataset(path, 'counterfact', { limit: 2 }), expectedCf);
  t.deepEqual(loadDataset(path, 'counterfact', { limit: 0 }), []);
  throwsAt(t, () => loadDataset(path, 'counterfact', { limit: 3 }), path, 2);
  const jl = write([{ prompt: 'a b', subject: 'a', target: 'c' }, { prompt: 'd e', subject: 'd', target: 'f' }, 'not json'].map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join('\n'), '.jsonl');
  t.is(loadDataset(jl, 'jsonl', { limit: 2 }).length, 2);
  throwsAt(t, () => loadDataset(jl, 'jsonl'), jl, 2, undefined, /line 3 is not valid JSON/);
  for (const limit of [-1, 1.5, Number.NaN]) t.throws(() => loadDataset(path, 'counterfact', { limit }), { instanceOf: InvalidArgumentError });
});

test('skipEmptyTargets leaves out records with an empty target, keeping ids', (t) => {
  const path = write([zs0, { ...zs1, alt: '' }, zs0]);
  t.deepEqual(loadDataset(path, 'zsre').map((c) => c.request.target), ['unmanned aircraft', '', 'unmanned aircraft']);
  const kept = loadDataset(path, 'zsre', { skipEmptyTargets: true });
  t.deepEqual(kept.map((c) => c.id), ['0', '2']);
  t.deepEqual(loadDataset(path, 'zsre', { skipEmptyTargets: true, limit: 2 }).map((c) => c.id), ['0', '2']);
});

test('malformed records throw InvalidDatasetError naming the file, the record and the field', (t) => {
  const cases: [DatasetFormat, unknown[], number, string | undefined, RegExp?][] = [
    ['counterfact', [cf0, { ...cf1, target_new: 5 }], 1, 'target_new', /expected a string/],
    ['counterfact', [cf0, cf1, { ...cf1, rephrase_prompt: undefined }], 2, 'rephrase_prompt', /missing/],
    ['counterfact', [{ ...cf0, case_id: null }], 0, 'case_id'],
    ['counterfact', [cf0, { ...cf1, subject: 'ITV' }], 1, 'subject', /occurs neither/],
    ['counterfact', [cf0, { ...cf1, subject: '  ' }], 1, 'subject', /empty/],
    ['counterfact', [cf0, 'a string'], 1, undefined, /expected an object/],
    ['counterfact', [cf0, null], 1, undefined, /expected an object/],
    ['counterfact', [{ ...cf0, prompt: '{} and {} are' }], 0, 'prompt', /2 \{\}/],
    ['zsre', [zs0, zs0, { ...zs0, answers: 'uniform' }], 2, 'answers', /array/],
    ['zsre', [zs0, { ...zs0, answers: [3] }], 1, 'answers[0]'],
    ['zsre', [{ ...zs0, loc_ans: undefined }], 0, 'loc_ans'],
    ['zsre', [zs0, { ...zs0, src: 'What does it make?' }], 1, 'subject', /UniFirst/],
    ['memit', [mm0, { ...mm0, requested_rewrite: { ...mm0.requested_rewrite, target_new: 'English' } }], 1, 'requested_rewrite.target_new'],
    ['memit', [{ ...mm0, requested_rewrite: { ...mm0.requested_rewrite, target_true: {} } }], 0, 'requested_rewrite.target_true.str'],
    ['memit', [mm0, { ...mm0, requested_rewrite: undefined }], 1, 'requested_rewrite'],
    ['memit', [mm0, { ...mm0, paraphrase_prompts: [1] }], 1, 'paraphrase_prompts[0]'],
    ['memit', [{ ...mm0, requested_rewrite: { ...mm0.requested_rewrite, prompt: 'The mother tongue of X is' } }], 0, 'requested_rewrite.subject'],
  ];
  for (const [format, records, index, field, pattern] of cases) {
    const path = write(records);
    throwsAt(t, () => loadDataset(path, format), path, index, field, pattern);
  }
  const jsonl: [string[], number, string | undefined, RegExp?][] = [
    [['{"prompt":"a b","subject":"a","target":"c"}', '{"prompt":"a b","subject":"a"'], 1, undefined, /line 2 is not valid JSON/],
    [['', '{"prompt":"a b","subject":"a","target":"c"}', '', '[1]'], 1, undefined, /expected an object/],
    [['{"prompt":"a b","subject":"a","target":"c","locality_prompt":"x"}'], 0, 'locality_answer'],
    [['{"prompt":"a b","subject":"a","target":"c","rephrase":7}'], 0, 'rephrase'],
    [['{"prompt":"a b","subject":"z","target":"c"}'], 0, 'subject', /occurs neither/],
  ];
  for (const [lines, index, field, pattern] of jsonl) {
    const path = write(lines.join('\n'), '.jsonl');
    throwsAt(t, () => loadDataset(path, 'jsonl'), path, index, field, pattern);
  }
});

test('unreadable files, non-lists and unknown formats are typed errors naming the file', (t) => {
  const missing = join(dir, 'nope.json');
  throwsAt(t, () => loadDataset(missing, 'counterfact'), missing, undefined, undefined, /cannot read/);
  throwsAt(t, () => detectFormat(missing), missing, undefined, undefined, /cannot read/);
  const bad = write('[{"case_id": 0,');
  throwsAt(t, () => loadDataset(bad, 'counterfact'), bad, undefined, undefined, /not valid JSON/);
  const obj = write({ data: [cf0] });
  throwsAt(t, () => loadDataset(obj, 'counterfact'), obj, undefined, undefined, /JSON list/);
  throwsAt(t, () => detectFormat(obj), obj, undefined, undefined, /unrecognised/);
  const other = write([{ question: 'q', answer: 'a' }]);
  throwsAt(t, () => detectFormat(other), other, undefined, undefined, /question, answer/);
  const empty = write([]);
  throwsAt(t, () => detectFormat(empty), empty, undefined, undefined, /no records/);
  t.deepEqual(loadDataset(empty, 'zsre'), []);
  t.throws(() => loadDataset(other, 'csv' as DatasetFormat), { instanceOf: InvalidArgumentError });
});

sharedTest('the real CounterFact validation file: 1,919 cases, first is case 10', (t) => {
  const path = join(sharedData, 'counterfact', 'easyedit', 'counterfact-val.json');
  t.is(detectFormat(path), 'counterfact');
  const cases = loadDataset(path, 'counterfact');
  t.is(cases.length, 1919);
  t.deepEqual(cases[0], expectedCf[1]);
  t.is(new Set(cases.map((c) => c.id)).size, 1919);
  t.false(cases.some((c) => c.id === '0'), 'case 0 is in the held-back edit split, not val');
  // Every subject occurs verbatim in its prompt, so no request was respelt.
  t.true(cases.every((c) => c.request.prompt.includes(c.request.subject)));
  t.is(loadDataset(path, 'counterfact', { limit: 50 }).length, 50);
});

sharedTest('the real zsRE train 1k file: 1,000 cases, first is UniFirst', (t) => {
  const path = join(sharedData, 'zsre', 'zsre_mend_train-1k.json');
  t.is(detectFormat(path), 'zsre');
  const cases = loadDataset(path, 'zsre');
  t.is(cases.length, 1000);
  t.deepEqual(cases[0], {
    id: '0',
    request: { prompt: 'What is the product made by UniFirst?', subject: 'UniFirst', target: 'unmanned aircraft' },
    record: {
      prompt: 'What is the product made by UniFirst?', target: 'unmanned aircraft', rephrase: 'What will be the product of UniFirst?',
      locality: { prompt: "nq question: john goodman's character in the big lebowski", answer: 'Walter Sobchak' }, trueTarget: 'uniform',
    },
  });
  t.true(cases.every((c) => c.record.locality!.prompt.startsWith('nq question: ')));
  const stripped = loadDataset(path, 'zsre', { stripNqPrefix: true });
  t.is(stripped[0].record.locality!.prompt, "john goodman's character in the big lebowski");
  t.false(stripped.some((c) => c.record.locality!.prompt.startsWith('nq question: ')));
  // Two records (534, 723) have an empty `alt`; skipEmptyTargets leaves them out.
  t.deepEqual(cases.filter((c) => c.request.target.trim() === '').map((c) => c.id), ['534', '723']);
  t.is(loadDataset(path, 'zsre', { skipEmptyTargets: true }).length, 998);
});

test('mquake records: one edit per rewrite, the last carrying the multi-hop questions', (t) => {
  const rewrite = (subject: string, target: string, truth: string) => ({
    prompt: '{} is a citizen of', subject, target_new: { str: target, id: 'Q1' }, target_true: { str: truth, id: 'Q2' }, question: `Where is ${subject} from?`,
  });
  const raw = [{
    case_id: 7, requested_rewrite: [rewrite('Ann', 'Chile', 'Peru'), rewrite('Bo', 'Iran', 'Oman')],
    questions: ['Q one?', 'Q two?'], answer: 'Spanish', answer_alias: [], new_answer: 'Persian', new_answer_alias: ['Farsi'],
  }];
  const path = join(dir, 'mquake.json');
  writeFileSync(path, JSON.stringify(raw));
  t.is(detectFormat(path), 'mquake');
  t.deepEqual(loadDataset(path, 'mquake'), [
    { id: '7.0', request: { prompt: '{} is a citizen of', subject: 'Ann', target: 'Chile' }, record: { prompt: 'Ann is a citizen of', target: 'Chile', rephrase: 'Where is Ann from?', trueTarget: 'Peru' } },
    {
      id: '7.1', request: { prompt: '{} is a citizen of', subject: 'Bo', target: 'Iran' },
      record: { prompt: 'Bo is a citizen of', target: 'Iran', rephrase: 'Where is Bo from?', trueTarget: 'Oman', portability: { questions: ['Q one?', 'Q two?'], answer: 'Persian', aliases: ['Farsi'] } },
    },
  ]);
  t.is(loadDataset(path, 'mquake', { limit: 1 }).length, 1);
  for (const [broken, field] of [
    [{ ...raw[0], requested_rewrite: [] }, 'requested_rewrite'],
    [{ ...raw[0], questions: [] }, 'questions'],
    [{ ...raw[0], requested_rewrite: [raw[0].requested_rewrite[0], { ...raw[0].requested_rewrite[1], question: 3 }] }, 'requested_rewrite[1].question'],
  ] as const) {
    writeFileSync(path, JSON.stringify([broken]));
    t.like(t.throws(() => loadDataset(path, 'mquake'), { instanceOf: InvalidDatasetError }), { field });
  }
});

sharedTest('the real MQuAKE-hard file: 429 cases of 4 rewrites, multi-hop questions on every fourth edit', (t) => {
  const path = join(sharedData, 'mquake', 'MQuAKE-hard.json');
  t.is(detectFormat(path), 'mquake');
  const cases = loadDataset(path, 'mquake');
  t.is(cases.length, 429 * 4);
  t.is(cases[0].id, '7417.0');
  t.deepEqual(cases[0].request, { prompt: '{} was performed by', subject: 'Hey Jude', target: 'Madonna' });
  t.deepEqual(cases[3].record.portability?.answer, 'Arabic');
  t.is(cases.filter((c) => c.record.portability).length, 429);
});
