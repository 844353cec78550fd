/**
 * What a scenario is: a grid of settings (as in Node's benchmark/common.js `createBenchmark`),
 * one point of which is the baseline, a `run` that measures one point once in a child process,
 * and the targets of tracker issue 6 it checks.
 */

export type SettingValue = string | number;
export type Settings = Readonly<Record<string, SettingValue>>;
export type Grid = Readonly<Record<string, readonly SettingValue[]>>;
export type InfoValue = string | number | boolean | null;

/** Units the report knows how to print. */
export type Unit = 'records/s' | 'bytes/s' | 'bytes' | 'us' | 'count' | 's' | 'ratio';

export interface Metric {
  key: string;
  label: string;
  unit: Unit;
  /** Which way is better; ratios are always this point's value over the baseline's. */
  better: 'higher' | 'lower';
  /** Show its ratio to the baseline as a column too (the headline metric's always is). */
  showRatio?: boolean;
}

/** What a scenario's `run` returns for one repetition of one point. */
export interface RunReport {
  metrics: Record<string, number>;
  /** Facts worth printing beside the figures (spilled records, records used, variant). */
  info: Record<string, InfoValue>;
  /** Every record read back, and in order. */
  check: { expected: number; received: number; inOrder: boolean; firstProblem?: string };
}

/** Thrown by a run when the implementation cannot run here (a peer that does not load, an API not there yet). */
export class Unavailable extends Error {
  override name = 'Unavailable';
}

/** What a child process reports to the runner. The runner adds `peakRssBytes` and `baselineRssBytes` to the metrics. */
export type RunOutcome =
  | ({ status: 'ok'; wallMs: number } & RunReport)
  | { status: 'unavailable'; reason: string; wallMs: number }
  | { status: 'error'; message: string; wallMs: number; check?: RunReport['check'] };

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export interface PointSummary {
  label: string;
  settings: Settings;
  isBaseline: boolean;
  /** One outcome per repetition, in repetition order; null where the repetition was skipped (after a failure). */
  runs: (RunOutcome | null)[];
  /** Set when no repetition ran: 'unavailable: …' or 'error: …'. */
  failure?: string;
  metrics: Record<string, Spread>;
  /** This point over the baseline point, repetition by repetition (same repetition, run back to back). */
  ratios: Record<string, Spread>;
  /** Info of the first successful repetition; numbers that vary are summarised in `metrics`. */
  info: Record<string, InfoValue>;
}

export interface TargetCheck {
  scenario: number;
  target: string;
  /** What was measured, in words: "0.82× (0.79–0.85)". */
  measured: string;
  /** Undefined when it could not be judged (an implementation did not run), or for a figure only reported. */
  met: boolean | undefined;
  /** A figure the issue asks to report, with no threshold. */
  report?: boolean;
}

export interface ScenarioSummary {
  name: string;
  points: PointSummary[];
}

export interface Scenario {
  /** Number in tracker issue 6. */
  id: number;
  /** File name under bench/scenarios/, without extension. */
  name: string;
  title: string;
  /** One paragraph: what is measured and how. */
  description: string;
  grid: Grid;
  /** Replaces grid entries for the smoke run (test/bench.ts and `npm run bench -- --smoke`). */
  smoke: Grid;
  /** Settings that make a point the baseline; the other settings are matched. */
  baseline: Settings;
  /** The baseline in the smoke grid, when `baseline` names a value the smoke grid replaces. */
  smokeBaseline?: Settings;
  /** Figures in table order; the first is the headline, and its ratio leads the table. */
  metrics: Metric[];
  /** The metric charted as "per second" (records/s or chunks/s), if any. */
  chart?: { metric: string; unit: string; scale?: number };
  /** Longest a single repetition may take before the runner gives up on it. */
  timeoutMs: number;
  label(settings: Settings): string;
  run(settings: Settings, context: RunContext): Promise<RunReport>;
  targets(summary: ScenarioSummary): TargetCheck[];
  /** Caveats printed under the table. */
  notes: string[];
  /** Entries of a point's `info` shown as columns (e.g. the record count a peer ran). */
  infoColumns?: { key: string; label: string }[];
}

export interface RunContext {
  /** A fresh directory for this run's files; the runner removes it once the child has exited. */
  tmpDir: string;
}

export function defineScenario(scenario: Scenario): Scenario {
  return scenario;
}
