// Broken checkpoints give typed errors, and Node keeps running afterwards. Each case corrupts a copy of
// the tiny GPT-2 fixture in its own temporary folder.
import test from 'ava';
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HookedModel, InvalidCheckpointError, UnsupportedArchitectureError } from '../lib/index.js';
import { copyFixture, rawSafetensors, readSafetensors, tinyGpt2 } from './helpers.js';

const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'];
const weights = () => readSafetensors(join(tinyGpt2, 'model.safetensors'));

/** Rewrites model.safetensors with the real data section and a header changed by `edit`. */
function withHeader(edit: (header: Record<string, any>) => void): string {
  const dir = copyFixture(tinyGpt2, files);
  const path = join(dir, 'model.safetensors');
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  writeFileSync(path, rawSafetensors(header, buf.subarray(8 + n)));
  return dir;
}

const cases: [string, () => string, typeof InvalidCheckpointError, RegExp][] = [
  ['truncated safetensors file', () => {
    const dir = copyFixture(tinyGpt2, files);
    const path = join(dir, 'model.safetensors');
    truncateSync(path, readFileSync(path).length - 1000);
    return dir;
  }, InvalidCheckpointError, /lie outside the data section/],
  ['file shorter than the length prefix', () => {
    const dir = copyFixture(tinyGpt2, files);
    writeFileSync(join(dir, 'model.safetensors'), Buffer.from([1, 2, 3]));
    return dir;
  }, InvalidCheckpointError, /shorter than the 8-byte header length/],
  ['header length beyond the end of the file', () => {
    const dir = copyFixture(tinyGpt2, files);
    writeFileSync(join(dir, 'model.safetensors'), rawSafetensors({}, new Uint8Array(16), 1 << 30));
    return dir;
  }, InvalidCheckpointError, /runs past the end of the file/],
  ['tensor offsets out of range', () => withHeader((h) => {
    h['transformer.wte.weight'].data_offsets[1] += 1 << 24;
  }), InvalidCheckpointError, /outside the data section/],
  ['overlapping tensors', () => withHeader((h) => {
    const ln = h['transformer.ln_f.bias'];
    const other = h['transformer.ln_f.weight'];
    ln.data_offsets = [other.data_offsets[0] + 4, other.data_offsets[1] + 4];
  }), InvalidCheckpointError, /overlap/],
  ['unknown dtype', () => withHeader((h) => {
    h['transformer.ln_f.bias'].dtype = 'F12';
  }), InvalidCheckpointError, /unknown dtype 'F12'/],
  ['shape and byte size disagree', () => withHeader((h) => {
    h['transformer.ln_f.bias'].shape = [65];
  }), InvalidCheckpointError, /holds 256 bytes but its dtype and shape need 260/],
  ['a tensor with the wrong shape for the config', () => withHeader((h) => {
    h['transformer.ln_f.bias'].shape = [8, 8];
  }), InvalidCheckpointError, /'transformer.ln_f.bias' has shape \[8, 8\], expected \[64\]/],
  ['a missing tensor', () => withHeader((h) => {
    delete h['transformer.h.2.mlp.c_fc.bias'];
  }), InvalidCheckpointError, /'transformer.h.2.mlp.c_fc.bias' is missing/],
  ['invalid header JSON', () => {
    const dir = copyFixture(tinyGpt2, files);
    const body = Buffer.from('{"a": [1, 2', 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(body.length));
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([len, body]));
    return dir;
  }, InvalidCheckpointError, /header is not valid JSON/],
  ['missing config.json', () => {
    const dir = copyFixture(tinyGpt2, files);
    rmSync(join(dir, 'config.json'));
    return dir;
  }, InvalidCheckpointError, /missing config\.json/],
  ['missing tokenizer', () => {
    const dir = copyFixture(tinyGpt2, files);
    rmSync(join(dir, 'tokenizer.json'));
    return dir;
  }, InvalidCheckpointError, /missing tokenizer\.json/],
  ['missing weights', () => {
    const dir = copyFixture(tinyGpt2, files);
    rmSync(join(dir, 'model.safetensors'));
    return dir;
  }, InvalidCheckpointError, /no model\.safetensors/],
  ['unsupported model_type', () => {
    const dir = copyFixture(tinyGpt2, files);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, model_type: 'mamba' }));
    return dir;
  }, UnsupportedArchitectureError, /model_type 'mamba'.*not supported/],
];

for (const [name, make, type, message] of cases) {
  test(`${name} → ${type.name}`, async (t) => {
    const dir = make();
    const err = await t.throwsAsync(HookedModel.load(dir), { instanceOf: type });
    t.regex(err!.message, message);
    // Node is still alive and the addon still works.
    await using model = await HookedModel.load(tinyGpt2);
    t.is((await model.logits([[1, 2]])).shape[2], 512);
  });
}

test('the fixture itself is well-formed (the corruptions above start from a valid file)', (t) => {
  t.is(weights().tensors.size, 4 + 12 * 3);
});
