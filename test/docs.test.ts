// The user's guide: README.md and docs/ link only to files that exist, speak to users (no development notes, no
// paths outside the repository), and the README starts with install and a quick start.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { repoRoot } from './helpers.js';

const pages = ['README.md', ...readdirSync(join(repoRoot, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];

test('every relative link of README.md and docs/ resolves inside the repository', (t) => {
  let links = 0;
  for (const page of pages) {
    const text = readFileSync(join(repoRoot, page), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target) || target.startsWith('#')) continue;
      const path = resolve(repoRoot, dirname(page), target.split('#')[0]);
      links++;
      t.true(path.startsWith(repoRoot) && existsSync(path), `${page}: ${target}`);
    }
  }
  t.true(links >= 10, `${links} relative links`);
});

test('the guide has no development notes or paths outside the repository', (t) => {
  for (const page of pages) {
    const lines = readFileSync(join(repoRoot, page), 'utf8').split('\n');
    const found = lines.map((l, i) => [i + 1, l] as const).filter(([, l]) => /issue|\.\.\/shared|borrowed|\$OUT/.test(l));
    t.deepEqual(found, [], page);
  }
});

test('the README opens with what comeba is, install and a quick start of at most 15 lines', (t) => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const headings = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
  t.deepEqual(headings.slice(0, 2), ['Install', 'Quick start']);
  t.true(readme.split('\n').findIndex((l) => l === '## Quick start') < 40);
  const quickStart = /## Quick start\n\n```ts\n([\s\S]*?)```/.exec(readme)![1].trimEnd().split('\n');
  t.true(quickStart.length <= 15, `${quickStart.length} lines`);
  t.regex(readme, /arxiv\.org\/abs\/2403\.05330/);
});

test('the README quick start type-checks against the library', (t) => {
  const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
  const code = /## Quick start\n\n```ts\n([\s\S]*?)```/.exec(readme)![1];
  // Inside the repository, so that the package's own dependencies resolve; 'comeba' is lib/index.ts.
  const dir = mkdtempSync(join(repoRoot, 'test', '.quickstart-'));
  try {
    writeFileSync(join(dir, 'quickstart.ts'), `export {};\n${code.replace("from 'comeba'", "from '../../lib/index.js'")}`);
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noEmit: true, rootDir: '../..' }, include: ['quickstart.ts'] }));
    execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8' });
    t.pass();
  } catch (err) {
    t.fail(String((err as { stdout?: string }).stdout ?? err));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
