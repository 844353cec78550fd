import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import test from 'ava';
import { standIns, typeStandIns } from './helpers/readme-preamble.js';

// The TypeScript blocks of README.md and docs/*.md, checked as a user would use them: written out
// as modules that import 'hopper-streams' (and its subpaths) by name, which resolves to the built
// package through its own exports (npm test builds it first). Every block is type-checked on its
// own, exactly as written, so a block pasted into a project type-checks there too; every block is
// run, unless an HTML comment right before it says why it cannot be:
//
//   <!-- readme-test: typecheck-only (needs a Kafka broker) -->
//
// A marker without a reason fails the test.
//
// The names a block leaves to the reader (`source`, `sink`, `Event`...) it declares itself
// (`declare const source: Readable;`, `interface Event {...}`). When a block runs,
// test/helpers/readme-preamble.ts is loaded first and puts small values under those names on
// `globalThis`.

const root = fileURLToPath(new URL('..', import.meta.url));
const docFiles = [
  'README.md',
  ...fs
    .readdirSync(path.join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];
const preamblePath = path.join(root, 'test', 'helpers', 'readme-preamble.ts');
const outDir = path.join(root, '.tmp', 'readme');
const execFileAsync = promisify(execFile);
// Resolved here: the blocks run in a temp directory, where 'tsx' is not installed.
const tsxLoader = import.meta.resolve('tsx/esm');
const setupPath = path.join(outDir, 'stand-ins.ts');

interface Block {
  /** The page, relative to the repository root: `README.md`, `docs/guide.md`. */
  doc: string;
  /** 1-based line of the block's first code line in its page. */
  line: number;
  lang: string;
  code: string;
  /** Why the block is not run, from its marker; undefined when it runs. */
  notRunnable: string | undefined;
  file: string;
}

const MARKER = /^<!--\s*readme-test:\s*typecheck-only\b\s*(.*?)\s*-->$/;

function readBlocks(doc: string): Block[] {
  const lines = fs.readFileSync(path.join(root, doc), 'utf8').split('\n');
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
      doc,
      line: start + 2,
      lang: open[1]!,
      code: lines.slice(start + 1, end).join('\n'),
      notRunnable: marker ? marker[1]! : undefined,
      file: '',
    });
    i = end;
  }
  return blocks;
}

const where = (block: Block): string => `${block.doc}:${block.line}`;

// A stand-in a block uses without declaring is a type error ("Cannot find name 'source'"), except
// where a global of the same name exists: the type-check would take that one instead (an `Event`
// used without its `interface Event` would be Node's DOM-style Event). Those names are checked here.
const globalStandIns = [...Object.keys(standIns), ...typeStandIns].filter((name) => name in globalThis);

/** Stand-ins a block uses without declaring (or importing) them itself, where a global would take their place. */
function undeclaredStandIns(code: string): string[] {
  return globalStandIns.filter((name) => {
    const used = new RegExp(`(?<![\\w.$'"])${name}\\b`).test(code);
    const declared = new RegExp(`(?:const|let|var|function\\*?|interface|type|class)\\s+${name}\\b|import\\s*(?:type\\s*)?\\{[^}]*\\b${name}\\b[^}]*\\}`).test(
      code,
    );
    return used && !declared;
  });
}

const allBlocks = docFiles.flatMap(readBlocks);
const readmeBlocks = allBlocks.filter((block) => block.doc === 'README.md');
const tsBlocks = allBlocks.filter((block) => block.lang === 'ts' || block.lang === 'typescript');

test.before(() => {
  if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(setupPath, `import { standIns } from ${JSON.stringify(pathToFileURL(preamblePath).href)};\nObject.assign(globalThis, standIns);\n`);
  for (const [index, block] of tsBlocks.entries()) {
    const page = block.doc.replace(/\.md$/, '').replace(/\W+/g, '-').toLowerCase();
    block.file = path.join(outDir, `block-${String(index + 1).padStart(2, '0')}-${page}-line-${block.line}.ts`);
    // `export {}` makes every block a module (top-level await, no globals shared between blocks).
    fs.writeFileSync(block.file, [block.code, 'export {};', ''].join('\n'));
  }
  fs.writeFileSync(
    path.join(outDir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        // No DOM: the blocks are Node code. (@types/node still declares a global `Event`, which is
        // why the test below checks that a block declares the stand-ins it uses.)
        lib: ['es2023'],
        types: ['node'],
        typeRoots: [path.join(root, 'node_modules', '@types')],
        strict: true,
        noEmit: true,
        skipLibCheck: true,
      },
      // The blocks only: the stand-ins' module is not part of the check.
      include: ['block-*.ts'],
    }),
  );
});

