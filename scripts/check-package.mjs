#!/usr/bin/env node
// `node scripts/check-package.mjs`: proves that a consumer's `npm install comeba` works from the
// prebuilt addon alone, the way the published package will be used:
//   1. compile dist/ (`npm run build:ts`): the tarball ships dist/, never lib/ or tsx;
//   2. `npm run build:prebuild` for the libtorch found here (prebuilds/<platform>-<arch>/…torchX_Y.<variant>.node
//      plus its build-info JSON). prebuildify runs `node-gyp rebuild`, which DELETES build/ in this
//      checkout: run this after the tests, or in a throw-away clone;
//   3. check what `npm pack` would ship: dist/ with its .d.ts, the new prebuild, only paths that
//      package.json `files` names (no tests, fixtures, build/, node_modules/; the testbed ships, as
//      `comeba sweep` runs on it by default), under 30 MB;
//   4. `npm pack`, then in a fresh temporary project `npm init -y` and `npm install <tarball>
//      --ignore-scripts` (npm blocks dependencies' install scripts for consumers anyway; same npm cache);
//   5. there, `npx comeba inspect` must report the prebuild (not a source build) as the addon chosen;
//   6. there, a short ESM script imports `comeba`, loads test/fixtures/tiny-gpt2 from this repository
//      by absolute path and greedily generates 5 tokens, which must equal the transformers reference.
// Every step prints its name and time; the first failure stops the check with the step's name and a
// non-zero exit, and leaves the temporary folder in place for a look. Libtorch is found as usual
// (COMEBA_LIBTORCH / LIBTORCH, python3 torch, per-user cache) by both the prebuild and the consumer.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importLib } from './import-lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const maxPackageBytes = 30 * 1024 * 1024;
const fixture = join(root, 'test', 'fixtures', 'tiny-gpt2');
const work = mkdtempSync(join(tmpdir(), 'comeba-package-check-'));
const consumer = join(work, 'consumer');

class StepError extends Error {}

/** Runs one named step, printing its elapsed time; a failure is rethrown carrying the step's name. */
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
function run(command, args, { cwd = root, capture = false } = {}) {
  console.log(`$ ${[command, ...args].join(' ')}${cwd === root ? '' : `   (in ${cwd})`}`);
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    maxBuffer: 64 << 20,
  });
  if (result.error) throw new Error(`${command} could not run: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`\`${[command, ...args].join(' ')}\` exited with ${result.status ?? result.signal}`);
  return result.stdout ?? '';
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// `npm pack --json` prints an array with one entry per package; npm may print warnings before it.
function packJson(stdout) {
  return JSON.parse(stdout.slice(stdout.indexOf('[')))[0];
}

const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

