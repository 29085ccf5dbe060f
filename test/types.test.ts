// The published declarations (dist/*.d.ts, as tsconfig.build.json emits them): testing hooks marked @internal are
// stripped, and the types that public signatures return or take are exported from the package's entry point.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, tempDir } from './helpers.js';

test('declarations: @internal members stripped, the public surface exported from index', (t) => {
  const out = tempDir('comeba-dts-');
  execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', out, '--emitDeclarationOnly'], { cwd: repoRoot });
  const internal = readdirSync(join(repoRoot, 'lib'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .flatMap((f) => [...readFileSync(join(repoRoot, 'lib', f), 'utf8').matchAll(/@internal[^\n]*\n\s*(?:readonly\s+|static\s+|async\s+|private\s+|get\s+|set\s+)*([A-Za-z_$#][\w$]*)/g)].map((m) => [f, m[1]] as const));
  t.log(`@internal: ${internal.map(([f, m]) => `${f} ${m}`).join(', ')}`);
  t.true(internal.length > 0, 'lib/ marks some members @internal');
  for (const [file, member] of internal) {
    const dts = readFileSync(join(out, file.replace(/\.ts$/, '.d.ts')), 'utf8');
    t.false(new RegExp(`\\b${member.replace('$', '\\$')}\\??[(:<]`).test(dts), `${file}: ${member} is @internal but published`);
  }
  // index.d.ts and the modules it re-exports whole (export * from …)
  const indexText = readFileSync(join(out, 'index.d.ts'), 'utf8');
  const index = [indexText, ...[...indexText.matchAll(/export \* from '\.\/(.+)\.js'/g)].map((m) => readFileSync(join(out, `${m[1]}.d.ts`), 'utf8'))].join('\n');
  for (const name of ['SaveReport', 'summarise', 'EditReport', 'EditProgress', 'unrealisedBelow', 'RedisUnavailableError', 'CollectOptions', 'Generation']) {
    t.regex(index, new RegExp(`\\b${name}\\b`), `${name} is not exported from the package`);
  }
});
