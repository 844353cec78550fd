/**
 * 11. Durable burst + drain (issue 24): scenario 2's job in a durable channel (`durable: true`,
 * `ack: 'delivered'`), with `fsync: 'batch'` and `'never'`, each beside the avsc + raw fs
 * ceiling that does the same fsync cadence (an fdatasync at most every 100 ms of writing, and at
 * each roll-over and the end, for 'batch'; none for 'never').
 */
import { hopperBurstDrain, type BurstDrainTiming } from '../lib/burst-drain-job.js';
import { formatRatio } from '../lib/format.js';
import { MiB, perSecond } from '../lib/measure.js';
import { RAW_FILE_BYTES, RawFileLog } from '../lib/rawfs.js';
import { eventSchema, makeEvent, type Event } from '../lib/records.js';
import type { HopperOptions } from '../../lib/index.js';
import { defineScenario, type RunReport, type TargetCheck } from '../lib/define-scenario.js';
import { ceiling } from './burst-drain.js';

const BUDGET = 8 * MiB;
/** fsyncIntervalMs of the hopper (its default), and the ceiling's cadence for 'batch'. */
const INTERVAL_MS = 100;
const TARGETS: Record<string, number> = { batch: 0.7, never: 0.8 };

const LABELS: Record<string, string> = {
  ceiling: 'ceiling: avsc + raw fs, same fsync cadence',
  hopper: 'hopper-streams, durable',
};

async function runImpl(impl: string, fsync: string, records: number, tmpDir: string): Promise<BurstDrainTiming> {
  if (impl === 'ceiling') return ceiling({ records, tmpDir }, new RawFileLog(tmpDir, RAW_FILE_BYTES, fsync === 'batch' ? INTERVAL_MS : undefined));
  // 'finish' fires once every record is durable under the policy: the write phase ends there.
  const options = {
    schema: eventSchema(),
    maxMemoryBytes: BUDGET,
    durable: true,
    fsync,
    fsyncIntervalMs: INTERVAL_MS,
    ack: 'delivered',
  } as unknown as HopperOptions;
  return hopperBurstDrain<Event>({ records, tmpDir, make: makeEvent, seqOf: (event) => event.seq }, options);
}

export default defineScenario({
  id: 11,
  name: 'durable',
  title: 'Durable burst then drain',
  description:
    "Scenario 2's burst then drain (events of fixtures/schemas/event.avsc, the consumer paused until every record is written) in a durable channel: " +
    "`durable: true`, `ack: 'delivered'`, 8 MiB memory budget, with `fsync: 'batch'` (group commit every 100 ms) and `'never'`. " +
    "The write phase ends at 'finish', when every record is durable under the policy. " +
    "The ceiling is scenario 2's (avsc encode into 64 KiB buffers + raw `fs.writeSync`, then `fs.readSync` + avsc decode) with the same fsync cadence: " +
    "an `fdatasync` once 100 ms have passed since the last, at each roll-over and at the end (plus a directory fsync after a file is created) for 'batch'; none for 'never'.",
  grid: { fsync: ['batch', 'never'], impl: ['ceiling', 'hopper'], records: [1_000_000] },
  smoke: { records: [3_000] },
  baseline: { impl: 'ceiling' },
  metrics: [
    { key: 'recordsPerSec', label: 'burst+drain records/s', unit: 'records/s', better: 'higher' },
    { key: 'writeRecordsPerSec', label: 'write records/s (durable)', unit: 'records/s', better: 'higher', showRatio: true },
    { key: 'drainRecordsPerSec', label: 'drain records/s', unit: 'records/s', better: 'higher', showRatio: true },
    { key: 'peakRssBytes', label: 'peak RSS', unit: 'bytes', better: 'lower' },
    { key: 'diskBytes', label: 'disk bytes', unit: 'bytes', better: 'lower' },
  ],
  chart: { metric: 'recordsPerSec', unit: 'records/s' },
  infoColumns: [{ key: 'fsync', label: 'fsync' }],
  timeoutMs: 300_000,
  notes: [
    'fsync costs what the file system makes it cost: on tmpfs it is free, so run this scenario on ext4 or xfs (the machine section names the file system of the temp directory).',
    "With 'never' nothing is synced: a durable channel then survives a process crash (the page cache does), not a power cut.",
  ],
  label: (settings) => `${LABELS[settings.impl as string] ?? String(settings.impl)}, fsync '${settings.fsync}'`,

  async run(settings, { tmpDir }): Promise<RunReport> {
    const records = Number(settings.records);
    const timing = await runImpl(settings.impl as string, settings.fsync as string, records, tmpDir);
    return {
      metrics: {
        recordsPerSec: perSecond(records, timing.writeMs + timing.drainMs),
        writeRecordsPerSec: perSecond(records, timing.writeMs),
        drainRecordsPerSec: perSecond(records, timing.drainMs),
        diskBytes: timing.diskBytes,
      },
      info: { records, fsync: settings.fsync as string, ...timing.info },
      check: timing.check,
    };
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    for (const point of points.filter((p) => p.settings.impl === 'hopper')) {
      const fsync = point.settings.fsync as string;
      const ratio = point.ratios.recordsPerSec;
      const factor = TARGETS[fsync] ?? 1;
      checks.push({
        scenario: 11,
        target: `hopper-streams, durable, fsync '${fsync}': ≥ ${factor}× the ceiling with the same fsync cadence, for the whole burst and drain`,
        measured: formatRatio(ratio),
        met: ratio && ratio.n > 0 ? ratio.median >= factor : undefined,
      });
    }
    return checks;
  },
});
