import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import test from 'ava';

// The README's TypeScript blocks, checked as a user would use them: written out as modules that
// import 'hopper-streams' (and its subpaths) by name, which resolves to the built package through
// its own exports (npm test builds it first). Every block is type-checked; every block is run,
// unless an HTML comment right before it says why it cannot be:
//
//   <!-- readme-test: typecheck-only (needs a Kafka broker) -->
//
// A marker without a reason fails the test.
//
// Names a block uses without declaring them (`source`, `sink`, `transform`, `slowSink`, `shed`,
// `Event`, `schema`, `event`...) come from test/helpers/readme-preamble.ts.

const root = fileURLToPath(new URL('..', import.meta.url));
const readmePath = path.join(root, 'README.md');
const preamblePath = path.join(root, 'test', 'helpers', 'readme-preamble.ts');
const outDir = path.join(root, '.tmp', 'readme');
const execFileAsync = promisify(execFile);
// Resolved here: the blocks run in a temp directory, where 'tsx' is not installed.
const tsxLoader = import.meta.resolve('tsx/esm');

interface Block {
  /** 1-based README line of the block's first code line. */
  line: number;
  lang: string;
  code: string;
  /** Why the block is not run, from its marker; undefined when it runs. */
  notRunnable: string | undefined;
  file: string;
  /** Lines added before the block's code in its file. */
  headerLines: number;
}

const MARKER = /^<!--\s*readme-test:\s*typecheck-only\b\s*(.*?)\s*-->$/;

function readBlocks(): Block[] {
  const lines = fs.readFileSync(readmePath, 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const start = i;
    let end = i + 1;
    while (end < lines.length && !/^```\s*$/.test(lines[end]!)) end++;
    let before = start - 1;
    while (before >= 0 && lines[before]!.trim() === '') before--;
    const marker = before >= 0 ? MARKER.exec(lines[before]!.trim()) : null;
    blocks.push({
      line: start + 2,
      lang: open[1]!,
      code: lines.slice(start + 1, end).join('\n'),
      notRunnable: marker ? marker[1]! : undefined,
      file: '',
      headerLines: 0,
    });
    i = end;
  }
  return blocks;
}

const preambleSource = fs.readFileSync(preamblePath, 'utf8');
const preambleNames = [...preambleSource.matchAll(/^export (?:const|let|function|async function|interface|type|class) (\w+)/gm)].map((m) => m[1]!);
const preambleTypes = new Set([...preambleSource.matchAll(/^export (?:interface|type) (\w+)/gm)].map((m) => m[1]!));

/** Names from the preamble that a block uses and does not declare or import itself. */
function namesToImport(code: string): string[] {
  return preambleNames.filter((name) => {
    const used = new RegExp(`(?<![\\w.$'"])${name}\\b`).test(code);
    const declared = new RegExp(`(?:const|let|var|function\\*?|interface|type|class)\\s+${name}\\b|import\\s*(?:type\\s*)?\\{[^}]*\\b${name}\\b[^}]*\\}`).test(
      code,
    );
    return used && !declared;
  });
}

const allBlocks = readBlocks();
const tsBlocks = allBlocks.filter((block) => block.lang === 'ts' || block.lang === 'typescript');

test.before(() => {
  if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  fs.copyFileSync(preamblePath, path.join(outDir, 'preamble.ts'));
  for (const [index, block] of tsBlocks.entries()) {
    const names = namesToImport(block.code);
    const header =
      names.length > 0 ? [`import { ${names.map((name) => (preambleTypes.has(name) ? `type ${name}` : name)).join(', ')} } from './preamble.js';`] : [];
    block.headerLines = header.length;
    block.file = path.join(outDir, `block-${String(index + 1).padStart(2, '0')}-line-${block.line}.ts`);
    // `export {}` makes every block a module (top-level await, no globals shared between blocks).
    fs.writeFileSync(block.file, [...header, block.code, 'export {};', ''].join('\n'));
  }
  fs.writeFileSync(
    path.join(outDir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        lib: ['es2023'],
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
        strict: true,
        noEmit: true,
        skipLibCheck: true,
      },
      include: ['*.ts'],
    }),
  );
});

