/**
 * 8. Event-loop delay while spilling at full speed, the shape of an HTTP ingest server: every turn
 * of the event loop a "request" of events arrives and is written at once, the consumer is stalled,
 * so after the budget every record goes to the segment log. `perf_hooks.monitorEventLoopDelay`
 * samples how late the loop runs; the baseline is the same producer writing into a sink that
 * drops everything (no hopper, no disk).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHopperStreams } from '../../lib/index.js';
import { formatRatio, formatValue } from '../lib/format.js';
import { MiB, OrderCheck, now, perSecond, recordSink, turn } from '../lib/measure.js';
import { eventSchema, makeEvent, type Event } from '../lib/records.js';
import { defineScenario, type RunReport, type TargetCheck } from '../lib/define-scenario.js';

/** Events per "request": one turn of the producer's event loop. */
const REQUEST = 200;

const LABELS: Record<string, string> = {
  discard: 'no hopper (records dropped)',
  hopper: 'hopper-streams, event schema, spilling',
  'hopper-noschema': 'hopper-streams, no schema, spilling',
};

export default defineScenario({
  id: 8,
  name: 'event-loop',
  title: 'Event-loop delay while spilling',
  description:
    `Each turn of the event loop, ${REQUEST} events arrive (one "request") and are written; the consumer is stalled until the ` +
    'producer ends, so past the 8 MiB budget every record is written to segment files. ' +
    '`monitorEventLoopDelay({ resolution: 1 })` records how late the event loop runs meanwhile. ' +
    'The baseline is the same producer writing into a Writable that drops every record. ' +
    'After the producer, everything is read back and checked.',
  grid: { impl: ['discard', 'hopper', 'hopper-noschema'], records: [1_000_000] },
  smoke: { records: [5_000] },
  baseline: { impl: 'discard' },
  metrics: [
    { key: 'p50Us', label: 'loop delay p50', unit: 'us', better: 'lower' },
    { key: 'p99Us', label: 'loop delay p99', unit: 'us', better: 'lower', showRatio: true },
    { key: 'maxUs', label: 'loop delay max', unit: 'us', better: 'lower', showRatio: true },
    { key: 'recordsPerSec', label: 'write records/s', unit: 'records/s', better: 'higher' },
    { key: 'spilled', label: 'spilled', unit: 'count', better: 'lower' },
  ],
  timeoutMs: 180_000,
  notes: [
    'The producer never waits on the hopper (no backpressure before the disk cap), so the loop delay is the time the ' +
      "producer's own turn takes plus whatever the hopper does in it: validating, encoding, and handing 64 KiB blocks to the background writer (or, past `maxPendingDiskBytes`, writing them synchronously).",
  ],
  label: (settings) => LABELS[settings.impl as string] ?? String(settings.impl),

  async run(settings, { tmpDir }): Promise<RunReport> {
    const records = Number(settings.records);
    const check = new OrderCheck(records);
    let input: Writable;
    let drainAll: () => Promise<void>;
    let spilled = () => 0;
    if (settings.impl === 'discard') {
      input = new Writable({
        objectMode: true,
        highWaterMark: REQUEST * 2,
        write(record: Event, _encoding, callback) {
          check.see(record.seq);
          callback();
        },
      });
      drainAll = async () => {};
    } else {
      const hopper = createHopperStreams<Event>({
        dataDir: tmpDir,
        name: 'bench',
        maxMemoryBytes: 8 * MiB,
        ...(settings.impl === 'hopper' ? { schema: eventSchema() } : {}),
      });
      input = hopper.writable;
      spilled = () => hopper.stats().spilled;
      drainAll = async () => {
        await pipeline(
          hopper.readable,
          recordSink<Event>((event) => check.see(event.seq)),
        );
      };
    }

    const histogram = monitorEventLoopDelay({ resolution: 1 });
    let backpressured = 0;
    histogram.enable();
    const started = now();
    for (let seq = 1; seq <= records; seq++) {
      if (!input.write(makeEvent(seq))) backpressured++;
      if (seq % REQUEST === 0) await turn();
    }
    const elapsed = now() - started;
    histogram.disable();
    const spilledRecords = spilled();
    input.end();
    await drainAll();

    const us = (ns: number): number => ns / 1000;
    return {
      metrics: {
        p50Us: us(histogram.percentile(50)),
        p99Us: us(histogram.percentile(99)),
        maxUs: us(histogram.max),
        recordsPerSec: perSecond(records, elapsed),
        spilled: spilledRecords,
      },
      info: { records, request: REQUEST, backpressured },
      check: check.result(),
    };
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    for (const point of points) {
      const p = (key: string): string => formatValue(point.metrics[key]?.median ?? Number.NaN, 'us');
      const ratio = point.isBaseline ? '' : `; p99 ${formatRatio(point.ratios.p99Us)}, max ${formatRatio(point.ratios.maxUs)} the baseline's`;
      checks.push({
        scenario: 8,
        target: `report: ${point.label}, event-loop delay`,
        measured: point.failure ?? `p50 ${p('p50Us')}, p99 ${p('p99Us')}, max ${p('maxUs')}${ratio}`,
        met: undefined,
        report: true,
      });
    }
    return checks;
  },
});