async function main() {
  console.log(`checking the comeba package built from ${root}; scratch folder ${work}`);

  await step('compile dist/ (npm run build:ts)', () => run('npm', ['run', 'build:ts']));

  const prebuild = await step('prebuild (npm run build:prebuild; wipes build/)', async () => {
    const { libtorch } = (await importLib('libtorch')).findLibtorch();
    const { prebuildFileName } = await importLib('native');
    run('npm', ['run', 'build:prebuild']);
    const relPath = ['prebuilds', `${process.platform}-${process.arch}`, prebuildFileName(libtorch)].join('/');
    check(existsSync(join(root, relPath)), `the prebuild did not produce ${relPath}`);
    check(existsSync(join(root, relPath.replace(/\.node$/, '.json'))), `${relPath} has no build-info JSON beside it`);
    console.log(`built ${relPath} for libtorch ${libtorch.version} (${libtorch.variant})`);
    return relPath;
  });

  await step('tarball contents (npm pack --dry-run)', () => {
    // --ignore-scripts: dist/ was compiled above, and a prepack script's output would corrupt the JSON.
    const pack = packJson(run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { capture: true }));
    const paths = pack.files.map((f) => f.path);
    console.log(`${pack.filename}: ${paths.length} files, packed ${mb(pack.size)}, unpacked ${mb(pack.unpackedSize)}`);
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    const allowed = (p) =>
      /^(package\.json|README[^/]*|LICEN[CS]E[^/]*)$/i.test(p) ||
      pkg.files.some((entry) => (entry.endsWith('/') ? p.startsWith(entry) : p === entry));
    const stray = paths.filter((p) => !allowed(p) || /(^|\/)(node_modules|build|test|fixtures)\//.test(p));
    check(stray.length === 0, `the tarball holds files that package.json "files" does not name:\n  ${stray.join('\n  ')}`);
    const needed = [pkg.main, pkg.types, pkg.bin.comeba, 'dist/native.js', prebuild, prebuild.replace(/\.node$/, '.json')];
    const missing = needed.filter((p) => !paths.includes(p));
    check(missing.length === 0, `the tarball lacks ${missing.join(', ')}`);
    check(!paths.some((p) => p.startsWith('lib/')), 'the tarball ships lib/ (TypeScript sources) instead of dist/ only');
    check(pack.unpackedSize <= maxPackageBytes, `the package unpacks to ${mb(pack.unpackedSize)}, over the ${mb(maxPackageBytes)} limit`);
  });

  const tarball = await step('npm pack', () => {
    const pack = packJson(run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { capture: true }));
    const path = join(work, pack.filename);
    check(existsSync(path), `npm pack reported ${pack.filename} but ${path} does not exist`);
    return path;
  });

  await step('consumer install (npm init -y; npm install <tarball> --ignore-scripts)', () => {
    rmSync(consumer, { recursive: true, force: true });
    mkdirSync(consumer, { recursive: true });
    run('npm', ['init', '-y'], { cwd: consumer, capture: true });
    // The default npm cache is shared with this checkout's install; --prefer-offline keeps it offline.
    run('npm', ['install', tarball, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: consumer });
    const installed = join(consumer, 'node_modules', 'comeba');
    check(existsSync(join(installed, 'dist', 'index.js')), 'node_modules/comeba has no dist/index.js');
    check(!existsSync(join(installed, 'build')), 'node_modules/comeba has a build/ folder: a source build would shadow the prebuild');
    console.log(`installed: ${readdirSync(installed).join(' ')}`);
  });

  await step('npx comeba inspect chooses the prebuild', () => {
    const text = run('npx', ['--no-install', 'comeba', 'inspect'], { cwd: consumer, capture: true });
    console.log(text.trimEnd());
    const description = JSON.parse(run('npx', ['--no-install', 'comeba', 'inspect', '--json'], { cwd: consumer, capture: true }));
    const expected = join(consumer, 'node_modules', 'comeba', ...prebuild.split('/'));
    check(!description.error, `inspect reports ${description.error?.name}: ${description.error?.message}`);
    check(description.addon?.kind === 'prebuild', `inspect chose a ${description.addon?.kind} build, not the prebuild`);
    check(description.addon.path === expected, `inspect chose ${description.addon.path}, expected ${expected}`);
    check(/\(prebuild\)/.test(text), 'the text of `comeba inspect` does not say "(prebuild)"');
  });

  await step('consumer script: import comeba, load tiny-gpt2, generate 5 tokens', () => {
    const reference = JSON.parse(readFileSync(join(fixture, 'reference', 'reference.json'), 'utf8'));
    const item = reference.generation.items[0];
    const expected = item.newTokens.slice(0, 5);
    // Node 20 has no `await using` in plain JS: dispose in finally.
    writeFileSync(join(consumer, 'smoke.mjs'), `import { HookedModel } from 'comeba';
const [dir, ids] = [process.argv[2], JSON.parse(process.argv[3])];
const model = await HookedModel.load(dir);
try {
  const out = await model.generate(ids, { maxNewTokens: 5, stopAtEos: false });
  console.log(JSON.stringify({ architecture: model.info.architecture, tokens: out.tokens, text: out.text }));
} finally {
  await model.dispose();
}
`);
    const out = run('node', ['smoke.mjs', fixture, JSON.stringify(reference.inputIds[item.prompt])], { cwd: consumer, capture: true });
    console.log(out.trimEnd());
    const { tokens } = JSON.parse(out.trim().split('\n').at(-1));
    check(JSON.stringify(tokens) === JSON.stringify(expected), `generated ${JSON.stringify(tokens)}, transformers' reference is ${JSON.stringify(expected)}`);
  });
}

try {
  await main();
  rmSync(work, { recursive: true, force: true });
  console.log(`\ncheck-package: OK (a consumer install runs from the prebuild alone); ${root}${sep}build was removed by prebuildify`);
} catch (err) {
  console.error(`\ncheck-package: FAILED: ${err.message}\nscratch folder kept for a look: ${work}`);
  if (!(err instanceof StepError)) console.error(err);
  process.exitCode = 1;
}
