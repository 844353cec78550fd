/**
 * 1. In-memory pass-through: a consumer that keeps up, so nothing should need to spill.
 * `pipeline(Readable.from(gen), hopper, sink)` (the Duplex), and the pair as the README's first
 * usage drives it, against the same pipeline through a PassThrough.
 */
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as hopperStreams from '../../lib/index.js';
import { MiB, OrderCheck, now, perSecond, recordSink } from '../lib/measure.js';
import { eventSchema, events, type Event } from '../lib/records.js';
import { defineScenario, type PointSummary, type TargetCheck } from '../lib/define-scenario.js';
import { formatRatio } from '../lib/format.js';

const BUDGET = 16 * MiB;

const LABELS: Record<string, string> = {
  passthrough: 'PassThrough (objectMode)',
  hopper: 'hopper-streams Duplex, event schema',
  'hopper-noschema': 'hopper-streams Duplex, no schema',
  pair: 'hopper-streams pair, event schema',
  'pair-noschema': 'hopper-streams pair, no schema',
};

export default defineScenario({
  id: 1,
  name: 'passthrough',
  title: 'In-memory pass-through',
  description:
    'A synchronous generator (`Readable.from`) feeds the stream, a sink that calls back at once drains it. ' +
    'hopper-streams runs as one `pipeline(source, createHopperStream(), sink)` (Duplex), and as ' +
    "`pipeline(source, hopper.writable)` beside `pipeline(hopper.readable, sink)` (pair, the README's first usage), with a 16 MiB budget; " +
    'the baseline is `pipeline(source, new PassThrough({ objectMode: true }), sink)`. ' +
    'Records are the 11-field event of fixtures/schemas/event.avsc.',
  grid: { impl: ['passthrough', 'hopper', 'hopper-noschema', 'pair', 'pair-noschema'], records: [500_000, 3_000_000] },
  smoke: { records: [3_000] },
  baseline: { impl: 'passthrough' },
  metrics: [
    { key: 'recordsPerSec', label: 'records/s', unit: 'records/s', better: 'higher' },
    { key: 'peakRssBytes', label: 'peak RSS', unit: 'bytes', better: 'lower' },
    { key: 'spilled', label: 'spilled', unit: 'count', better: 'lower' },
  ],
  chart: { metric: 'recordsPerSec', unit: 'records/s' },
  infoColumns: [{ key: 'variant', label: 'driven as' }],
  timeoutMs: 120_000,
  notes: [
    'Two lengths: 500,000 records (about 0.4 s, so the JIT warming up the path is part of the figure, as in a short job) and 3,000,000 (the path once optimized, as in a long-running one).',
    'hopper never pushes back before its disk cap, so a synchronous source would run ahead of a consumer that has not had a turn yet; since 0.2.0 a piped readable starts reading at the first write and a waiting consumer takes each record inside `write()`. `spilled` counts the records that went to disk anyway (0.1.0 spilled about 90% of them here).',
  ],
  label: (settings) => LABELS[settings.impl as string] ?? String(settings.impl),

  async run(settings, { tmpDir }) {
    const records = Number(settings.records);
    const check = new OrderCheck(records);
    const sink = recordSink<Event>((event) => check.see(event.seq));
    const source = Readable.from(events(records));
    let spilled = 0;
    let variant = 'PassThrough';

    const started = now();
    if (settings.impl === 'passthrough') {
      await pipeline(source, new PassThrough({ objectMode: true }), sink);
    } else {
      const options: hopperStreams.HopperOptions = { dataDir: tmpDir, name: 'bench', maxMemoryBytes: BUDGET };
      if (settings.impl === 'hopper' || settings.impl === 'pair') options.schema = eventSchema();
      if (settings.impl === 'hopper' || settings.impl === 'hopper-noschema') {
        variant = 'createHopperStream() Duplex';
        const duplex = hopperStreams.createHopperStream<Event>(options);
        await pipeline(source, duplex, sink);
        spilled = duplex.stats().spilled;
      } else {
        variant = 'createHopperStreams(): writable + readable';
        const hopper = hopperStreams.createHopperStreams<Event>(options);
        await Promise.all([pipeline(source, hopper.writable), pipeline(hopper.readable, sink)]);
        spilled = hopper.stats().spilled;
      }
    }
    const elapsed = now() - started;

    return {
      metrics: { recordsPerSec: perSecond(records, elapsed), spilled },
      info: { records, variant },
      check: check.result(),
    };
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    for (const point of points.filter((p: PointSummary) => !p.isBaseline)) {
      const ratio = point.ratios.recordsPerSec;
      const spilled = point.metrics.spilled;
      checks.push({
        scenario: 1,
        target: `${point.label}, ${Number(point.settings.records).toLocaleString('en-US')} records: ≥ 0.95× PassThrough's records/s`,
        measured: `${formatRatio(ratio)}${spilled && spilled.n > 0 ? `; spilled ${Math.round(spilled.median).toLocaleString('en-US')} of ${Number(point.settings.records).toLocaleString('en-US')} (median)` : ''}`,
        met: ratio && ratio.n > 0 ? ratio.median >= 0.95 : undefined,
      });
    }
    return checks;
  },
});
