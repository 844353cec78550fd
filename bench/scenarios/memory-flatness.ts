/**
 * 4. Memory flatness: 1M against 10M records through a stalled consumer with an 8 MiB budget.
 * Peak RSS must not grow with the number of records, only with the budget.
 */
import { hopperBurstDrain } from '../lib/burst-drain-job.js';
import { formatRatio, formatValue } from '../lib/format.js';
import { MiB, perSecond } from '../lib/measure.js';
import { eventSchema, makeEvent, type Event } from '../lib/records.js';
import { defineScenario, type RunReport, type TargetCheck } from '../lib/define-scenario.js';

const BUDGET = 8 * MiB;
/** The allowance over the process baseline: twice the budget, plus 64 MiB. */
const ALLOWANCE = 2 * BUDGET + 64 * MiB;

/** 10M, 1M, 2k. */
function compact(n: number): string {
  if (n >= 1e6 && n % 1e5 === 0) return `${n / 1e6}M`;
  if (n >= 1e3 && n % 100 === 0) return `${n / 1e3}k`;
  return n.toLocaleString('en-US');
}

export default defineScenario({
  id: 4,
  name: 'memory-flatness',
  title: 'Memory flatness',
  description:
    'hopper-streams with an 8 MiB budget and the event schema; the consumer is stalled until every record is written, then drains. ' +
    "Peak RSS is the child process's `process.resourceUsage().maxRSS`; the process baseline is its RSS after loading the modules, before the first record.",
  grid: { records: [1_000_000, 10_000_000] },
  smoke: { records: [2_000, 4_000] },
  baseline: { records: 1_000_000 },
  smokeBaseline: { records: 2_000 },
  metrics: [
    { key: 'peakRssBytes', label: 'peak RSS', unit: 'bytes', better: 'lower' },
    { key: 'baselineRssBytes', label: 'process baseline RSS', unit: 'bytes', better: 'lower' },
    { key: 'recordsPerSec', label: 'burst+drain records/s', unit: 'records/s', better: 'higher' },
    { key: 'diskBytes', label: 'disk bytes', unit: 'bytes', better: 'lower' },
  ],
  chart: { metric: 'recordsPerSec', unit: 'records/s' },
  timeoutMs: 240_000,
  notes: [
    `Allowance: process baseline + 2 × budget + 64 MiB = baseline + ${formatValue(ALLOWANCE, 'bytes')}.`,
    "Peak RSS counts garbage V8 has not collected yet. Up to 0.3.0 the memory tier held the producer's own objects, so once it filled, most records from the producer's allocation site had survived a scavenge and " +
      'V8 pretenured that site: later records were allocated straight in old space, and those that spilled died there and waited for a full GC (0.3.0: 178 MiB at 1M records). ' +
      "Since 0.4.0 the memory tier holds copies made by the library's own code. " +
      'To see what pretenuring would still add: `npx tsx bench/profile.ts memory-flatness --flag=--no-allocation-site-pretenuring`.',
  ],
  label: (settings) => `hopper-streams, ${compact(Number(settings.records))} records`,

  async run(settings, { tmpDir }): Promise<RunReport> {
    const records = Number(settings.records);
    const timing = await hopperBurstDrain<Event>(
      { records, tmpDir, make: makeEvent, seqOf: (event) => event.seq },
      { schema: eventSchema(), maxMemoryBytes: BUDGET },
    );
    return {
      metrics: { recordsPerSec: perSecond(records, timing.writeMs + timing.drainMs), diskBytes: timing.diskBytes },
      info: { records, ...timing.info },
      check: timing.check,
    };
  },

  targets({ points }) {
    const [small, large] = [...points].sort((a, b) => Number(a.settings.records) - Number(b.settings.records));
    const ratio = large?.ratios.peakRssBytes;
    const checks: TargetCheck[] = [
      {
        scenario: 4,
        target: `peak RSS at ${large?.label ?? '10M'} ≤ 1.1× peak RSS at ${small?.label ?? '1M'}`,
        measured: formatRatio(ratio),
        met: ratio && ratio.n > 0 ? ratio.median <= 1.1 : undefined,
      },
    ];
    for (const point of [small, large]) {
      if (point === undefined) continue;
      const peak = point.metrics.peakRssBytes;
      const base = point.metrics.baselineRssBytes;
      const ok = peak !== undefined && base !== undefined && peak.n > 0 && base.n > 0;
      checks.push({
        scenario: 4,
        target: `${point.label}: peak RSS ≤ process baseline + 2 × budget + 64 MiB`,
        measured: ok
          ? `${formatValue(peak.median, 'bytes')}, limit ${formatValue(base.median + ALLOWANCE, 'bytes')} (baseline ${formatValue(base.median, 'bytes')}; medians)`
          : 'n/a',
        met: ok ? peak.median <= base.median + ALLOWANCE : undefined,
      });
    }
    return checks;
  },
});
