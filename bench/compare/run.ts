/**
 * Compares checkouts of hopper-streams on one workload, in one run: each repetition runs every
 * checkout once, in a process of its own, in alternating order, and each figure is given as a
 * ratio to the first checkout's in the same repetition (median, min–max). For before/after
 * figures of a change: make a worktree of the commit before (`git worktree add ../before REV`,
 * `npm ci` there), then
 *
 *   npx tsx bench/compare/run.ts MODE RECORDS REPS ../before .
 *
 * MODE is one of bench/compare/modes.ts. Each checkout's own lib/ is loaded; the records and this
 * harness come from this checkout.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODES } from './modes.js';

interface Rates {
  /** Absent for a pass-through mode, which has only a total. */
  write?: number;
  drain?: number;
  total: number;
  peakRssMiB: number;
  /** Per phase (write, drain; total for a pass-through): main-thread CPU, process CPU and event-loop idle time, ms. */
  phases?: Record<string, { cpu: number; processCpu: number; idle: number }>;
}

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const [mode, recordsArg, repsArg, ...checkouts] = process.argv.slice(2);
if (mode === undefined || !(mode in MODES) || checkouts.length < 2) {
  console.error(`usage: npx tsx bench/compare/run.ts MODE RECORDS REPS BASE OTHER...\n  MODE: ${Object.keys(MODES).join(', ')}`);
  process.exit(2);
}
const reps = Number(repsArg);
const runs = new Map<string, Rates[]>(checkouts.map((checkout) => [checkout, []]));
for (let rep = 0; rep < reps; rep++) {
  for (const checkout of rep % 2 === 0 ? checkouts : [...checkouts].reverse()) {
    const out = execFileSync(process.execPath, ['--import', 'tsx/esm', CHILD, path.resolve(checkout), mode, String(recordsArg)], { encoding: 'utf8' });
    runs.get(checkout)!.push(JSON.parse(out.trim().split('\n').pop()!) as Rates);
  }
}
const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const base = runs.get(checkouts[0]!)!;
for (const [checkout, rates] of runs) {
  const keys = (['write', 'drain', 'total'] as const).filter((key) => rates[0]![key] !== undefined);
  const cells = keys.map((key) => {
    const ratios = rates.map((rate, i) => rate[key]! / base[i]![key]!);
    const range = `${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}`;
    return `${key} ${Math.round(median(rates.map((rate) => rate[key]!)) / 1000)} k/s, ${median(ratios).toFixed(2)}× (${range})`;
  });
  cells.push(`peak RSS ${Math.round(median(rates.map((rate) => rate.peakRssMiB)))} MiB`);
  console.log(`${mode} ${checkout}: ${cells.join('; ')}`);
  // CPU time holds still where wall-clock rates swing (a shared machine): min (median) of the repetitions.
  const phaseNames = Object.keys(rates[0]!.phases ?? {}).filter((name) => name !== 'setup');
  const cpu = phaseNames.map((name) => {
    const of = (key: 'cpu' | 'processCpu' | 'idle'): string => {
      const values = rates.map((rate) => rate.phases![name]![key]);
      return `${Math.min(...values)} (${median(values)})`;
    };
    return `${name} main CPU ${of('cpu')}, process CPU ${of('processCpu')}, idle ${of('idle')}`;
  });
  if (cpu.length > 0) console.log(`  ms, min (median): ${cpu.join('; ')}`);
}
