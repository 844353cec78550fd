import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { runChild } from './helpers/children.js';
const root = fileURLToPath(new URL('..', import.meta.url));

// These run against the built package (npm test builds it first), through its own name, the way users load it.
const roundTrip = `
  const hopper = createHopperStreams({ maxMemoryBytes: 16 });
  hopper.send('in memory'); hopper.send(Buffer.from('on disk'));
  const closed = hopper.close();
  const out = [];
  hopper.readable.on('data', (r) => out.push(String(r)));
  closed.then(() => console.log(JSON.stringify({ out, error: typeof HopperError })));
`;

test.before(() => {
  if (!fs.existsSync(new URL('../dist/index.js', import.meta.url))) throw new Error('dist/ is missing: run `npm run build` (npm test does)');
});

test.serial('package - import works from an ES module', async (t) => {
  const { stdout } = await runChild(t, process.execPath, ['--input-type=module', '-e', `import { createHopperStreams, HopperError } from 'hopper-streams';${roundTrip}`], { cwd: root });
  t.deepEqual(JSON.parse(stdout), { out: ['in memory', 'on disk'], error: 'function' });
});

test.serial('package - require works from CommonJS (Node >= 20.19)', async (t) => {
  const { stdout } = await runChild(t, process.execPath, ['--no-warnings', '-e', `const { createHopperStreams, HopperError } = require('hopper-streams');${roundTrip}`], { cwd: root });
  t.deepEqual(JSON.parse(stdout), { out: ['in memory', 'on disk'], error: 'function' });
});

test.serial('package - exports put types first and the tarball holds only dist and docs', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  t.deepEqual(Object.keys(pkg.exports['.']), ['types', 'default']);
  t.is(pkg.type, 'module');
  t.is(pkg.engines.node, '>=20.19');
  const { stdout } = await runChild(t, 'npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
  const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((file) => file.path);
  t.true(files.includes('dist/index.js'));
  t.true(files.includes('dist/index.d.ts'));
  t.true(files.includes('README.md'));
  t.deepEqual(files.filter((file) => !/^(dist\/|README\.md$|CHANGELOG\.md$|LICENSE$|package\.json$)/.test(file)), []);
});
