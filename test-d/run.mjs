// Type-checks test-d/ against the built package with each TypeScript in devDependencies
// ("typescript", and aliases such as "typescript-5": "npm:typescript@^5") and each @types/node
// major ("@types/node", and aliases such as "@types/node-22": "npm:@types/node@^22"), so that
// adding a version is one line in package.json. Each run sees only its own @types/node, through
// a typeRoots folder holding a `node` link to it.
//
// Three checks per TypeScript:
// - test-d/*.ts with `types: ["node"]`, once per @types/node: a line under `@ts-expect-error` must
//   fail to compile, every other line must compile;
// - test-d/*.ts with `types: []`, TypeScript 7's default: the package's declarations must bring
//   Node's types in themselves;
// - test-d/messages/*.ts: a line under `// @error: TEXT` must fail with a diagnostic whose text
//   (its whole chain) contains TEXT, and no other line may fail. This is what a user reads.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const devNames = Object.keys(pkg.devDependencies);
const typesPackages = devNames.filter((name) => /^@types\/node(-[\w.]+)?$/.test(name));
const compilers = devNames.filter((name) => /^typescript(-[\w.]+)?$/.test(name));
if (!fs.existsSync(path.join(root, 'dist', 'index.d.ts'))) {
  console.error('test-d: dist/ is missing: run `npm run build` first (npm test does)');
  process.exit(1);
}
if (typesPackages.length === 0 || compilers.length === 0) {
  console.error('test-d: no @types/node or no typescript in devDependencies');
  process.exit(1);
}

const versionOf = (name) => JSON.parse(fs.readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version;

/** Writes a tsconfig in .tmp/test-d/<label>/ whose typeRoots hold only `typesName`, and returns its path. */
function config(label, typesName, compilerOptions, include) {
  const dir = path.join(root, '.tmp', 'test-d', label);
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(path.join(dir, 'node'), { force: true });
  fs.symlinkSync(path.join(root, 'node_modules', typesName), path.join(dir, 'node'), 'dir');
  const file = path.join(dir, 'tsconfig.json');
  const base = path.relative(dir, path.join(root, 'test-d', 'tsconfig.json'));
  const files = include.map((pattern) => path.relative(dir, path.join(root, 'test-d', pattern)));
  fs.writeFileSync(file, JSON.stringify({ extends: base, compilerOptions: { typeRoots: ['.'], ...compilerOptions }, include: files }, null, 2));
  return file;
}

function tsc(compiler, configFile) {
  const bin = path.join(root, 'node_modules', compiler, 'bin', 'tsc');
  return spawnSync(process.execPath, [bin, '-p', configFile, '--pretty', 'false'], { cwd: root, encoding: 'utf8' });
}

/** The diagnostics of a tsc run: file (relative to the root), line, and the whole message chain. */
function diagnostics(output) {
  const found = [];
  for (const line of output.split('\n')) {
    const head = /^(.+?)\((\d+),\d+\): error (TS\d+: .*)$/.exec(line);
    if (head) found.push({ file: path.resolve(root, head[1]), line: Number(head[2]), text: head[3] });
    else if (line.startsWith(' ') && found.length > 0) found[found.length - 1].text += `\n${line.trim()}`;
  }
  return found;
}

/** The `// @error: TEXT` marks of test-d/messages/: file -> line the mark is for -> TEXT. */
function marks() {
  const dir = path.join(root, 'test-d', 'messages');
  const all = new Map();
  for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const file = path.join(dir, name);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const expected = new Map();
    lines.forEach((text, i) => {
      const mark = /^\s*\/\/ @error: (.+)$/.exec(text);
      if (mark) expected.set(i + 2, mark[1].trim());
    });
    all.set(file, expected);
  }
  return all;
}

let failed = 0;
function report(label, ok, details) {
  if (ok) {
    console.log(`test-d: ${label}: ok`);
  } else {
    failed++;
    console.error(`test-d: ${label}: FAILED`);
    process.stderr.write(details.endsWith('\n') ? details : `${details}\n`);
  }
}

for (const compiler of compilers) {
  const ts = `TypeScript ${versionOf(compiler)}`;
  const tag = compiler.replace('/', '+');
  for (const typesName of typesPackages) {
    const label = `${tag}.${typesName.replace('/', '+')}`;
    const result = tsc(compiler, config(label, typesName, {}, ['*.ts']));
    report(`${ts}, @types/node ${versionOf(typesName)}`, result.status === 0, result.stdout + result.stderr);
  }
  const none = tsc(compiler, config(`${tag}.types-none`, typesPackages[0], { types: [] }, ['*.ts']));
  report(`${ts}, types: [] (TypeScript 7's default)`, none.status === 0, none.stdout + none.stderr);

  const messages = tsc(compiler, config(`${tag}.messages`, typesPackages[0], {}, ['messages/*.ts']));
  const found = diagnostics(messages.stdout);
  const problems = [];
  for (const [file, expected] of marks()) {
    const rel = path.relative(root, file);
    for (const [line, text] of expected) {
      const here = found.filter((d) => d.file === file && d.line === line);
      if (here.length === 0) problems.push(`${rel}:${line}: compiles, but should fail saying ${JSON.stringify(text)}`);
      else if (!here.some((d) => d.text.includes(text))) {
        problems.push(`${rel}:${line}: the error does not say ${JSON.stringify(text)}:\n  ${here.map((d) => d.text).join('\n  ')}`);
      }
    }
    for (const d of found.filter((d) => d.file === file && !expected.has(d.line))) problems.push(`${rel}:${d.line}: unexpected error: ${d.text}`);
  }
  for (const d of found.filter((d) => !marks().has(d.file))) problems.push(`${path.relative(root, d.file)}:${d.line}: ${d.text}`);
  if (found.length === 0 && messages.status !== 0) problems.push(messages.stdout + messages.stderr);
  report(`${ts}, error messages`, problems.length === 0, problems.join('\n'));
}
process.exit(failed === 0 ? 0 : 1);