test('README - has TypeScript blocks, and no JavaScript blocks that this test would not check', (t) => {
  t.true(tsBlocks.length >= 4, `found ${tsBlocks.length} ts blocks`);
  const unchecked = allBlocks.filter((block) => /^(js|javascript|mjs|cjs|jsx|tsx)$/.test(block.lang));
  t.deepEqual(
    unchecked.map((block) => `README.md:${block.line} (${block.lang})`),
    [],
    'write code blocks as ```ts so that they are checked',
  );
});

test('README - every TypeScript block type-checks against the built package, under strict settings', async (t) => {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await execFileAsync(process.execPath, [tsc, '-p', path.join(outDir, 'tsconfig.json')], { cwd: root }).then(
    () => '',
    (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`,
  );
  // Point each error at its README line.
  const report = result.replace(/^(?:\.tmp\/readme\/)?(block-\d+-line-\d+\.ts)\((\d+),(\d+)\)/gm, (match, file: string, line: string, column: string) => {
    const block = tsBlocks.find((candidate) => path.basename(candidate.file) === file);
    return block ? `README.md:${block.line + Number(line) - 1 - block.headerLines}:${column}` : match;
  });
  t.is(report, '', report);
});

test('README - a block that is not run says why, in its marker', (t) => {
  const marked = tsBlocks.filter((block) => block.notRunnable !== undefined);
  for (const block of marked) t.log(`README.md:${block.line}: type-checked only: ${block.notRunnable}`);
  t.deepEqual(
    marked.filter((block) => !/\w/.test(block.notRunnable!)).map((block) => `README.md:${block.line}`),
    [],
    'write the reason: <!-- readme-test: typecheck-only (why) -->',
  );
});

test('README - the quick start runs the same test command as CI', (t) => {
  const quickStart = allBlocks.find((block) => block.lang === 'sh' && /npm run demo/.test(block.code));
  t.truthy(quickStart, 'the quick start block');
  const command = /^(.*npm test)\b/m.exec(quickStart!.code)?.[1]?.trim();
  t.is(command, 'npm ci && npm test');
  t.true(
    fs
      .readFileSync(path.join(root, '.ci', 'run'), 'utf8')
      .split('\n')
      .includes(command!),
    '.ci/run runs it as a line of its own',
  );
  t.regex(quickStart!.code, /^npm ci && npm run demo\b/m, 'the demo command installs first');
});

test('README - the quick start names the system packages CI installs, in one line to paste', (t) => {
  const line = allBlocks
    .filter((block) => block.lang === 'sh')
    .flatMap((block) => block.code.split('\n'))
    .find((text) => /^sudo apt-get install -y /.test(text));
  t.truthy(line, 'a `sudo apt-get install -y ...` line in a sh block');
  const named = line!
    .replace(/^sudo apt-get install -y /, '')
    .trim()
    .split(/\s+/)
    .sort();
  const ci = fs.readFileSync(path.join(root, '.ci', 'run'), 'utf8');
  const installed = [...ci.matchAll(/apt-get install -y -qq ([^;}]+?);/g)].flatMap((match) => match[1]!.trim().split(/\s+/)).sort();
  t.true(installed.length > 0, '.ci/run installs apt packages');
  t.deepEqual(named, installed);
});

for (const block of tsBlocks) {
  if (block.notRunnable !== undefined) continue;
  test(`README - the block at line ${block.line} runs to completion`, async (t) => {
    // A fresh working directory per block: relative paths (a `dataDir`) land there.
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-readme-'));
    t.teardown(() => fs.rmSync(cwd, { recursive: true, force: true }));
    const child = spawn(process.execPath, ['--import', tsxLoader, block.file], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += String(chunk)));
    child.stderr.on('data', (chunk: Buffer) => (output += String(chunk)));
    // A generous safety net, not a measurement: a block that hangs is killed and reported.
    const safetyNet = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('close', (c, s) => resolve([c, s])));
    clearTimeout(safetyNet);
    // Exit code 13 is Node's "unsettled top-level await": a promise nothing will ever resolve.
    t.deepEqual({ code, signal }, { code: 0, signal: null }, `README.md:${block.line}:\n${block.code}\n--- output:\n${output}`);
  });
}
