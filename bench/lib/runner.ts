/**
 * The runner: expands each scenario's grid, runs every (point, repetition) in a child process of
 * its own, one at a time, repetitions interleaved (A B C, B C A, …) so that drift on a busy
 * machine hits every implementation alike, then summarises: median and min–max of each figure,
 * and of its ratio to the baseline point of the same repetition.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatDuration, formatValue } from './format.js';
import { machineInfo, type MachineInfo } from './machine.js';
import { now } from './measure.js';
import type { Grid, InfoValue, Metric, PointSummary, RunOutcome, Scenario, Settings, Spread, TargetCheck } from './define-scenario.js';
import { SCENARIO_NAMES, loadScenario } from './registry.js';
import { spread } from './stats.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));

export interface BenchOptions {
  /** Scenario names (file names under bench/scenarios/); default all. */
  scenarios?: readonly string[] | undefined;
  /** Repetitions of every point; at least 5 for published figures. */
  reps: number;
  /** Tiny sizes (each scenario's `smoke` grid): checks the code path, measures nothing. */
  smoke?: boolean;
  /** Children run at once. Timings need 1; the smoke test uses 2. */
  parallel?: number;
  /** Extra Node flags for the children (e.g. `--cpu-prof`). */
  nodeFlags?: readonly string[];
  /** A line per finished child. */
  log?: (line: string) => void;
}

export interface ScenarioResult {
  id: number;
  name: string;
  title: string;
  description: string;
  notes: string[];
  grid: Grid;
  baseline: Settings;
  baselineLabel: string;
  metrics: Metric[];
  infoColumns: { key: string; label: string }[];
  chart: Scenario['chart'] | null;
  points: PointSummary[];
  targets: TargetCheck[];
}

export interface BenchResults {
  package: string;
  version: string;
  /** The commit measured, and whether lib/ had uncommitted changes on top of it. */
  commit: string;
  date: string;
  machine: MachineInfo;
  reps: number;
  smoke: boolean;
  wallSeconds: number;
  /** A paragraph for the top of the results file (`--note`): how the run went. */
  note?: string;
  scenarios: ScenarioResult[];
}

/** Every combination of the grid's settings, in key order (the last key varies fastest). */
export function expandGrid(grid: Grid): Settings[] {
  let points: Record<string, string | number>[] = [{}];
  for (const [key, values] of Object.entries(grid)) {
    const next: Record<string, string | number>[] = [];
    for (const point of points) for (const value of values) next.push({ ...point, [key]: value });
    points = next;
  }
  return points;
}

function sameSettings(a: Settings, b: Settings): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((key) => a[key] === b[key]);
}

/** Index of the baseline point for `point`: the baseline settings, every other setting kept. */
function baselineIndex(points: readonly Settings[], point: Settings, baseline: Settings): number {
  const wanted = { ...point, ...baseline };
  return points.findIndex((candidate) => sameSettings(candidate, wanted));
}

function describeSettings(settings: Settings): string {
  return Object.entries(settings)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

interface Job {
  scenario: Scenario;
  pointIndex: number;
  rep: number;
}

/** Runs one child; never rejects: a crash or a timeout is an 'error' outcome. */
export function runChild(scenario: Scenario, settings: Settings, nodeFlags: readonly string[] = []): Promise<RunOutcome> {
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `hopper-bench-${scenario.name}-`));
  const request = JSON.stringify({ scenario: scenario.name, settings, tmpDir });
  const started = now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx/esm', CHILD, request], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr = (stderr + text).slice(-4000);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, scenario.timeoutMs);
    const finish = (outcome: RunOutcome): void => {
      clearTimeout(timer);
      fs.rmSync(tmpDir, { recursive: true, force: true });
      resolve(outcome);
    };
    child.on('error', (err) => finish({ status: 'error', message: `could not start the child: ${err.message}`, wallMs: now() - started }));
    child.on('close', (code, signal) => {
      const wallMs = now() - started;
      if (timedOut) {
        finish({ status: 'error', message: `timed out after ${formatDuration(scenario.timeoutMs)}`, wallMs });
        return;
      }
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        finish(JSON.parse(line) as RunOutcome);
      } catch {
        const why = signal ? `killed by ${signal}` : `exited with code ${code}`;
        finish({ status: 'error', message: `the child ${why} without a result: ${stderr.trim().split('\n').slice(-5).join(' | ')}`, wallMs });
      }
    });
  });
}

