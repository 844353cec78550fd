// Type-checks test-d/ against the built package once per @types/node major in devDependencies
// ("@types/node", and aliases such as "@types/node-22": "npm:@types/node@^22"), so that adding a
// major is one line in package.json. Each run sees only its own @types/node, through a typeRoots
// folder holding a `node` link to it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const typesPackages = Object.keys(pkg.devDependencies).filter((name) => /^@types\/node(-[\w.]+)?$/.test(name));
if (!fs.existsSync(path.join(root, 'dist', 'index.d.ts'))) {
  console.error('test-d: dist/ is missing: run `npm run build` first (npm test does)');
  process.exit(1);
}
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
let failed = 0;
for (const name of typesPackages) {
  const installed = path.join(root, 'node_modules', name);
  const { version } = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  const dir = path.join(root, '.tmp', 'test-d', name.replace('/', '+'));
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(path.join(dir, 'node'), { force: true });
  fs.symlinkSync(installed, path.join(dir, 'node'), 'dir');
  const config = path.join(dir, 'tsconfig.json');
  const extendsPath = path.relative(dir, path.join(root, 'test-d', 'tsconfig.json'));
  fs.writeFileSync(config, JSON.stringify({ extends: extendsPath, compilerOptions: { typeRoots: ['.'] } }, null, 2));
  const result = spawnSync(process.execPath, [tsc, '-p', config], { cwd: root, encoding: 'utf8' });
  if (result.status === 0) {
    console.log(`test-d: @types/node ${version}: ok`);
  } else {
    failed++;
    console.error(`test-d: @types/node ${version} (${name}): FAILED`);
    process.stderr.write(result.stdout + result.stderr);
  }
}
if (typesPackages.length === 0) {
  console.error('test-d: no @types/node in devDependencies');
  process.exit(1);
}
process.exit(failed === 0 ? 0 : 1);
