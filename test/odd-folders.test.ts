// `comeba inspect --model` and `comeba sweep` on checkpoint folders that are not what they claim: every case is one
// line naming the file and what is wrong, with a non-zero exit, never a stack trace or a nonsense count.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyFixture, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'lib', 'cli', 'main.ts');
const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];

function comeba(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr });
    });
  });
}

const config = JSON.parse(readFileSync(join(tinyGpt2, 'config.json'), 'utf8')) as Record<string, unknown>;

/** A safetensors file whose header is `header` (as JSON text) and no data. */
function safetensors(header: string): Buffer {
  const json = Buffer.from(header);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json]);
}

// [what, how the folder is spoilt, what the one line says]
const cases: [string, (dir: string) => void, RegExp][] = [
  ['config.json is null', (d) => writeFileSync(join(d, 'config.json'), 'null'), /config\.json is not a JSON object/],
  ['config.json is a list', (d) => writeFileSync(join(d, 'config.json'), '[1, 2]'), /config\.json is not a JSON object/],
  ['model_type "constructor"', (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, model_type: 'constructor' })), /model_type 'constructor' .* is not supported/],
  ['model_type "__proto__"', (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, model_type: '__proto__' })), /model_type '__proto__' .* is not supported/],
  ['a negative layer count', (d) => writeFileSync(join(d, 'config.json'), JSON.stringify({ ...config, n_layer: -3 })), /needs a positive integer 'n_layer'/],
  ['a header that is null', (d) => writeFileSync(join(d, 'model.safetensors'), safetensors('null')), /the safetensors header is not a JSON object/],
  ['a negative tensor dimension', (d) => writeFileSync(join(d, 'model.safetensors'), safetensors('{"w": {"dtype": "F32", "shape": [-4, 2], "data_offsets": [0, 0]}}')), /tensor "w" has no valid dtype and shape/],
  ['a dimension that is text', (d) => writeFileSync(join(d, 'model.safetensors'), safetensors('{"w": {"dtype": "F32", "shape": ["a"], "data_offsets": [0, 0]}}')), /tensor "w" has no valid dtype and shape/],
  ['a tensor entry that is null', (d) => writeFileSync(join(d, 'model.safetensors'), safetensors('{"w": null}')), /tensor "w" has no valid dtype and shape/],
  ['comeba.json is null', (d) => writeFileSync(join(d, 'comeba.json'), 'null'), /comeba\.json: must be a JSON object/],
  ['comeba.json with an unknown mode', (d) => writeFileSync(join(d, 'comeba.json'), '{"lambda": {"constructor": 5}}'), /comeba\.json: "lambda" must map modes/],
  ['comeba.json with layers as text', (d) => writeFileSync(join(d, 'comeba.json'), '{"layers": "1,2"}'), /comeba\.json: "layers" must be a non-empty list/],
];

for (const [what, spoil, message] of cases) {
  test(`inspect --model: ${what} is one line, no stack`, async (t) => {
    const dir = copyFixture(tinyGpt2, files);
    spoil(dir);
    const { status, stderr } = await comeba(['inspect', '--model', dir]);
    t.not(status, 0);
    t.regex(stderr, message);
    t.is(stderr.trim().split('\n').length, 1, stderr);
    t.false(/\n\s+at /.test(stderr), stderr);
  });
}

test('sweep on a model whose comeba.json is null: one line, no stack', async (t) => {
  const dir = copyFixture(tinyGpt2, [...files, 'stats-corpus.txt']);
  writeFileSync(join(dir, 'comeba.json'), 'null');
  const { status, stderr } = await comeba(['sweep', '--model', dir, '--n', '2', '--out', join(dir, 'out')]);
  t.not(status, 0);
  t.regex(stderr, /comeba\.json: must be a JSON object/);
  t.false(/\n\s+at /.test(stderr), stderr);
});
