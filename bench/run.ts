/**
 * `npm run bench`: runs every scenario of bench/scenarios/ (tracker issue 6), 5 repetitions each
 * in child processes, prints the results table and writes bench/results/<version>.md, .json and
 * .svg (the chart).
 *
 *   npm run bench                                  the full run (about 8 minutes on 2 cores)
 *   npm run bench -- --scenario burst-drain --reps 3
 *   npm run bench -- --smoke                       tiny sizes: checks every scenario runs
 *   npm run bench -- --render bench/results/0.1.0.json   rewrite the .md and .svg from a JSON
 *
 * Writes the results files only for a full run, unless --out is given.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chartSvg } from './lib/chart.js';
import { runBench, type BenchResults } from './lib/runner.js';
import { formatDuration } from './lib/format.js';
import { markdownReport } from './lib/report.js';
import { SCENARIO_NAMES } from './lib/registry.js';
import { runMain } from './lib/main.js';

const USAGE = `Usage: npm run bench -- [options]

  --scenario NAME   run only this scenario (repeatable, or comma-separated): ${SCENARIO_NAMES.join(', ')}
  --reps N          repetitions of every figure (default 5; at least 5 for published figures)
  --smoke           tiny sizes, to check that every scenario runs (figures mean nothing)
  --out DIR         write <version>.md, .json and .svg there (default bench/results, full runs only)
  --note TEXT       a paragraph printed at the top of the results file
  --render FILE     run nothing: rewrite FILE's .md and .svg from FILE (a results .json), with --note if given
  --help`;

/** Writes <version>.json, .md (also printed) and .svg into `dir`. */
function writeResults(results: BenchResults, dir: string): void {
  const base = path.join(dir, `${results.version}${results.smoke ? '-smoke' : ''}`);
  const markdown = markdownReport(results, { chartFile: `${path.basename(base)}.svg` });
  console.log(`\n${markdown}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, markdown);
  fs.writeFileSync(`${base}.svg`, chartSvg(results));
  console.error(`wrote ${base}.md, .json and .svg`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', multiple: true },
      reps: { type: 'string' },
      smoke: { type: 'boolean' },
      out: { type: 'string' },
      note: { type: 'string' },
      render: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.render !== undefined) {
    const results = JSON.parse(fs.readFileSync(values.render, 'utf8')) as BenchResults;
    if (values.note !== undefined) results.note = values.note;
    writeResults(results, path.dirname(values.render));
    return 0;
  }
  const scenarios = values.scenario
    ?.flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter(Boolean);
  for (const name of scenarios ?? []) {
    if (!SCENARIO_NAMES.includes(name)) {
      console.error(`Unknown scenario \`${name}\`\n\n${USAGE}`);
      return 2;
    }
  }
  const reps = values.reps === undefined ? 5 : Number(values.reps);
  if (!Number.isSafeInteger(reps) || reps < 1) {
    console.error(`--reps must be an integer from 1 up, got ${JSON.stringify(values.reps)}`);
    return 2;
  }
  const full = scenarios === undefined && !values.smoke;
  const outDir = values.out ?? (full ? fileURLToPath(new URL('./results/', import.meta.url)) : undefined);

  const results = await runBench({
    scenarios,
    reps,
    smoke: values.smoke === true,
    log: (line) => console.error(line),
  });
  if (values.note !== undefined) results.note = values.note;

  if (outDir) writeResults(results, outDir);
  else console.log(`\n${markdownReport(results)}`);
  console.error(`bench finished in ${formatDuration(results.wallSeconds * 1000)}`);
  const failed = results.scenarios.flatMap((s) => s.points).filter((p) => p.failure?.startsWith('error'));
  return failed.length > 0 ? 1 : 0;
}

runMain(main);
