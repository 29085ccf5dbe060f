// Broken checkpoints give typed errors, and Node keeps running afterwards. Each case corrupts a copy of
// the tiny GPT-2 fixture in its own temporary folder.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HookedModel, InvalidCheckpointError, UnsupportedArchitectureError } from '../lib/index.js';
import { copyFixture, float32Of, rawSafetensors, readSafetensors, tinyGpt2, writeSafetensors } from './helpers.js';

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
    // The later of two equal-sized tensors moved 4 bytes into the earlier (the hole it leaves comes after).
    const [first, second] = [h['transformer.ln_f.bias'], h['transformer.ln_f.weight']].sort((a, b) => a.data_offsets[0] - b.data_offsets[0]);
    second.data_offsets = [first.data_offsets[0] + 4, first.data_offsets[1] + 4];
  }), InvalidCheckpointError, /overlaps tensor/],
  ['unknown dtype', () => withHeader((h) => {
    h['transformer.ln_f.bias'].dtype = 'F12';
  }), InvalidCheckpointError, /unknown dtype 'F12'/],
  ['shape and byte size disagree', () => withHeader((h) => {
    h['transformer.ln_f.bias'].shape = [65];
  }), InvalidCheckpointError, /holds 256 bytes but its dtype and shape need 260/],
  ['a tensor with the wrong shape for the config', () => withHeader((h) => {
    h['transformer.ln_f.bias'].shape = [8, 8];
  }), InvalidCheckpointError, /'transformer.ln_f.bias' has shape \[8, 8\], expected \[64\]/],
  ['a missing tensor', () => {
    const dir = copyFixture(tinyGpt2, files);
    const tensors = new Map([...weights().tensors].map(([name, t]) => [name, { shape: t.shape, data: float32Of(t) }]));
    tensors.delete('transformer.h.2.mlp.c_fc.bias');
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    return dir;
  }, InvalidCheckpointError, /'transformer.h.2.mlp.c_fc.bias' is missing/],
  ['invalid header JSON', () => {
    const dir = copyFixture(tinyGpt2, files);
    const body = Buffer.from('{"a": [1, 2', 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(body.length));
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([len, body]));
    return dir;
  }, InvalidCheckpointError, /header is not valid JSON/],
  ['a header length short by its padding (every tensor shifted)', () => {
    const dir = copyFixture(tinyGpt2, files);
    const path = join(dir, 'model.safetensors');
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    const json = buf.subarray(8, 8 + n).toString('utf8').trimEnd();
    const padded = json + ' '.repeat(8 - ((8 + json.length) % 8) || 8);
    writeFileSync(path, Buffer.concat([rawSafetensors(JSON.parse(json), new Uint8Array(0), json.length).subarray(0, 8), Buffer.from(padded), buf.subarray(8 + n)]));
    return dir;
  }, InvalidCheckpointError, /bytes at the end of the data section belong to no tensor/],
  ['bytes that belong to no tensor', () => {
    const dir = copyFixture(tinyGpt2, files);
    const { header, tensors } = weights();
    for (const e of Object.values<any>(header)) if (e.data_offsets) e.data_offsets = [e.data_offsets[0] + 4, e.data_offsets[1] + 4];
    const data = Buffer.concat([Buffer.alloc(4), ...[...tensors.values()].sort((a, b) => a.bytes.byteOffset - b.bytes.byteOffset).map((t) => t.bytes)]);
    writeFileSync(join(dir, 'model.safetensors'), rawSafetensors(header, data));
    return dir;
  }, InvalidCheckpointError, /4 bytes before tensor '.*' belong to no tensor/],
  ['an empty tensor hiding an overlap', () => withHeader((h) => {
    const w = h['transformer.ln_f.weight'];
    h['zz.empty'] = { dtype: 'F32', shape: [0], data_offsets: [w.data_offsets[0] + 4, w.data_offsets[0] + 4] };
  }), InvalidCheckpointError, /tensor 'zz.empty' overlaps tensor 'transformer.ln_f.weight'/],
  ['a size that overflows 64 bits', () => withHeader((h) => {
    const e = h['transformer.ln_f.bias'];
    h['transformer.ln_f.bias'] = { dtype: 'F64', shape: [2 ** 62], data_offsets: [e.data_offsets[0], e.data_offsets[0]] };
  }), InvalidCheckpointError, /'transformer.ln_f.bias' is too large/],
  ['integer weights where floats are needed', () => withHeader((h) => {
    h['transformer.ln_f.bias'].dtype = 'I32';
  }), InvalidCheckpointError, /'transformer.ln_f.bias' has dtype Int; weights must be floating point/],
  ['a header that is not valid UTF-8', () => {
    const dir = copyFixture(tinyGpt2, files);
    const path = join(dir, 'model.safetensors');
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    const header = Buffer.from(buf.subarray(8, 8 + n));
    const at = header.indexOf('"transformer.ln_f.bias"') + 2;
    header[at] = 0xc0; // a lead byte followed by ASCII: never valid UTF-8
    writeFileSync(path, Buffer.concat([buf.subarray(0, 8), header, buf.subarray(8 + n)]));
    return dir;
  }, InvalidCheckpointError, /header is not valid UTF-8/],
  ['the same tensor twice in one header', () => {
    const dir = copyFixture(tinyGpt2, files);
    const path = join(dir, 'model.safetensors');
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    const json = JSON.stringify(header);
    const twice = `${json.slice(0, -1)},"transformer.ln_f.bias":${JSON.stringify(header['transformer.ln_f.bias'])}}`;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(twice.length));
    writeFileSync(path, Buffer.concat([len, Buffer.from(twice), buf.subarray(8 + n)]));
    return dir;
  }, InvalidCheckpointError, /'transformer.ln_f.bias' appears twice in the header/],
  ...(['model.safetensors', 'config.json', 'tokenizer.json'] as const).map((name): (typeof cases)[number] => [`a FIFO in place of ${name}`, () => {
    const dir = copyFixture(tinyGpt2, files);
    rmSync(join(dir, name));
    execFileSync('mkfifo', [join(dir, name)]);
    return dir;
  }, InvalidCheckpointError, new RegExp(`${name.replace('.', '\\.')} is not a regular file`)]),
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
