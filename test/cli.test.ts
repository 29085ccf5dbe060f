// The `comeba` command line: a bad flag or value is one line on stderr that names the flag, and exit code 2,
// found before any model loads (so each case takes only the CLI's start-up).
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatSeconds, ProgressBar } from '../lib/cli/sweep.js';
import { tempDir, tinyGpt2 } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The source through tsx, as the sweep tests run it: never a stale dist/.
const cli = join(root, 'lib', 'cli', 'main.ts');

function comeba(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    // The timeout stops a command that, missing a check, went on to load a model and run.
    execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 }, (err, _stdout, stderr) => {
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stderr });
    });
  });
}

const file = join(tempDir('comeba-cli-'), 'a-file');
const testbedCases = (JSON.parse(readFileSync(join(root, 'testbed', 'counterfact.json'), 'utf8')) as unknown[]).length;
writeFileSync(file, 'not a folder');

// [arguments, what the one line must contain]
const cases: [string[], RegExp][] = [
  [['sweep', '--layers', '1-1e9'], /--layers/],
  [['sweep', '--layers', '1-1000000000'], /--layers: layer 1000000000 does not exist \(the model has 6 layers/],
  [['sweep', '--model', tinyGpt2, '--layers', '2-3'], /--layers: layer 3 does not exist \(the model has 3 layers/],
  [['sweep', '--layers', '2,1'], /--layers must list layers in increasing order/],
  [['sweep', '--layers', '1.5'], /--layers: '1.5' is not a layer/],
  [['sweep', '--protocol', 'rounds'], /--protocol must be one of consecutive, single-round, not 'rounds'/],
  [['sweep', '--out', join(file, 'sub')], /--out .*a-file is a file, not a folder; pass another --out/],
  [['sweep', '--out', file], /--out .*a-file is a file, not a folder/],
  [['sweep', '--n', 'abc'], /--n must be a positive integer, not 'abc'/],
  [['sweep', '--n', '0'], /--n must be a positive integer, not '0'/],
  [['sweep', '--n=-5'], /--n must be a positive integer, not '-5'/],
  [['sweep', '--n', '-5'], /'--n' argument is ambiguous/],
  [['sweep', '--n', '1e3'], /--n must be a positive integer/],
  [['sweep', '--batch', '0'], /--batch must be a positive integer/],
  [['sweep', '--eval-every', '15'], /--eval-every \(15\) must be a multiple of --batch \(10\)/],
  [['sweep', '--mode', 'rome'], /--mode must be one of .*, not 'rome'/],
  [['sweep', '--mode', 'memit,memit'], /--mode names a mode twice/],
  [['sweep', '--lambda', 'big'], /--lambda must be a positive number, not 'big'/],
  [['sweep', '--alpha-z', '0'], /--alpha-z must be a positive number/],
  [['sweep', '--scope-kappa', 'x'], /--scope-kappa must be a number ≥ 0/],
  [['sweep', '--stats-corpus', join(root, 'no-such-corpus.txt')], /--stats-corpus .*no-such-corpus\.txt: no such file/],
  [['sweep', '--data', join(root, 'no-such-data.json')], /--data .*no-such-data\.json: no such file/],
  [['sweep', '--model', root], /--model .* is not a checkpoint folder/],
  [['sweep', '--format', 'csv'], /--format must be one of/],
  [['sweep', '--device', 'gpu'], /--device must be cpu, cuda or cuda:N/],
  [['sweep', '--dtype', 'float8'], /--dtype must be one of/],
  [['sweep', '--n', '50000'], new RegExp(`holds ${testbedCases} cases, fewer than --n 50000`)],
  [['sweep', '--bogus'], /Unknown option '--bogus' \(see comeba sweep --help\)/],
  [['sweep', '--v-steps', '2.5'], /--v-steps must be a positive integer/],
  [['sweep', '--kl-factor=-1'], /--kl-factor must be a number ≥ 0/],
  [['sweep', '--clamp-norm-factor', '0'], /--clamp-norm-factor must be a positive number/],
  [['sweep', 'extra'], /Unexpected argument 'extra'/],
  [['sweep', '--n'], /'--n <value>' argument missing/],
  [['generate', '--prompt', 'x'], /--model DIR and --prompt TEXT are required/],
  [['generate', '--model', tinyGpt2, '--prompt', 'x', '--max-new-tokens', 'many'], /--max-new-tokens must be a positive integer/],
  [['generate', '--model', tinyGpt2, '--prompt', 'x', '--device', 'tpu'], /--device must be/],
  [['generate', '--model', tinyGpt2, '--prompt', 'x', '--top-p', '2'], /--top-p must be in \(0, 1\], not '2'/],
  [['generate', '--model', tinyGpt2, '--prompt', 'x', '--temperature=-1'], /--temperature must be a number ≥ 0/],
  [['generate', '--model', tinyGpt2, '--prompt', 'x', '--seed', '1.5'], /--seed must be a whole number ≥ 0/],
  [['libtorch'], /a subcommand is needed: use install or which/],
  [['libtorch', 'remove'], /unknown subcommand 'remove'/],
  [['libtorch', 'which', '--all'], /Unknown option '--all'/],
  [['libtorch', 'install', '--version', '../../x'], /--version must be a torch version/],
  [['libtorch', 'install', '--variant', 'rocm'], /--variant must be cpu or cuda/],
  [['inspect', '--verbose'], /Unknown option '--verbose'/],
  [['build', 'now'], /Unexpected argument 'now'/],
  [['frobnicate'], /unknown command 'frobnicate': run comeba help for the list of commands/],
  [['stats', '--model', tinyGpt2, '--corpus', join(root, 'testbed', 'counterfact.json'), '--shard', '3/3'], /--shard must be i\/N with 0 ≤ i < N, not '3\/3'/],
  [['stats', '--model', tinyGpt2], /--model and --corpus are required/],
  [['stats', 'merge', 'a.safetensors'], /merge needs --out FILE/],
  [['stats', 'merge', '--out', join(root, 'x.safetensors'), join(root, 'no-shard.safetensors')], /shard .*no-shard\.safetensors does not exist/],
  [['queue', 'frob', 'x'], /unknown queue command 'frob'/],
  [['queue', 'submit', join(root, 'no-grid.json')], /no-grid\.json: no such file/],
  [['queue', 'status', 'x', '--redis', 'http://localhost'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
  [['worker'], /--results DIR is required/],
];

for (const [args, message] of cases) {
  test(`comeba ${args.join(' ')}: exit 2 and one line naming the problem`, async (t) => {
    const { status, stderr } = await comeba(args);
    t.is(status, 2, stderr);
    const lines = stderr.trimEnd().split('\n');
    t.is(lines.length, 1, `one line, not:\n${stderr}`);
    t.notRegex(stderr, /^\s+at /m, 'no stack trace');
    t.regex(lines[0], message);
  });
}

test('--version prints the package version; help lists the commands, help <command> prints its options', async (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const version = await comebaOut(['--version']);
  t.is(version.status, 0, version.stderr);
  t.is(version.stdout, `comeba ${pkg.version}\n`);
  const help = await comebaOut(['help']);
  t.is(help.status, 0, help.stderr);
  for (const command of ['inspect', 'generate', 'sweep', 'stats', 'queue', 'worker', 'report', 'libtorch', 'build', 'help']) t.regex(help.stdout, new RegExp(`^  ${command} `, 'm'));
  const sweep = await comebaOut(['help', 'sweep']);
  t.is(sweep.status, 0, sweep.stderr);
  t.regex(sweep.stdout, /^usage: comeba sweep \[options\]/);
  const unknown = await comebaOut(['help', 'nope']);
  t.is(unknown.status, 2);
  t.regex(unknown.stderr, /unknown command 'nope': run comeba help/);
});

test('the sweep\'s progress bar: no rate before time has passed, then wall-clock edits/s and an ETA from the start of the mode', (t) => {
  const frames: string[] = [];
  let now = 1000;
  const bar = new ProgressBar(true, (text) => frames.push(text), () => now);
  bar.update({ type: 'mode', mode: 'memit', n: 1000, resumedAt: 200 });
  bar.update({ type: 'progress', mode: 'memit', edits: 210, n: 1000, seconds: 0 });  // the same instant
  t.regex(frames.at(-1)!, /210\/1000 {2}measuring/);
  now += 4000;
  bar.update({ type: 'progress', mode: 'memit', edits: 220, n: 1000, seconds: 4 });
  t.regex(frames.at(-1)!, /220\/1000 {2}5\.0 edits\/s {2}ETA 2 min 36 s/);  // 20 edits in 4 s, 780 to go
  t.false(frames.some((f) => /e\+|Infinity|NaN/.test(f)), frames.join(''));
  t.is(formatSeconds(7265), '2 h 01 min');
});

test('queue submit checks every sweep of a grid as comeba sweep would, naming the entry and the option, before Redis is asked', async (t) => {
  const grid = join(tempDir('comeba-cli-grid-'), 'grid.json');
  writeFileSync(grid, JSON.stringify({
    name: 'g', grid: { base: { model: '/on/the/workers/model', data: '/on/the/workers/cf.json', n: 100 }, vary: { mode: ['comeba-hk', 'memit'], 'v-lr': [0.5, 'fast'] } },
  }));
  // Port 1: had the grid been accepted, the error would be about Redis.
  const { status, stderr } = await comebaOut(['queue', 'submit', grid, '--redis', 'redis://127.0.0.1:1']);
  t.is(status, 2, stderr);
  t.regex(stderr, /^comeba queue: sweep 2 of 4 \{.*"mode":"comeba-hk","v-lr":"fast"\}: --v-lr must be a positive number, not 'fast'$/m);
});

test('the value optimisation\'s flags reach every editor of a sweep, and its --help lists them with their defaults', async (t) => {
  const { parseSweepArgs, sweepUsage } = await import('../lib/sweep/args.js');
  const { editorsOf } = await import('../lib/sweep/sweep.js');
  const { HookedModel } = await import('../lib/index.js');
  const options = parseSweepArgs(['--model', tinyGpt2, '--data', join(root, 'testbed', 'counterfact.json'), '--mode', 'comeba-hk,memit', '--v-steps', '7', '--kl-factor', '0', '--v-lr', '0.1'])!;
  t.deepEqual(options.values, { vSteps: 7, vLr: 0.1, klFactor: 0 });
  await using model = await HookedModel.load(tinyGpt2);
  for (const h of Object.values(editorsOf(options, model.info))) t.like(h, { vSteps: 7, vLr: 0.1, klFactor: 0, clampNormFactor: 0.75 });
  for (const flag of ['v-steps', 'v-lr', 'v-weight-decay', 'kl-factor', 'clamp-norm-factor', 'early-stop-loss']) t.regex(sweepUsage, new RegExp(`--${flag} X +\\S`));
});

test('generate: --help describes every option; sampling, stop strings and streaming from the command line', async (t) => {
  const help = await comebaOut(['generate', '--help']);
  for (const flag of ['model', 'prompt', 'max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed', 'stop', 'no-eos', 'stream', 'device', 'dtype']) {
    t.regex(help.stdout, new RegExp(`^  --${flag}\\b.{8,}`, 'm'), flag);
  }
  const args = ['generate', '--model', tinyGpt2, '--prompt', 'The city of Paris is', '--max-new-tokens', '12', '--no-eos'];
  const plain = await comebaOut(args);
  t.is(plain.status, 0, plain.stderr);
  const text = JSON.parse(/^generated {2}(.*)$/m.exec(plain.stdout)![1]) as string;
  const streamed = await comebaOut([...args, '--stream']);
  const out = streamed.stdout;
  t.is(out.slice(out.indexOf('generated  ') + 11, out.indexOf('\ntokens     ')), text, 'the streamed text is the text');
  const stop = text.slice(4, 7);
  const stopped = await comebaOut([...args, '--stop', stop]);
  t.regex(stopped.stdout, /^finished {3}stop$/m);
  t.is(JSON.parse(/^generated {2}(.*)$/m.exec(stopped.stdout)![1]), text.slice(0, text.indexOf(stop)));
  const sampled = await comebaOut([...args, '--temperature', '1.3', '--top-p', '0.9', '--seed', '5']);
  t.is(sampled.status, 0, sampled.stderr);
  t.is((await comebaOut([...args, '--temperature', '1.3', '--top-p', '0.9', '--seed', '5'])).stdout.split('\n')[3], sampled.stdout.split('\n')[3], 'the same seed, the same tokens');
});

test('an unreachable Redis is one line that says what to start, for queue and worker alike', async (t) => {
  // Port 1: nothing listens there, so the connection is refused at once.
  for (const args of [['queue', 'status', 'grid', '--redis', 'redis://127.0.0.1:1'], ['worker', '--results', tempDir('comeba-cli-worker-'), '--redis', 'redis://127.0.0.1:1']]) {
    const { status, stderr } = await comebaOut(args);
    t.is(status, 1, stderr);
    t.is(stderr.trimEnd().split('\n').length, 1, stderr);
    t.regex(stderr, /^comeba (queue|worker): cannot reach Redis at 127\.0\.0\.1:1 \(ECONNREFUSED\): start redis-server there, or name another with --redis URL or COMEBA_REDIS$/m);
  }
});

test('inspect --model describes a checkpoint from its config and headers: architecture, sizes, presets, memory', async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', cli, 'inspect', '--model', join(root, 'test', 'fixtures', 'tiny-llama'), '--dtype', 'bfloat16'],
      { cwd: root, encoding: 'utf8', timeout: 60_000 }, (err, stdout) => (err && !stdout ? reject(err) : resolve(stdout)));
  });
  t.regex(out, /\(llama\): 3 layers, d_model 64, d_ff 128, 4 heads, vocab 512, context 128/);
  t.regex(out, /176,576 parameters stored as F32; 344\.9 KiB in bfloat16/);
  t.regex(out, /comeba-hk on layers 0,1, λ 133\.929 \(Llama-3-8B's 15000 × d_ff 128 \/ 14336\)/);
  // Two layers of d_ff 128: C_accu 2 × 128² float64; E[kkᵀ], λ·E[kkᵀ] and the held keys as much again each, on the host.
  t.regex(out, /on the model's device besides the weights: [\d.]+ [KM]iB \(C_accu 256\.0 KiB float64, ΔW 64\.0 KiB/);
  t.regex(out, /host 768\.0 KiB \(E\[kkᵀ\], λ·E\[kkᵀ\], keys held for incremental saves\)/);
  t.regex(out, /with accumulatorOnHost: device [\d.]+ [KM]iB, host 1\.0 MiB/);
});

// Every architecture the library runs is taken by the commands that read a checkpoint's config: the layer count
// comes from the family's own keys (n_layer for GPT-2/GPT-J, num_hidden_layers for the Llama family).
const architectures = ['gpt2', 'gptj', 'llama', 'mistral', 'qwen2', 'qwen3'] as const;

function comebaOut(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, OMP_NUM_THREADS: '1' } },
      (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }));
  });
}

