import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
  const { stdout } = await runChild(
    t,
    process.execPath,
    ['--input-type=module', '-e', `import { createHopperStreams, HopperError } from 'hopper-streams';${roundTrip}`],
    { cwd: root },
  );
  t.deepEqual(JSON.parse(stdout), { out: ['in memory', 'on disk'], error: 'function' });
});

test.serial('package - require works from CommonJS (Node >= 20.19)', async (t) => {
  const { stdout } = await runChild(
    t,
    process.execPath,
    ['--no-warnings', '-e', `const { createHopperStreams, HopperError } = require('hopper-streams');${roundTrip}`],
    { cwd: root },
  );
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
  t.deepEqual(
    files.filter((file) => !/^(dist\/|README\.md$|CHANGELOG\.md$|LICENSE$|package\.json$)/.test(file)),
    [],
  );
});

test.serial('package - the main entry works without streamx, and hopper-streams/streamx without it names the package to install', async (t) => {
  // A consumer's node_modules holding the built package and avsc, but not the optional peer streamx.
  const consumer = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-no-streamx-'));
  t.teardown(() => fs.rmSync(consumer, { recursive: true, force: true }));
  const installed = path.join(consumer, 'node_modules', 'hopper-streams');
  fs.mkdirSync(installed, { recursive: true });
  fs.cpSync(path.join(root, 'package.json'), path.join(installed, 'package.json'));
  fs.cpSync(path.join(root, 'dist'), path.join(installed, 'dist'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules', 'avsc'), path.join(consumer, 'node_modules', 'avsc'), 'dir');
  const script = `
    const main = await import('hopper-streams');
    const out = { main: typeof main.createHopperStreams };
    try { await import('hopper-streams/streamx'); out.streamx = 'loaded'; }
    catch (err) { out.streamx = { code: err.code, message: err.message }; }
    console.log(JSON.stringify(out));
  `;
  const { stdout } = await runChild(t, process.execPath, ['--input-type=module', '-e', script], { cwd: consumer, env: { ...process.env, NODE_PATH: '' } });
  const out = JSON.parse(stdout) as { main: string; streamx: { code: string; message: string } };
  t.is(out.main, 'function');
  t.is(out.streamx.code, 'ERR_MODULE_NOT_FOUND');
  t.regex(out.streamx.message, /hopper-streams\/streamx needs the package `streamx`.*npm install streamx/);
});

test.serial("package - the streams are node:stream's own classes, as their types say", async (t) => {
  const { stdout } = await runChild(
    t,
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { Duplex, Readable, Writable } from 'node:stream';
       import { createHopperStream, createHopperStreams } from 'hopper-streams';
       const hopper = createHopperStreams();
       const duplex = createHopperStream();
       console.log(JSON.stringify([hopper.writable instanceof Writable, hopper.readable instanceof Readable, hopper.sender() instanceof Writable, duplex instanceof Duplex]));
       hopper.destroy(); duplex.destroy();`,
    ],
    { cwd: root },
  );
  t.deepEqual(JSON.parse(stdout), [true, true, true, true]);
});
