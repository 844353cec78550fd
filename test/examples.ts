import { fileURLToPath } from 'node:url';
import test from 'ava';
import { runEtl } from '../examples/etl.js';
import { runPipeline } from '../examples/pipeline.js';
import { runChild } from './helpers/children.js';

const root = fileURLToPath(new URL('..', import.meta.url));

// Serial: the last test spawns processes. How much sooner the ETL source finishes than its sink
// is a matter of speed, so it is not asserted here: bench/scenarios/burst-drain.ts measures a
// producer that finishes before its consumer starts, and examples/etl.ts prints both times.

test.serial('examples/etl - a fast source into a slow sink: every row arrives in order, the overflow through disk, memory within the budget', async (t) => {
  const result = await runEtl(60_000, 256 * 1024, 200);
  t.is(result.loaded, 60_000);
  t.true(result.inOrder);
  t.true(result.spilled > 0);
  t.true(result.peakMemoryBytes <= 256 * 1024);
});

test.serial('examples/pipeline - numbers go through hopper and transform, in order', async (t) => {
  const { lines, spilled } = await runPipeline(20_000, 4_096);
  t.is(lines.length, 20_000);
  t.is(lines[12], `12\t${144 % 9973}`);
  t.true(lines.every((line, i) => line.startsWith(`${i}\t`)));
  t.true(spilled > 0);
});

test.serial('examples - the scripts run as docs/guide.md shows', async (t) => {
  const etl = await runChild(t, process.execPath, ['--import', 'tsx/esm', 'examples/etl.ts', '--records', '20000'], { cwd: root });
  t.regex(etl.stdout, /loaded 20000 rows \(in order: true\)/);
  const composed = await runChild(t, process.execPath, ['--import', 'tsx/esm', 'examples/pipeline.ts', '--records', '5000'], { cwd: root });
  t.regex(composed.stdout, /5000 lines through the pipeline/);
});
