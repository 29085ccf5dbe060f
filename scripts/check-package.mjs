#!/usr/bin/env node
// `node scripts/check-package.mjs [--reuse-release]`: proves that a user's `npm install comeba` works the way
// the published package will be used, from the release tarball and with npm's default settings:
//   1. `npm run pack:release` (skipped with --reuse-release when release/ holds a tarball): dist/ and one
//      prebuild per supported libtorch (torch 2.13 CPU, torch 2.14 CUDA) in release/comeba-<version>.tgz;
//   2. the tarball's contents: dist/ with its .d.ts, both prebuilds with their build-info JSON, LICENSE,
//      only what package.json `files` names, under 30 MB;
//   3. a fresh project, HOME pointed at a new empty folder (so the per-user libtorch cache is empty), and
//      every compiler on PATH replaced by one that records its use and fails: `npm install <tarball>` with
//      npm's defaults (install scripts run). Install must pick the libtorch variant (CPU here: no NVIDIA
//      driver), put it into the new cache, choose the prebuild, and run no compiler (no build/ folder);
//   4. there, `comeba inspect` names the CPU prebuild, and a script loads test/fixtures/tiny-gpt2, generates
//      5 tokens (equal to transformers' reference), takes two edits (which must move a probe's logits), saves
//      the editor and loads it back (same checksum, the probe's logits bit-identical);
//   5. the source-build fallback: a second project installs the tarball, its prebuilds are removed (as on a
//      libtorch no prebuild fits), and `npm rebuild comeba` — npm running the install script again, real
//      compilers on PATH — builds from source with the package's own dependencies; the same script passes.
// npm's package cache is the machine's (npm_config_cache), so dependencies do not download again. Every step
// prints its name and time; the first failure stops the check and keeps the scratch folder for a look.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const maxPackageBytes = 30 * 1024 * 1024;
const fixture = join(root, 'test', 'fixtures', 'tiny-gpt2');
const work = mkdtempSync(join(tmpdir(), 'comeba-package-check-'));
const reuseRelease = process.argv.includes('--reuse-release');

class StepError extends Error {}

