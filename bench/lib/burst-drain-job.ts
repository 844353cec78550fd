/**
 * The burst-then-drain job, shared by scenarios 2 (records), 3 (bytes) and 4 (memory): write
 * everything with the consumer paused, end the input, then read everything back. Each phase is
 * timed on its own; disk usage is taken between them, when it peaks.
 */
import { pipeline } from 'node:stream/promises';
import { createHopperStreams, type HopperOptions } from '../../lib/index.js';
import { OrderCheck, dirBytes, now, once, recordSink, turn } from './measure.js';
import type { RunReport } from './define-scenario.js';

/** The producer lets the event loop turn after this many records, as any real source does now and then. */
export const YIELD_EVERY = 16_384;

export interface BurstDrainTiming {
  records: number;
  writeMs: number;
  drainMs: number;
  /** Bytes the implementation holds on disk once everything is written and nothing read. */
  diskBytes: number;
  check: RunReport['check'];
  info: Record<string, string | number | boolean | null>;
}

export interface BurstDrainJob<T> {
  records: number;
  make(seq: number): T;
  seqOf(record: T): number;
  tmpDir: string;
  /** Records between event-loop turns of the producer (default {@link YIELD_EVERY}). */
  yieldEvery?: number;
}

/** Through hopper-streams: `writable.write()` in a loop (honouring its return value), then `pipeline(readable, sink)`. */
export async function hopperBurstDrain<T>(job: BurstDrainJob<T>, options: HopperOptions): Promise<BurstDrainTiming> {
  const { records, make, seqOf } = job;
  const yieldEvery = job.yieldEvery ?? YIELD_EVERY;
  const hopper = createHopperStreams<T>({ ...options, dataDir: job.tmpDir, name: 'bench' });
  const check = new OrderCheck(records);
  let backpressured = 0;

  const started = now();
  for (let seq = 1; seq <= records; seq++) {
    if (!hopper.writable.write(make(seq))) {
      backpressured++;
      await once(hopper.writable, 'drain');
    } else if (seq % yieldEvery === 0) {
      await turn();
    }
  }
  hopper.writable.end();
  await once(hopper.writable, 'finish');
  const written = now();

  await turn(); // let a pending block reach its file before we look (not timed)
  const stats = hopper.stats();
  const diskBytes = dirBytes(job.tmpDir);

  const drainStarted = now();
  await pipeline(
    hopper.readable,
    recordSink<T>((record) => check.see(seqOf(record))),
  );
  const drained = now();

  return {
    records,
    writeMs: written - started,
    drainMs: drained - drainStarted,
    diskBytes,
    check: check.result(),
    info: {
      spilled: stats.spilled,
      memoryRecordsAtPeak: stats.memoryRecords,
      segmentsAtPeak: stats.segments,
      backpressured,
    },
  };
}