function summarisePoint(
  scenario: Scenario,
  settings: Settings,
  runs: (RunOutcome | null)[],
  baseRuns: (RunOutcome | null)[] | undefined,
  isBaseline: boolean,
): PointSummary {
  const metrics: Record<string, Spread> = {};
  const ratios: Record<string, Spread> = {};
  const okRuns = runs.filter((run): run is Extract<RunOutcome, { status: 'ok' }> => run?.status === 'ok');
  const keys = new Set<string>();
  for (const run of okRuns) for (const key of Object.keys(run.metrics)) keys.add(key);
  for (const key of keys) {
    metrics[key] = spread(okRuns.map((run) => run.metrics[key] ?? Number.NaN));
    if (baseRuns === undefined) continue;
    const paired: number[] = [];
    runs.forEach((run, rep) => {
      const base = baseRuns[rep];
      if (run?.status !== 'ok' || base?.status !== 'ok') return;
      const value = run.metrics[key];
      const baseValue = base.metrics[key];
      if (value !== undefined && baseValue !== undefined && baseValue !== 0) paired.push(value / baseValue);
    });
    if (paired.length > 0) ratios[key] = spread(paired);
  }
  const failed = runs.find((run) => run !== null && run.status !== 'ok');
  let failure: string | undefined;
  if (failed?.status === 'unavailable') failure = `not available: ${failed.reason}`;
  else if (failed?.status === 'error') failure = `error: ${failed.message.split('\n')[0]}`;
  const info: Record<string, InfoValue> = okRuns[0]?.info ?? {};
  const summary: PointSummary = { label: scenario.label(settings), settings, isBaseline, runs, metrics, ratios, info };
  if (failure !== undefined) summary.failure = failure;
  return summary;
}

function describeCommit(): string {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--', 'lib') === '' ? head : `${head} with uncommitted changes in lib/`;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

async function readPackage(): Promise<{ name: string; version: string }> {
  const text = await fs.promises.readFile(path.join(REPO_ROOT, 'package.json'), 'utf8');
  const { name, version } = JSON.parse(text) as { name: string; version: string };
  return { name, version };
}

export async function runBench(options: BenchOptions): Promise<BenchResults> {
  const started = now();
  const log = options.log ?? (() => {});
  const names = options.scenarios ?? SCENARIO_NAMES;
  const scenarios = await Promise.all(names.map(loadScenario));
  const machine = machineInfo();
  const commit = describeCommit();
  const pkg = await readPackage();

  const plans = scenarios.map((scenario) => {
    const grid: Grid = options.smoke ? { ...scenario.grid, ...scenario.smoke } : scenario.grid;
    const points = expandGrid(grid);
    const runs = points.map(() => new Array<RunOutcome | null>(options.reps).fill(null));
    const baseline = options.smoke ? (scenario.smokeBaseline ?? scenario.baseline) : scenario.baseline;
    return { scenario, grid, baseline, points, runs };
  });

  const jobs: Job[] = [];
  for (const { scenario, points } of plans) {
    for (let rep = 0; rep < options.reps; rep++) {
      for (let i = 0; i < points.length; i++) jobs.push({ scenario, pointIndex: (i + rep) % points.length, rep });
    }
  }

  let done = 0;
  const runJob = async (job: Job): Promise<void> => {
    const plan = plans.find((p) => p.scenario === job.scenario)!;
    const runs = plan.runs[job.pointIndex]!;
    const settings = plan.points[job.pointIndex]!;
    // A point that failed once is not retried: a peer that does not load will not load on the next go.
    const failed = runs.some((run) => run !== null && run.status !== 'ok');
    const prefix = `[${String(++done).padStart(String(jobs.length).length)}/${jobs.length}] ${job.scenario.id}. ${job.scenario.name} ${job.scenario.label(settings)} (${describeSettings(settings)}) rep ${job.rep + 1}/${options.reps}`;
    if (failed) {
      log(`${prefix}: skipped after an earlier failure`);
      return;
    }
    const outcome = await runChild(job.scenario, settings, options.nodeFlags);
    runs[job.rep] = outcome;
    const headline = job.scenario.metrics[0]!;
    if (outcome.status === 'ok') {
      const ran = outcome.info.records;
      const fewer = typeof ran === 'number' && ran !== settings.records ? `, ran ${ran.toLocaleString('en-US')} records` : '';
      log(
        `${prefix}: ${headline.label} ${formatValue(outcome.metrics[headline.key] ?? Number.NaN, headline.unit)} (${formatDuration(outcome.wallMs)}${fewer})`,
      );
    } else if (outcome.status === 'unavailable') {
      log(`${prefix}: not available: ${outcome.reason}`);
    } else {
      log(`${prefix}: ERROR ${outcome.message.split('\n')[0]}`);
    }
  };

  const parallel = Math.max(1, options.parallel ?? 1);
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < jobs.length) await runJob(jobs[next++]!);
    }),
  );

  const results: ScenarioResult[] = plans.map(({ scenario, grid, baseline, points, runs }) => {
    const summaries = points.map((settings, i) => {
      const base = baselineIndex(points, settings, baseline);
      return summarisePoint(scenario, settings, runs[i]!, base >= 0 ? runs[base] : undefined, base === i);
    });
    const baselinePoint = summaries.find((point) => point.isBaseline);
    return {
      id: scenario.id,
      name: scenario.name,
      title: scenario.title,
      description: scenario.description,
      notes: scenario.notes,
      grid,
      baseline,
      baselineLabel: baselinePoint?.label ?? describeSettings(baseline),
      metrics: scenario.metrics,
      infoColumns: scenario.infoColumns ?? [],
      chart: scenario.chart ?? null,
      points: summaries,
      targets: scenario.targets({ name: scenario.name, points: summaries }),
    };
  });

  return {
    package: pkg.name,
    version: pkg.version,
    commit,
    date: new Date().toISOString(),
    machine,
    reps: options.reps,
    smoke: options.smoke === true,
    wallSeconds: (now() - started) / 1000,
    scenarios: results,
  };
}