test('README - has TypeScript blocks, and README and docs/ have no JavaScript blocks that this test would not check', (t) => {
  t.true(readmeBlocks.filter((block) => tsBlocks.includes(block)).length >= 3, 'the README has TypeScript blocks');
  t.true(
    tsBlocks.some((block) => block.doc !== 'README.md'),
    'docs/ has TypeScript blocks',
  );
  const unchecked = allBlocks.filter((block) => /^(js|javascript|mjs|cjs|jsx|tsx)$/.test(block.lang));
  t.deepEqual(
    unchecked.map((block) => `${where(block)} (${block.lang})`),
    [],
    'write code blocks as ```ts so that they are checked',
  );
});

test('README - a page a newcomer reads in ten minutes: at most 450 lines, the rest in docs/', (t) => {
  const lines = fs.readFileSync(path.join(root, 'README.md'), 'utf8').split('\n').length;
  t.true(lines <= 450, `README.md has ${lines} lines: move the details into docs/`);
});

test('docs - every TypeScript block declares the stand-ins it uses, so that no global takes their place', (t) => {
  t.deepEqual(globalStandIns, ['Event'], 'the stand-ins a global of the same name would replace');
  const missing = tsBlocks.flatMap((block) => undeclaredStandIns(block.code).map((name) => `${where(block)}: \`${name}\``));
  t.deepEqual(missing, [], 'declare it in the block: `declare const source: Readable;`, `interface Event { ... }`');
});

test('docs - every TypeScript block type-checks on its own against the built package, under strict settings', async (t) => {
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await execFileAsync(process.execPath, [tsc, '-p', path.join(outDir, 'tsconfig.json')], { cwd: root }).then(
    () => '',
    (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`,
  );
  // Point each error at its line in its page.
  const report = result.replace(/^(?:\.tmp\/readme\/)?(block-[\w-]+\.ts)\((\d+),(\d+)\)/gm, (match, file: string, line: string, column: string) => {
    const block = tsBlocks.find((candidate) => path.basename(candidate.file) === file);
    return block ? `${block.doc}:${block.line + Number(line) - 1}:${column}` : match;
  });
  t.is(report, '', report);
});

test('docs - a block that is not run says why, in its marker', (t) => {
  const marked = tsBlocks.filter((block) => block.notRunnable !== undefined);
  for (const block of marked) t.log(`${where(block)}: type-checked only: ${block.notRunnable}`);
  t.deepEqual(marked.filter((block) => !/\w/.test(block.notRunnable!)).map(where), [], 'write the reason: <!-- readme-test: typecheck-only (why) -->');
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens, numbered when repeated. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of withoutCodeBlocks(markdown).matchAll(/^#{1,6} +(.+?) *#*$/gm)) {
    const text = heading!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*_]/g, '');
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

function withoutCodeBlocks(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```\s*$/gm, '');
}

test('docs - every link of README and docs/ to a file of the repository, or to a heading, resolves', (t) => {
  const broken: string[] = [];
  for (const doc of [...docFiles, 'CHANGELOG.md']) {
    const text = withoutCodeBlocks(fs.readFileSync(path.join(root, doc), 'utf8')).replace(/`[^`\n]*`/g, '');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z][\w+.-]*:/i.test(target!)) continue; // https:, mailto:
      const [file, anchor] = target!.split('#') as [string, string | undefined];
      const resolved = file === '' ? path.join(root, doc) : path.resolve(path.dirname(path.join(root, doc)), decodeURIComponent(file));
      if (!fs.existsSync(resolved)) {
        broken.push(`${doc}: ${target} (no such file)`);
        continue;
      }
      if (anchor !== undefined && resolved.endsWith('.md') && !anchorsOf(fs.readFileSync(resolved, 'utf8')).has(anchor)) {
        broken.push(`${doc}: ${target} (no such heading)`);
      }
    }
  }
  t.deepEqual(broken, []);
});

test('README - the quick start runs the same test command as CI', (t) => {
  const quickStart = readmeBlocks.find((block) => block.lang === 'sh' && /npm run demo/.test(block.code));
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
  const line = readmeBlocks
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
  const title =
    block.doc === 'README.md' ? `README - the block at line ${block.line} runs to completion` : `docs - the block at ${where(block)} runs to completion`;
  test(title, async (t) => {
    // A fresh working directory per block: relative paths (a `dataDir`) land there.
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-readme-'));
    t.teardown(() => fs.rmSync(cwd, { recursive: true, force: true }));
    const child = spawn(process.execPath, ['--import', tsxLoader, '--import', pathToFileURL(setupPath).href, block.file], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
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
    t.deepEqual({ code, signal }, { code: 0, signal: null }, `${where(block)}:\n${block.code}\n--- output:\n${output}`);
  });
}
