/**
 * One repetition of one grid point, in a process of its own so that peak memory does not bleed
 * between implementations:
 * `node --import tsx/esm bench/lib/child.ts '{"scenario":…,"settings":…,"tmpDir":…}'`.
 * Prints one JSON line (a RunOutcome) on stdout, last: the runner reads the last line.
 */
import { loadScenario } from './registry.js';
import { Unavailable, type RunOutcome, type Settings } from './define-scenario.js';
import { now } from './measure.js';

interface ChildRequest {
  scenario: string;
  settings: Settings;
  /** Made by the runner, which removes it once this process has exited (peers clean up at exit too). */
  tmpDir: string;
}

async function main(): Promise<RunOutcome> {
  const request = JSON.parse(process.argv[2] ?? '{}') as ChildRequest;
  const scenario = await loadScenario(request.scenario);
  const baselineRss = process.memoryUsage().rss;
  const started = now();
  try {
    const report = await scenario.run(request.settings, { tmpDir: request.tmpDir });
    const wallMs = now() - started;
    report.metrics.peakRssBytes = process.resourceUsage().maxRSS * 1024;
    report.metrics.baselineRssBytes = baselineRss;
    if (!report.check.inOrder) {
      const { expected, received, firstProblem } = report.check;
      return {
        status: 'error',
        message: `check failed: read ${received} of ${expected}${firstProblem ? `; ${firstProblem}` : ''}`,
        wallMs,
        check: report.check,
      };
    }
    return { status: 'ok', wallMs, ...report };
  } catch (err) {
    const wallMs = now() - started;
    if (err instanceof Unavailable) return { status: 'unavailable', reason: err.message, wallMs };
    return { status: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err), wallMs };
  }
}

main().then(
  (outcome) => {
    process.stdout.write(`${JSON.stringify(outcome)}\n`);
    // Stdout is a pipe (synchronous on POSIX), so the line is out; peers may hold handles open.
    process.exit(0);
  },
  (err: unknown) => {
    process.stdout.write(`${JSON.stringify({ status: 'error', message: String(err), wallMs: 0 })}\n`);
    process.exit(1);
  },
);
