// lib/ by concern: every folder imports only from folders below it (type-only imports included), so there is
// no import cycle, and the CLI and the queue call the library, never the other way round.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const lib = join(dirname(fileURLToPath(import.meta.url)), '..', 'lib');

// Lowest first; a module may import its own level and the ones below.
const levels: [string, number][] = [
  ['errors.ts', 0],
  ['io/', 1], ['addon/', 1],
  ['model/', 2], ['args.ts', 2],
  ['statistics/', 3],
  ['edit/', 4],
  ['eval/', 5],
  ['sweep/', 6],
  ['queue/', 7],
  ['cli/', 8],
  ['index.ts', 9],
];

function levelOf(module: string): number {
  const found = levels.find(([prefix]) => module === prefix || module.startsWith(prefix));
  if (!found) throw new Error(`lib/${module} is in no level of test/layout.test.ts: add its folder there`);
  return found[1];
}

function modules(): string[] {
  return readdirSync(lib, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => f.split('\\').join('/')).sort();
}

/** Every relative import of `module` (static, `import type`, re-exports, dynamic), as lib-relative .ts paths. */
function importsOf(module: string): string[] {
  const source = readFileSync(join(lib, module), 'utf8');
  const specifiers = [...source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g)]
    .map((m) => m[1] ?? m[2]);
  return specifiers.map((s) => relative(lib, normalize(join(lib, dirname(module), s))).replace(/\.js$/, '.ts'));
}

const graph = new Map(modules().map((m) => [m, importsOf(m)]));

test('every import resolves to a module of lib/', (t) => {
  const dangling = [...graph].flatMap(([m, deps]) => deps.filter((d) => !graph.has(d)).map((d) => `${m} → ${d}`));
  t.deepEqual(dangling, []);
});

test('each folder imports only its own level and the ones below: the CLI and the queue are never imported by the library', (t) => {
  const upward = [...graph].flatMap(([m, deps]) => deps.filter((d) => graph.has(d) && levelOf(d) > levelOf(m)).map((d) => `${m} → ${d}`));
  t.deepEqual(upward, []);
});

test('no import cycle in lib/, type-only imports included', (t) => {
  // Tarjan's strongly connected components; a component of more than one module is a cycle.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        component.push(w);
      } while (w !== v);
      if (component.length > 1) cycles.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  t.deepEqual(cycles, []);
});
