import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { runEtl } from '../examples/etl.js';
import { runPipeline } from '../examples/pipeline.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('..', import.meta.url));

test('examples/etl - the source finishes long before the slow sink, and every row arrives in order', async (t) => {
  const result = await runEtl(60_000, 256 * 1024, 200);
  t.is(result.loaded, 60_000);
  t.true(result.inOrder);
  t.true(result.spilled > 0);
  t.true(result.peakMemoryBytes <= 256 * 1024);
  t.true(result.extractMs < result.loadMs / 2, `extract ${result.extractMs.toFixed(0)} ms, load ${result.loadMs.toFixed(0)} ms`);
});

test('examples/pipeline - numbers go through hopper and transform, in order', async (t) => {
  const { lines, spilled } = await runPipeline(20_000, 4_096);
  t.is(lines.length, 20_000);
  t.is(lines[12], `12\t${144 % 9973}`);
  t.true(lines.every((line, i) => line.startsWith(`${i}\t`)));
  t.true(spilled > 0);
});

test('examples - the scripts run as the README shows', async (t) => {
  const etl = await run(process.execPath, ['--import', 'tsx/esm', 'examples/etl.ts', '--records', '20000'], { cwd: root });
  t.regex(etl.stdout, /loaded 20000 rows \(in order: true\)/);
  const composed = await run(process.execPath, ['--import', 'tsx/esm', 'examples/pipeline.ts', '--records', '5000'], { cwd: root });
  t.regex(composed.stdout, /5000 lines through the pipeline/);
});
