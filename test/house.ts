import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

// The shape of lib/ (docs/how-it-works.md, Layers; docs/design.md, Who may call whom): no import
// cycle, and every import goes down the layers or stays in its own, never back up. The graph is
// built from the sources, type-only imports included: a type that points back up is an arrow too.

const lib = fileURLToPath(new URL('../lib/', import.meta.url));

/**
 * The layers of lib/, top first; a file may import only from its own layer or one below. A new
 * file is placed in its layer here (the test names any file that is in none).
 */
const LAYERS: Array<{ name: string; files: RegExp }> = [
  { name: 'the command line', files: /^cli\// },
  {
    name: 'the entries, stream adapters and the Kafka sink',
    files: /^(index|streams|streamx|adapter|node-reader|durable-callbacks|engine|kafka(-[a-z]+)?)\.ts$/,
  },
  { name: 'the engine', files: /^(channel(-[a-z]+)?|tiers|held-writes|placements)\.ts$/ },
  { name: 'the segment log', files: /^segments\// },
  {
    name: 'files, the lock, the container format and the codecs',
    files: /^(directory|lock(-[a-z]+)?|proc|ocf|codec|[a-z]+-codec|plain-data|size(-[a-z]+)?|quick-check)\.ts$/,
  },
  { name: 'errors and options', files: /^(errors|options)\.ts$/ },
];

/** The relative imports of a source (static, `export ... from`, type-only and dynamic), as lib/-relative paths. */
function importsOf(file: string): string[] {
  const source = fs.readFileSync(path.join(lib, file), 'utf8');
  const specifiers = [
    ...source.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s*'(\.[^']*)'/gm),
    ...source.matchAll(/^import\s*'(\.[^']*)'/gm),
    ...source.matchAll(/\bimport\(\s*'(\.[^']*)'\s*\)/g),
  ].map((match) => match[1] as string);
  return [...new Set(specifiers.map((specifier) => path.join(path.dirname(file), specifier.replace(/\.js$/, '.ts'))))];
}

function importGraph(): Map<string, string[]> {
  const files = fs
    .readdirSync(lib, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .map((file) => file.split(path.sep).join('/'))
    .sort();
  return new Map(files.map((file) => [file, importsOf(file)]));
}

/** The cycles of a graph: its strongly connected components of more than one node, or with a self-import (Tarjan). */
function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    index.set(node, next);
    low.set(node, next);
    next++;
    stack.push(node);
    onStack.add(node);
    for (const to of graph.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (onStack.has(to)) {
        low.set(node, Math.min(low.get(node)!, index.get(to)!));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)?.includes(node)) found.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

test('lib/ - every relative import names a file of lib/', (t) => {
  const graph = importGraph();
  const missing = [...graph].flatMap(([file, imports]) => imports.filter((to) => !graph.has(to)).map((to) => `${file} -> ${to}`));
  t.deepEqual(missing, []);
  // The reading of imports sees them: the facade imports its parts.
  t.true(graph.get('index.ts')?.includes('streams.ts'));
  t.true(graph.get('lock.ts')?.includes('lock-claim.ts'));
});

test('lib/ - no import cycle', (t) => {
  t.deepEqual(cycles(importGraph()), []);
});

test('lib/ - the cycle check finds a cycle, and a self-import', (t) => {
  const graph = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts']],
    ['c.ts', ['a.ts', 'd.ts']],
    ['d.ts', ['d.ts']],
    ['e.ts', ['a.ts']],
  ]);
  t.deepEqual(cycles(graph), [['d.ts'], ['a.ts', 'b.ts', 'c.ts']]);
});

test('lib/ - every file is in a layer, and no import goes back up a layer', (t) => {
  const layerOf = (file: string): number => LAYERS.findIndex((layer) => layer.files.test(file));
  const graph = importGraph();
  t.deepEqual(
    [...graph.keys()].filter((file) => layerOf(file) === -1),
    [],
    'a file in no layer of test/house.ts',
  );
  const upward = [...graph].flatMap(([file, imports]) =>
    imports
      .filter((to) => graph.has(to) && layerOf(to) < layerOf(file))
      .map((to) => `${file} (${LAYERS[layerOf(file)]?.name}) -> ${to} (${LAYERS[layerOf(to)]?.name})`),
  );
  t.deepEqual(upward, []);
});
