import test from 'ava';
import { chartSvg } from '../bench/lib/chart.js';
import { expandGrid, runBench, type BenchResults } from '../bench/lib/runner.js';
import { markdownReport } from '../bench/lib/report.js';
import { SCENARIO_NAMES, loadScenario } from '../bench/lib/registry.js';

// The benchmark suite itself runs with `npm run bench`; here every scenario runs once at a tiny
// size, through the same driver and child processes, to check the code path and its output.

/** Implementations that may be missing on a machine (a native module that does not load, a command that is not installed): reported, not failed. */
/** Peers that may not install here, and the slow disk (root, FUSE and a loop device). */
const MAY_BE_UNAVAILABLE = new Set(['fileq', 'disk-queue', 'fs-capacitor', 'mbuffer', 'slow']);

let smoke: Promise<BenchResults> | undefined;
const smokeRun = (): Promise<BenchResults> => (smoke ??= runBench({ smoke: true, reps: 1, parallel: 2 }));

test('bench - expandGrid() gives every combination, the last key varying fastest', (t) => {
  t.deepEqual(expandGrid({ impl: ['a', 'b'], n: [1, 2] }), [
    { impl: 'a', n: 1 },
    { impl: 'a', n: 2 },
    { impl: 'b', n: 1 },
    { impl: 'b', n: 2 },
  ]);
});

test('bench - every scenario of the issue is registered, with a baseline in its grid and its smoke grid', async (t) => {
  t.deepEqual(
    [...SCENARIO_NAMES],
    [
      'passthrough',
      'burst-drain',
      'byte-mode',
      'memory-flatness',
      'latency',
      'concurrency',
      'cli',
      'event-loop',
      'large-record',
      'slow-disk',
      'durable',
      'durable-passthrough',
      'durable-reopen',
    ],
  );
  for (const name of SCENARIO_NAMES) {
    const scenario = await loadScenario(name);
    for (const [grid, baseline] of [
      [scenario.grid, scenario.baseline],
      [{ ...scenario.grid, ...scenario.smoke }, scenario.smokeBaseline ?? scenario.baseline],
    ] as const) {
      const points = expandGrid(grid);
      t.true(
        points.some((point) => Object.entries(baseline).every(([key, value]) => point[key] === value)),
        `${name}: baseline in grid`,
      );
    }
  }
});

test('bench - a smoke run of every scenario reads every record back, in order, with sane figures', async (t) => {
  const results = await smokeRun();
  t.is(results.scenarios.length, SCENARIO_NAMES.length);
  for (const scenario of results.scenarios) {
    t.true(
      scenario.points.some((point) => point.isBaseline),
      `${scenario.name}: a baseline point`,
    );
    for (const point of scenario.points) {
      const where = `${scenario.name} / ${point.label}`;
      const run = point.runs[0];
      t.truthy(run, `${where}: ran`);
      if (run?.status === 'unavailable' && MAY_BE_UNAVAILABLE.has(String(point.settings.impl ?? point.settings.disk))) {
        t.log(`${where}: not available here: ${run.reason}`);
        continue;
      }
      if (run?.status !== 'ok') {
        t.fail(`${where}: ${run?.status === 'error' ? run.message : run?.status}`);
        continue;
      }
      t.true(run.check.inOrder, `${where}: in order`);
      t.is(run.check.received, run.check.expected, `${where}: every record read`);
      t.true(run.check.expected > 0, `${where}: records sent`);
      for (const metric of scenario.metrics) {
        const value = run.metrics[metric.key];
        t.true(typeof value === 'number' && Number.isFinite(value) && value >= 0, `${where}: ${metric.key} = ${value}`);
      }
      t.true(run.metrics.peakRssBytes! >= run.metrics.baselineRssBytes! * 0.5, `${where}: peak RSS measured`);
      if (!point.isBaseline) t.truthy(point.ratios[scenario.metrics[0]!.key], `${where}: ratio to the baseline`);
    }
    t.true(scenario.targets.length > 0, `${scenario.name}: targets`);
  }
});

test('bench - the results render as Markdown, JSON and SVG', async (t) => {
  const results = await smokeRun();
  const markdown = markdownReport(results, { chartFile: 'chart.svg' });
  for (const scenario of results.scenarios) t.true(markdown.includes(`## ${scenario.id}. ${scenario.title}`));
  t.regex(markdown, /^\| # \| target \|/m);
  t.deepEqual(JSON.parse(JSON.stringify(results)).scenarios.length, results.scenarios.length);
  const svg = chartSvg(results);
  t.regex(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.true(svg.trimEnd().endsWith('</svg>'));
  t.notRegex(svg, /NaN|undefined/);
});
