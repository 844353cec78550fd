/**
 * 13. Reopening a durable channel that holds a large backlog (issue 24, report only): fill a
 * durable channel with about 1 KiB records, unread, and destroy it (what is not acknowledged
 * stays); then time
 * `createHopperStreams()` on the same directory (recovery scans the segments by framing only)
 * and the first record delivered.
 */
import { once } from 'node:events';
import { createHopperStreams, type HopperOptions } from '../../lib/index.js';
import { formatValue } from '../lib/format.js';
import { MiB, OrderCheck, dirBytes, now, turn } from '../lib/measure.js';
import { defineScenario, type TargetCheck } from '../lib/define-scenario.js';

interface Entry {
  seq: number;
  pad: string;
}
const entrySchema = {
  type: 'record',
  name: 'Entry',
  fields: [
    { name: 'seq', type: 'long' },
    { name: 'pad', type: 'string' },
  ],
} as const;
const PAD = 'x'.repeat(1000);

type DurableHopper = ReturnType<typeof createHopperStreams<Entry>> & { flush(): Promise<void> };

function open(tmpDir: string): DurableHopper {
  const options = { dataDir: tmpDir, name: 'bench', schema: entrySchema, durable: true, fsync: 'batch', ack: 'manual', maxMemoryBytes: 8 * MiB };
  return createHopperStreams<Entry>(options as unknown as HopperOptions) as DurableHopper;
}

export default defineScenario({
  id: 13,
  name: 'durable-reopen',
  title: 'Reopening a durable channel with a large backlog',
  description:
    "A durable channel (`fsync: 'batch'`, `ack: 'manual'`) is filled with records of about 1 KiB up to the backlog size, unread; `flush()`, then `destroy()` (which keeps what is not acknowledged). " +
    'Then the time of `createHopperStreams()` on the same directory (recovery: the ledger file, then every segment scanned by its framing, no record decoded), ' +
    'and from there to the first record delivered (its block read and decoded).',
  grid: { backlogMiB: [1024] },
  smoke: { backlogMiB: [1] },
  baseline: { backlogMiB: 1024 },
  smokeBaseline: { backlogMiB: 1 },
  metrics: [
    { key: 'reopenUs', label: 'reopen', unit: 'us', better: 'lower' },
    { key: 'firstRecordUs', label: 'first record after reopen', unit: 'us', better: 'lower' },
    { key: 'diskBytes', label: 'backlog on disk', unit: 'bytes', better: 'lower' },
  ],
  timeoutMs: 600_000,
  notes: [
    'Report only. The page cache is warm (the backlog was just written): a cold reopen reads the block headers from the disk, about 32,000 small reads per GiB at 64 KiB blocks.',
  ],
  label: (settings) => `backlog ${settings.backlogMiB} MiB`,

  async run(settings, { tmpDir }) {
    const target = Number(settings.backlogMiB) * MiB;
    const writer = open(tmpDir);
    let records = 0;
    while (records * (PAD.length + 8) < target) {
      writer.send({ seq: ++records, pad: PAD });
      if (records % 4096 === 0) await turn();
    }
    await writer.flush();
    // destroy() keeps what is not acknowledged (a durable channel removes only acknowledged
    // segments), as a crash would; a durable close() would too, without waiting for a reader.
    const closed = once(writer.readable, 'close');
    writer.destroy();
    await closed;
    const diskBytes = dirBytes(tmpDir);

    const started = now();
    const reader = open(tmpDir);
    const opened = now();
    const check = new OrderCheck(1);
    const first = once(reader.readable, 'data') as Promise<[Entry]>;
    const [entry] = await first;
    const delivered = now();
    reader.readable.pause();
    check.see(entry.seq);
    reader.destroy();
    return {
      metrics: { reopenUs: (opened - started) * 1000, firstRecordUs: (delivered - opened) * 1000, diskBytes },
      info: { records },
      check: check.result(),
    };
  },

  targets({ points }) {
    return points.map(
      (point): TargetCheck => ({
        scenario: 13,
        target: `reopen with a ${point.settings.backlogMiB} MiB backlog, and its first record (report)`,
        measured: `${formatValue(point.metrics.reopenUs?.median ?? Number.NaN, 'us')}, first record ${formatValue(point.metrics.firstRecordUs?.median ?? Number.NaN, 'us')}`,
        met: undefined,
        report: true,
      }),
    );
  },
});