for (const architecture of architectures) {
  const model = join(root, 'test', 'fixtures', `tiny-${architecture}`);
  test(`${architecture}: inspect, generate, stats and a 2-edit sweep run from the command line; --layers is checked against its layer count`, async (t) => {
    const generated = await comebaOut(['generate', '--model', model, '--prompt', 'The city of Paris is', '--max-new-tokens', '3']);
    t.is(generated.status, 0, generated.stderr);
    t.regex(generated.stdout, new RegExp(`\\(${architecture}, 3 layers, d_model 64, cpu, float32\\)`));
    t.regex(generated.stdout, /^tokens {5}\d+ \d+ \d+$/m);

    const out = join(tempDir('comeba-cli-stats-'), 'stats.safetensors');
    const stats = await comebaOut(['stats', '--model', model, '--corpus', join(root, 'test', 'fixtures', 'tiny-gpt2', 'stats-corpus.txt'), '--layers', '1', '--out', out]);
    t.is(stats.status, 0, stats.stderr);
    t.true(existsSync(out), stats.stdout);

    const inspected = await comebaOut(['inspect', '--model', model]);
    t.is(inspected.status, 0, inspected.stderr);
    t.regex(inspected.stdout, new RegExp(`\\(${architecture}\\): 3 layers, d_model 64`));

    const sweepOut = tempDir('comeba-cli-sweep-');
    const swept = await comebaOut(['sweep', '--model', model, '--data', join(root, 'testbed', 'counterfact.json'), '--n', '2', '--batch', '1',
      '--mode', 'comeba-hk,memit', '--layers', '1,2', '--stats-corpus', join(root, 'test', 'fixtures', 'tiny-gpt2', 'stats-corpus.txt'),
      '--skip', 'generation,perplexity,fluency', '--out', sweepOut]);
    t.is(swept.status, 0, swept.stderr);
    const summary = JSON.parse(readFileSync(join(sweepOut, 'summary.json'), 'utf8')) as { modes: { mode: string; n: number }[] };
    t.deepEqual(summary.modes.map((m) => [m.mode, m.n]), [['comeba-hk', 2], ['memit', 2]]);

    const refused = await comeba(['sweep', '--model', model, '--layers', '2-3']);
    t.is(refused.status, 2);
    t.regex(refused.stderr, /--layers: layer 3 does not exist \(the model has 3 layers, 0-2\)/);
  });
}
