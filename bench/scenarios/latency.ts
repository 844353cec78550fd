/**
 * 5. Latency with a consumer that keeps up: time from `write()` to the consumer receiving the
 * record, p50/p99/p999, in memory mode and in spill mode (a zero budget sends every record
 * through the segment log), against a PassThrough under the same producer.
 */
import { PassThrough, type Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHopperStreams, type HopperStats } from '../../lib/index.js';
import { formatRatio, formatValue } from '../lib/format.js';
import { MiB, OrderCheck, now, once, perSecond, recordSink, turn } from '../lib/measure.js';
import { eventSchema, makeEvent, type Event } from '../lib/records.js';
import { defineScenario, type RunReport, type TargetCheck } from '../lib/define-scenario.js';
import { quantile } from '../lib/stats.js';

/** Records written per turn of the producer's event loop: a PassThrough's highWaterMark, so it never pushes back. */
const BATCH = 16;
/** The first records warm the code paths up (first compilation, the first segment file): not counted. */
const WARMUP = 1_000;

const LABELS: Record<string, string> = {
  passthrough: 'PassThrough (objectMode)',
  'hopper-memory': 'hopper-streams, memory mode (8 MiB)',
  'hopper-spill': 'hopper-streams, spill mode (budget 0)',
};

export default defineScenario({
  id: 5,
  name: 'latency',
  title: 'Latency, consumer keeping up',
  description:
    `The producer writes ${BATCH} events, lets the event loop turn, and so on; the consumer (\`pipeline(readable, sink)\`) ` +
    'takes each record as it comes. Latency is from the `write()` call to the sink receiving that record; ' +
    `the first ${WARMUP.toLocaleString('en-US')} records of each run are a warm-up and not counted. ` +
    'Memory mode: 8 MiB budget. Spill mode: `maxMemoryBytes: 0`, every record goes through a segment file.',
  grid: { impl: ['passthrough', 'hopper-memory', 'hopper-spill'], records: [20_000] },
  smoke: { records: [2_000] },
  baseline: { impl: 'passthrough' },
  metrics: [
    { key: 'p50Us', label: 'p50', unit: 'us', better: 'lower' },
    { key: 'p99Us', label: 'p99', unit: 'us', better: 'lower', showRatio: true },
    { key: 'p999Us', label: 'p99.9', unit: 'us', better: 'lower', showRatio: true },
    { key: 'recordsPerSec', label: 'records/s', unit: 'records/s', better: 'higher' },
    { key: 'spilled', label: 'spilled', unit: 'count', better: 'lower' },
  ],
  timeoutMs: 120_000,
  notes: [
    'A stream that hands the record to a waiting consumer inside `write()` (PassThrough, and hopper-streams from memory) shows sub-microsecond latencies; ' +
      `one that delivers on a later turn also counts the rest of the producer's batch of ${BATCH} and the turn itself.`,
    'The tail (p99.9) catches the garbage collections that happen to run inside a `write()`.',
  ],
  label: (settings) => LABELS[settings.impl as string] ?? String(settings.impl),

  async run(settings, { tmpDir }): Promise<RunReport> {
    const records = Number(settings.records);
    const warmup = records > 2 * WARMUP ? WARMUP : 0;
    const writtenAt = new Float64Array(records + 1);
    const latencies = new Float64Array(records - warmup);
    const check = new OrderCheck(records);
    const sink = recordSink<Event>((event) => {
      if (event.seq > warmup) latencies[event.seq - warmup - 1] = now() - writtenAt[event.seq]!;
      check.see(event.seq);
    });

    let input: Writable;
    let output: Readable;
    let stats: (() => HopperStats) | undefined;
    if (settings.impl === 'passthrough') {
      const passThrough = new PassThrough({ objectMode: true });
      input = passThrough;
      output = passThrough;
    } else {
      const hopper = createHopperStreams<Event>({
        dataDir: tmpDir,
        name: 'bench',
        schema: eventSchema(),
        maxMemoryBytes: settings.impl === 'hopper-spill' ? 0 : 8 * MiB,
      });
      input = hopper.writable;
      output = hopper.readable;
      stats = () => hopper.stats();
    }

    const started = now();
    const consumed = pipeline(output, sink);
    let backpressured = 0;
    for (let seq = 1; seq <= records; seq++) {
      const event = makeEvent(seq);
      writtenAt[seq] = now();
      if (!input.write(event)) {
        backpressured++;
        await once(input, 'drain');
      }
      if (seq % BATCH === 0) await turn();
    }
    const spilled = stats?.().spilled ?? 0;
    input.end();
    await consumed;
    const elapsed = now() - started;

    latencies.sort();
    const us = (q: number): number => quantile(latencies, q) * 1000;
    return {
      metrics: {
        p50Us: us(0.5),
        p99Us: us(0.99),
        p999Us: us(0.999),
        maxUs: latencies[latencies.length - 1]! * 1000,
        recordsPerSec: perSecond(records, elapsed),
        spilled,
      },
      info: { records, warmup, batch: BATCH, backpressured },
      check: check.result(),
    };
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    for (const point of points) {
      const p = (key: string): string => formatValue(point.metrics[key]?.median ?? Number.NaN, 'us');
      const ratio = point.isBaseline ? '' : `; p99 ${formatRatio(point.ratios.p99Us)} PassThrough's`;
      checks.push({
        scenario: 5,
        target: `report: ${point.label}, write-to-read latency`,
        measured: point.failure ?? `p50 ${p('p50Us')}, p99 ${p('p99Us')}, p99.9 ${p('p999Us')}${ratio}`,
        met: undefined,
        report: true,
      });
    }
    return checks;
  },
});