async function step(name, fn) {
  console.log(`\n==> ${name}`);
  const started = performance.now();
  try {
    const result = await fn();
    console.log(`==> ${name}: ok in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return result;
  } catch (err) {
    throw new StepError(`step '${name}' failed: ${err.message}`, { cause: err });
  }
}

/** Runs a command; output goes to the terminal unless `capture`, in which case stdout is returned. */
function run(command, args, { cwd = root, capture = false, env = process.env } = {}) {
  console.log(`$ ${[command, ...args].join(' ')}${cwd === root ? '' : `   (in ${cwd})`}`);
  const result = spawnSync(command, args, { cwd, env, encoding: 'utf8', stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', maxBuffer: 64 << 20 });
  if (result.error) throw new Error(`${command} could not run: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`\`${[command, ...args].join(' ')}\` exited with ${result.status ?? result.signal}`);
  return result.stdout ?? '';
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** The environment of a user with an empty home: no libtorch cache, npm's default settings. */
function userEnv(home, extraPath) {
  const env = { ...process.env, HOME: home, npm_config_cache: process.env.npm_config_cache ?? join(homedir(), '.npm') };
  // Nothing of this process's npm run (npm_config_*, npm_lifecycle_*) or of our own variables leaks in.
  for (const name of Object.keys(env)) if (name.startsWith('npm_') && name !== 'npm_config_cache') delete env[name];
  for (const name of ['XDG_CACHE_HOME', 'COMEBA_LIBTORCH', 'LIBTORCH', 'COMEBA_VARIANT']) delete env[name];
  if (extraPath) env.PATH = `${extraPath}:${env.PATH}`;
  return env;
}

/** A folder of stand-ins for every compiler and build tool: each records its call in `log` and fails. */
function poisonedCompilers(dir, log) {
  mkdirSync(dir, { recursive: true });
  for (const tool of ['cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'cmake', 'make', 'ninja']) {
    writeFileSync(join(dir, tool), `#!/bin/sh\necho "${tool} $*" >> '${log}'\nexit 1\n`);
    chmodSync(join(dir, tool), 0o755);
  }
  return dir;
}

function prebuildNames() {
  // The file names lib/addon/native.ts's prebuildFileName gives, for lib/addon/libtorch.ts's table, read from dist/.
  return import(join(root, 'dist', 'addon', 'libtorch.js')).then(async ({ libtorchVariants }) => {
    const { prebuildFileName } = await import(join(root, 'dist', 'addon', 'native.js'));
    return Object.entries(libtorchVariants).map(([variant, spec]) => ({
      variant,
      path: `prebuilds/${process.platform}-${process.arch}/${prebuildFileName({ versionMinor: spec.version.split('.').slice(0, 2).join('.'), variant })}`,
    }));
  });
}

function makeConsumer(name) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  run('npm', ['init', '-y'], { cwd: dir, capture: true });
  return dir;
}

const smokeScript = `import { ConsecutiveEditor, HookedModel } from 'comeba';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [dir, ids] = [process.argv[2], JSON.parse(process.argv[3])];
const requests = [
  { prompt: 'The city of {} is in', subject: 'Paris', target: ' Spain' },
  { prompt: '{} works as a doctor in', subject: 'Alice', target: ' Rome' },
];
const scratch = mkdtempSync(join(tmpdir(), 'comeba-smoke-'));
const model = await HookedModel.load(dir);
const probe = model.tokenizer.encode('Alice works as a doctor in');
const lastLogits = async () => Array.from((await model.logits([probe], { logits: 'last' })).data);
const maxDiff = (a, b) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
try {
  const generated = await model.generate(ids, { maxNewTokens: 5, stopAtEos: false });
  const before = await lastLogits();
  const options = { stats: { corpus: join(dir, 'stats-corpus.txt'), cacheDir: join(scratch, 'stats') }, layers: [1, 2], lambda: 50 };
  const editor = await ConsecutiveEditor.create(model, options);
  for (const request of requests) await editor.edit([request]);
  const edited = await lastLogits();
  const checksum = await editor.checksum();
  await editor.save(join(scratch, 'editor'));
  await editor.dispose();
  const loaded = await ConsecutiveEditor.load(model, join(scratch, 'editor'));
  const reloaded = await lastLogits();
  console.log(JSON.stringify({
    tokens: generated.tokens, editChange: maxDiff(before, edited), reloadChange: maxDiff(edited, reloaded),
    steps: loaded.step, checksumSaved: checksum, checksumLoaded: await loaded.checksum(),
  }));
  await loaded.dispose();
} finally {
  await model.dispose();
}
`;

function smoke(consumer, env) {
  const reference = JSON.parse(readFileSync(join(fixture, 'reference', 'reference.json'), 'utf8'));
  const item = reference.generation.items[0];
  writeFileSync(join(consumer, 'smoke.mjs'), smokeScript);
  const out = run('node', ['smoke.mjs', fixture, JSON.stringify(reference.inputIds[item.prompt])], { cwd: consumer, capture: true, env });
  console.log(out.trimEnd());
  const r = JSON.parse(out.trim().split('\n').at(-1));
  const expected = item.newTokens.slice(0, 5);
  check(JSON.stringify(r.tokens) === JSON.stringify(expected), `generated ${JSON.stringify(r.tokens)}, transformers' reference is ${JSON.stringify(expected)}`);
  check(r.editChange > 1e-4, `two edits moved the probe's logits by only ${r.editChange}`);
  check(r.steps === 2, `the loaded editor is at step ${r.steps}, not 2`);
  check(r.checksumLoaded === r.checksumSaved, `the loaded editor's checksum ${r.checksumLoaded} differs from the saved one's ${r.checksumSaved}`);
  check(r.reloadChange === 0, `after loading, the probe's logits differ from the edited model's by ${r.reloadChange}`);
}

function inspect(consumer, env) {
  console.log(run('npx', ['--no-install', 'comeba', 'inspect'], { cwd: consumer, capture: true, env }).trimEnd());
  const description = JSON.parse(run('npx', ['--no-install', 'comeba', 'inspect', '--json'], { cwd: consumer, capture: true, env }));
  check(!description.error, `inspect reports ${description.error?.name}: ${description.error?.message}`);
  return description;
}

async function main() {
  console.log(`checking the comeba package built from ${root}; scratch folder ${work}`);
  const release = join(root, 'release');
  const tarballs = () => (existsSync(release) ? readdirSync(release).filter((f) => f.endsWith('.tgz')) : []);
  if (!reuseRelease || tarballs().length !== 1) await step('release tarball (npm run pack:release)', () => run('npm', ['run', 'pack:release']));
  check(tarballs().length === 1, `release/ holds ${tarballs().length} tarballs, expected 1`);
  const tarball = join(release, tarballs()[0]);
  const prebuilds = await prebuildNames();

  await step('tarball contents', () => {
    const paths = run('tar', ['-tzf', tarball], { capture: true }).trim().split('\n').map((p) => p.replace(/^package\//, ''));
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const allowed = (p) =>
      /^(package\.json|README[^/]*|LICEN[CS]E[^/]*)$/i.test(p) || pkg.files.some((entry) => (entry.endsWith('/') ? p.startsWith(entry) : p === entry));
    const stray = paths.filter((p) => !allowed(p) || /(^|\/)(node_modules|build|test|fixtures)\//.test(p));
    check(stray.length === 0, `the tarball holds files that package.json "files" does not name:\n  ${stray.join('\n  ')}`);
    const needed = [pkg.main, pkg.types, pkg.bin.comeba, 'dist/addon/native.js', 'LICENSE', ...prebuilds.flatMap((p) => [p.path, p.path.replace(/\.node$/, '.json')])];
    const missing = needed.filter((p) => !paths.includes(p));
    check(missing.length === 0, `the tarball lacks ${missing.join(', ')}`);
    check(!paths.some((p) => p.startsWith('lib/')), 'the tarball ships lib/ (TypeScript sources) instead of dist/ only');
    const unpacked = Number(run('sh', ['-c', `tar -xzOf '${tarball}' | wc -c`], { capture: true }).trim());
    console.log(`${tarball}: ${paths.length} files, ${mb(readFileSync(tarball).length)} packed, ${mb(unpacked)} unpacked`);
    check(unpacked <= maxPackageBytes, `the package unpacks to ${mb(unpacked)}, over the ${mb(maxPackageBytes)} limit`);
  });

  const home = join(work, 'home');
  const compilerLog = join(work, 'compilers-called.log');
  const noCompilers = userEnv(home, poisonedCompilers(join(work, 'no-compilers'), compilerLog));
  const consumer = await step('install with npm defaults, empty cache, no compiler usable (npm install <tarball>)', () => {
    mkdirSync(home, { recursive: true });
    const dir = makeConsumer('consumer');
    run('npm', ['install', tarball, '--foreground-scripts', '--no-audit', '--no-fund'], { cwd: dir, env: noCompilers });
    const installed = join(dir, 'node_modules', 'comeba');
    check(!existsSync(compilerLog), `a compiler ran during install:\n${existsSync(compilerLog) ? readFileSync(compilerLog, 'utf8') : ''}`);
    check(!existsSync(join(installed, 'build')), 'node_modules/comeba has a build/ folder: install compiled instead of using the prebuild');
    const cache = join(home, '.cache', 'comeba', 'libtorch');
    check(existsSync(cache) && readdirSync(cache).some((e) => e.endsWith('-cpu')), `install left no CPU libtorch in the new per-user cache ${cache}`);
    console.log(`per-user cache: ${readdirSync(cache).join(' ')}`);
    return dir;
  });

  await step('comeba inspect names the CPU prebuild and the cached libtorch', () => {
    const d = inspect(consumer, noCompilers);
    const cpu = prebuilds.find((p) => p.variant === 'cpu');
    check(d.addon?.kind === 'prebuild', `inspect chose a ${d.addon?.kind} build, not a prebuild`);
    check(d.addon.path === join(consumer, 'node_modules', 'comeba', cpu.path), `inspect chose ${d.addon.path}, expected the package's ${cpu.path}`);
    check(d.libtorch?.source === 'cache' && d.libtorch.dir.startsWith(home), `inspect's libtorch is ${d.libtorch?.dir} (${d.libtorch?.source}), not the new cache's`);
  });

  await step('consumer script: load tiny-gpt2, generate, two edits, save and load the editor', () => smoke(consumer, noCompilers));

  const fallback = await step('source-build fallback: prebuilds removed, npm rebuild comeba', () => {
    const dir = makeConsumer('consumer-source');
    const env = userEnv(home); // the cache from above; the real compilers
    run('npm', ['install', tarball, '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, env });
    rmSync(join(dir, 'node_modules', 'comeba', 'prebuilds'), { recursive: true, force: true });
    run('npm', ['rebuild', 'comeba', '--foreground-scripts'], { cwd: dir, env });
    check(existsSync(join(dir, 'node_modules', 'comeba', 'build', 'Release', 'comeba.node')), 'npm rebuild left no build/Release/comeba.node');
    const d = inspect(dir, env);
    check(d.addon?.kind === 'source', `inspect chose a ${d.addon?.kind} build, not the source build`);
    return { dir, env };
  });

  await step('consumer script on the source build', () => smoke(fallback.dir, fallback.env));
}

try {
  await main();
  rmSync(work, { recursive: true, force: true });
  console.log('\ncheck-package: OK (install from the release tarball uses the prebuild and no compiler; the source build works where none fits)');
} catch (err) {
  console.error(`\ncheck-package: FAILED: ${err.message}\nscratch folder kept for a look: ${work}`);
  if (!(err instanceof StepError)) console.error(err);
  process.exitCode = 1;
}
