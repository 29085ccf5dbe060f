// `comeba stats merge` on bad inputs: each is one line and a non-zero exit, fast, leaving every file as it was and no
// temporary behind: --out naming a shard, a FIFO, a directory, text, an empty file, absurd header lengths, a bad --out.
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'lib', 'cli', 'main.ts');

function comeba(args: string[], timeout = 60_000): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, encoding: 'utf8', timeout, env: { ...process.env, OMP_NUM_THREADS: '1' } },
      (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }));
  });
}

/** Two shards of tiny-gpt2's statistics, made once by `comeba stats --shard`. */
const shards = (async () => {
  const dir = tempDir('comeba-shards-');
  const files = [0, 1].map((i) => join(dir, `shard-${i}.safetensors`));
  for (const [i, file] of files.entries()) {
    const r = await comeba(['stats', '--model', tinyGpt2, '--corpus', join(tinyGpt2, 'stats-corpus.txt'), '--layers', '1', '--shard', `${i}/2`, '--out', file]);
    if (r.status !== 0) throw new Error(r.stderr);
  }
  return files;
})();

function header(length: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(length);
  return b;
}

// [what, the odd input made in `dir`, what the one line says]
const inputs: [string, (dir: string) => string, RegExp][] = [
  ['a FIFO', (d) => { execFileSync('mkfifo', [join(d, 'fifo')]); return join(d, 'fifo'); }, /is not a regular file/],
  ['a directory', (d) => { mkdirSync(join(d, 'dir')); return join(d, 'dir'); }, /is not a regular file/],
  ['a text file', (d) => { writeFileSync(join(d, 'text.safetensors'), 'not statistics at all, just words'); return join(d, 'text.safetensors'); }, /header of \d+ bytes does not fit the file/],
  ['an empty file', (d) => { writeFileSync(join(d, 'empty.safetensors'), ''); return join(d, 'empty.safetensors'); }, /too short to be a safetensors file/],
  ['a header length of 2^62', (d) => { writeFileSync(join(d, 'huge.safetensors'), header(2n ** 62n)); return join(d, 'huge.safetensors'); }, /header of 4611686018427387904 bytes does not fit/],
  ['a header length of 3 GiB', (d) => { writeFileSync(join(d, 'big.safetensors'), header(3n * 2n ** 30n)); return join(d, 'big.safetensors'); }, /header of 3221225472 bytes does not fit/],
  ['a header that is not JSON', (d) => { writeFileSync(join(d, 'junk.safetensors'), Buffer.concat([header(4n).subarray(0, 8), Buffer.from('{{{{')])); return join(d, 'junk.safetensors'); }, /the header is not valid JSON/],
];

for (const [what, make, message] of inputs) {
  test(`stats merge with ${what} among the shards: one line, no stack`, async (t) => {
    const [first] = await shards;
    const dir = tempDir('comeba-merge-');
    const odd = make(dir);
    const r = await comeba(['stats', 'merge', '--out', join(dir, 'out.safetensors'), first, odd], 30_000);
    t.not(r.status, 0);
    t.not(r.status, null, 'the merge hung');
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), []);
  });
}

test('stats merge --out naming one of its shards is refused and the shard is left as it was', async (t) => {
  const dir = tempDir('comeba-merge-');
  const files = (await shards).map((f, i) => {
    copyFileSync(f, join(dir, `s${i}.safetensors`));
    return join(dir, `s${i}.safetensors`);
  });
  const before = readFileSync(files[0]);
  const r = await comeba(['stats', 'merge', '--out', files[0], ...files]);
  t.is(r.status, 2);
  t.regex(r.stderr, /is one of the shards/);
  t.true(readFileSync(files[0]).equals(before));
});

test('stats merge into a bad --out is one line and leaves no temporary', async (t) => {
  const dir = tempDir('comeba-merge-');
  writeFileSync(join(dir, 'a-file'), 'x');
  const r = await comeba(['stats', 'merge', '--out', join(dir, 'a-file', 'out.safetensors'), ...(await shards)]);
  t.is(r.status, 2);
  t.regex(r.stderr, /cannot write the merged statistics to .*a-file\/out\.safetensors/);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.deepEqual(readdirSync(dir), ['a-file']);
  // And a merge that works, for contrast.
  const ok = await comeba(['stats', 'merge', '--out', join(dir, 'merged.safetensors'), ...(await shards)]);
  t.is(ok.status, 0, ok.stderr);
});
