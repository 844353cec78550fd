/**
 * 12. Pass-through in a durable channel (issue 24, report only): scenario 1's pair (a consumer
 * that keeps up) with `durable: true`, where every record is also encoded and written to the
 * segment log (write-through), against a PassThrough.
 */
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHopperStreams, type HopperOptions } from '../../lib/index.js';
import { formatRatio } from '../lib/format.js';
import { MiB, OrderCheck, now, perSecond, recordSink } from '../lib/measure.js';
import { eventSchema, events, type Event } from '../lib/records.js';
import { defineScenario, type TargetCheck } from '../lib/define-scenario.js';

const BUDGET = 16 * MiB;

const LABELS: Record<string, string> = {
  passthrough: 'PassThrough (objectMode)',
  'durable-batch': "hopper-streams pair, durable, fsync 'batch'",
  'durable-never': "hopper-streams pair, durable, fsync 'never'",
};

export default defineScenario({
  id: 12,
  name: 'durable-passthrough',
  title: 'Pass-through in a durable channel',
  description:
    "Scenario 1's pass-through (a synchronous generator feeding `hopper.writable`, a sink that calls back at once draining `hopper.readable`) " +
    "in a durable channel (`durable: true`, `ack: 'delivered'`, 16 MiB budget), against `pipeline(source, new PassThrough({ objectMode: true }), sink)`. " +
    'Write-through costs an encode and a write per record even though the consumer keeps up; the run ends when the sink has every record.',
  grid: { impl: ['passthrough', 'durable-batch', 'durable-never'], records: [500_000] },
  smoke: { records: [3_000] },
  baseline: { impl: 'passthrough' },
  metrics: [
    { key: 'recordsPerSec', label: 'records/s', unit: 'records/s', better: 'higher' },
    { key: 'peakRssBytes', label: 'peak RSS', unit: 'bytes', better: 'lower' },
  ],
  chart: { metric: 'recordsPerSec', unit: 'records/s' },
  timeoutMs: 180_000,
  notes: ['Report only: issue 24 sets no target for it. fsync is free on tmpfs: run on ext4 or xfs.'],
  label: (settings) => LABELS[settings.impl as string] ?? String(settings.impl),

  async run(settings, { tmpDir }) {
    const records = Number(settings.records);
    const check = new OrderCheck(records);
    const sink = recordSink<Event>((event) => check.see(event.seq));
    const source = Readable.from(events(records));
    const started = now();
    if (settings.impl === 'passthrough') {
      await pipeline(source, new PassThrough({ objectMode: true }), sink);
    } else {
      const fsync = settings.impl === 'durable-batch' ? 'batch' : 'never';
      const options = { dataDir: tmpDir, name: 'bench', schema: eventSchema(), maxMemoryBytes: BUDGET, durable: true, fsync, ack: 'delivered' };
      const hopper = createHopperStreams<Event>(options as unknown as HopperOptions);
      await Promise.all([pipeline(source, hopper.writable), pipeline(hopper.readable, sink)]);
    }
    const elapsed = now() - started;
    return { metrics: { recordsPerSec: perSecond(records, elapsed) }, info: { records }, check: check.result() };
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    for (const point of points.filter((p) => !p.isBaseline)) {
      checks.push({
        scenario: 12,
        target: `${point.label}: records/s against PassThrough (report)`,
        measured: formatRatio(point.ratios.recordsPerSec),
        met: undefined,
        report: true,
      });
    }
    return checks;
  },
});
