/**
 * 3. Byte mode: 64 KiB Buffers through a hopper with a 16 MiB budget, the consumer stalled until
 * every chunk is written, then draining; against raw fs writes and reads of the same chunks.
 */
import { hopperBurstDrain, type BurstDrainTiming } from '../lib/burst-drain-job.js';
import { formatRatio } from '../lib/format.js';
import { GiB, MiB, OrderCheck, dirBytes, now, perSecond, turn } from '../lib/measure.js';
import { RawFileLog } from '../lib/rawfs.js';
import { CHUNK_BYTES, chunkSeq, makeChunk } from '../lib/records.js';
import { defineScenario, type RunReport } from '../lib/define-scenario.js';

const BUDGET = 16 * MiB;
/** 4 MiB between turns of the producer's event loop. */
const YIELD_EVERY_CHUNKS = 64;

const LABELS: Record<string, string> = {
  'raw-fs': 'raw fs: writeSync + readSync',
  hopper: 'hopper-streams, no schema',
};

/** One `writeSync` per chunk into 64 MiB files, then one `readSync` per chunk into a fresh Buffer. */
async function rawFs(chunks: number, tmpDir: string): Promise<BurstDrainTiming> {
  const log = new RawFileLog(tmpDir);
  const check = new OrderCheck(chunks);
  try {
    const started = now();
    for (let seq = 1; seq <= chunks; seq++) {
      log.write(makeChunk(seq));
      if (seq % YIELD_EVERY_CHUNKS === 0) await turn();
    }
    log.endWrites();
    const written = now();
    const diskBytes = dirBytes(tmpDir);
    const drainStarted = now();
    for (let seq = 1; seq <= chunks; seq++) {
      const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
      if (log.readFully(chunk) !== CHUNK_BYTES) throw new Error('raw fs: the files are shorter than what was written');
      check.see(chunkSeq(chunk));
    }
    const drained = now();
    return { records: chunks, writeMs: written - started, drainMs: drained - drainStarted, diskBytes, check: check.result(), info: {} };
  } finally {
    log.close();
  }
}

export default defineScenario({
  id: 3,
  name: 'byte-mode',
  title: 'Byte mode',
  description:
    '2 GiB of 64 KiB Buffers (32,768 chunks) written with the consumer stalled, then drained. ' +
    'hopper-streams has no schema (Buffers go to disk as Avro `bytes`) and a 16 MiB budget; ' +
    'the baseline writes each chunk with `fs.writeSync` into 64 MiB files and reads each back with `fs.readSync` into a fresh Buffer, deleting each file once read. Throughput is for the whole job.',
  grid: { impl: ['raw-fs', 'hopper'], bytes: [2 * GiB] },
  smoke: { bytes: [4 * MiB] },
  baseline: { impl: 'raw-fs' },
  metrics: [
    { key: 'bytesPerSec', label: 'write+drain throughput', unit: 'bytes/s', better: 'higher' },
    { key: 'writeBytesPerSec', label: 'write', unit: 'bytes/s', better: 'higher' },
    { key: 'drainBytesPerSec', label: 'drain', unit: 'bytes/s', better: 'higher' },
    { key: 'peakRssBytes', label: 'peak RSS', unit: 'bytes', better: 'lower' },
    { key: 'diskBytes', label: 'disk bytes', unit: 'bytes', better: 'lower' },
  ],
  chart: { metric: 'bytesPerSec', unit: '64 KiB chunks/s', scale: 1 / CHUNK_BYTES },
  timeoutMs: 120_000,
  notes: [
    'Both sides write to the page cache (the machine has far more memory than 2 GiB, and nothing is fsynced), so this compares CPU cost per byte more than the disk.',
    "The baseline rolls over to a new file every 64 MiB, as hopper-streams' default segments do: on the machine measured one 2 GiB file wrote 2–4× slower than 64 MiB files, and the baseline should be the fastest plain way.",
  ],
  label: (settings) => LABELS[settings.impl as string] ?? String(settings.impl),

  async run(settings, { tmpDir }): Promise<RunReport> {
    const bytes = Number(settings.bytes);
    const chunks = Math.floor(bytes / CHUNK_BYTES);
    const timing =
      settings.impl === 'raw-fs'
        ? await rawFs(chunks, tmpDir)
        : await hopperBurstDrain<Buffer>(
            { records: chunks, tmpDir, make: makeChunk, seqOf: chunkSeq, yieldEvery: YIELD_EVERY_CHUNKS },
            { maxMemoryBytes: BUDGET },
          );
    const total = chunks * CHUNK_BYTES;
    return {
      metrics: {
        bytesPerSec: perSecond(total, timing.writeMs + timing.drainMs),
        writeBytesPerSec: perSecond(total, timing.writeMs),
        drainBytesPerSec: perSecond(total, timing.drainMs),
        diskBytes: timing.diskBytes,
      },
      info: { chunks, ...timing.info },
      check: timing.check,
    };
  },

  targets({ points }) {
    const ratio = points.find((p) => p.settings.impl === 'hopper')?.ratios.bytesPerSec;
    return [
      {
        scenario: 3,
        target: 'hopper-streams: ≥ 0.7× raw fs throughput',
        measured: formatRatio(ratio),
        met: ratio && ratio.n > 0 ? ratio.median >= 0.7 : undefined,
      },
    ];
  },
});
