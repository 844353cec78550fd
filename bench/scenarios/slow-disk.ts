/**
 * 10. A slow disk must not stall the process that feeds the hopper (issue 23): a timer-driven
 * producer, 10 records of about 150 bytes every 2 ms (5,000 records/s) for a few seconds, the
 * consumer stalled, on a fast disk (the run's temp directory) and on a slow one (ext4 -o sync on
 * a loop device on a FUSE file system that sleeps 2 ms per operation, about 1.3 MB/s).
 * Records accepted in the time, and `perf_hooks.monitorEventLoopDelay` p50/p99/max meanwhile.
 * After the producer, everything is read back and checked.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { createHopperStreams } from '../../lib/index.js';
import { formatRatio, formatValue } from '../lib/format.js';
import { OrderCheck, recordSink } from '../lib/measure.js';
import { mountSlowDisk, type SlowDisk } from '../lib/slow-disk.js';
import { defineScenario, type RunReport, type TargetCheck } from '../lib/define-scenario.js';

const EVERY_MS = 2;
const PER_TICK = 10;
const PAD = 'x'.repeat(130);
/** FUSE delay of the slow disk, per operation. */
const SLOW_MS = 2;

export default defineScenario({
  id: 10,
  name: 'slow-disk',
  title: 'A timer-driven producer on a fast and a slow disk',
  description:
    `Every ${EVERY_MS} ms a timer writes ${PER_TICK} records of about 150 bytes with \`send()\` (5,000 records/s, under the slow ` +
    "disk's bandwidth), for `seconds`; the consumer is stalled, so past the 64 KiB budget every record goes to the segment log. " +
    `The slow disk is ext4 mounted \`-o sync\` on a loop device whose backing file sits on a FUSE file system that sleeps ${SLOW_MS} ms ` +
    'per operation (test/helpers/slowfs.py; needs root). Records accepted in the time, and the event-loop delay meanwhile ' +
    '(`monitorEventLoopDelay({ resolution: 1 })`). After the producer, everything is read back and checked. ' +
    "The same again in a durable channel (`durable: true`, `fsync: 'batch'`: every record goes to the segment log, group commits every 100 ms), reported.",
  grid: { disk: ['fast', 'slow'], channel: ['plain', 'durable'], seconds: [3] },
  smoke: { seconds: [0.3] },
  baseline: { disk: 'fast', channel: 'plain' },
  metrics: [
    { key: 'accepted', label: 'records accepted', unit: 'count', better: 'higher' },
    { key: 'p50Us', label: 'loop delay p50', unit: 'us', better: 'lower' },
    { key: 'p99Us', label: 'loop delay p99', unit: 'us', better: 'lower', showRatio: true },
    { key: 'maxUs', label: 'loop delay max', unit: 'us', better: 'lower', showRatio: true },
    { key: 'syncWrites', label: 'synchronous writes (last resort)', unit: 'count', better: 'lower' },
  ],
  timeoutMs: 180_000,
  notes: [
    'A timer producer accepts fewer records when the loop is late: each late turn is a tick lost. The synchronous writes are the ' +
      'last resort past `maxPendingDiskBytes` (4 MiB): a disk that keeps up needs none.',
  ],
  label: (settings) =>
    `${settings.disk === 'slow' ? `slow disk (FUSE ${SLOW_MS} ms/op, ext4 -o sync)` : 'fast disk (temp directory)'}${settings.channel === 'durable' ? ", durable, fsync 'batch'" : ''}`,

  async run(settings, { tmpDir }): Promise<RunReport> {
    const ms = Number(settings.seconds) * 1000;
    let disk: SlowDisk | undefined;
    if (settings.disk === 'slow') disk = await mountSlowDisk(tmpDir, SLOW_MS);
    try {
      const hopper = createHopperStreams<string>({
        dataDir: disk?.dir ?? tmpDir,
        name: 'bench',
        maxMemoryBytes: 64 * 1024,
        ...(settings.channel === 'durable' ? { durable: true, fsync: 'batch' } : {}),
      });
      const histogram = monitorEventLoopDelay({ resolution: 1 });
      let seq = 0;
      histogram.enable();
      await new Promise<void>((resolve) => {
        const started = performance.now();
        const timer = setInterval(() => {
          for (let k = 0; k < PER_TICK; k++) {
            seq++;
            hopper.send(`${seq} ${PAD}`);
          }
          if (performance.now() - started >= ms) {
            clearInterval(timer);
            resolve();
          }
        }, EVERY_MS);
      });
      histogram.disable();
      const { syncWrites, spilled } = hopper.stats();
      const check = new OrderCheck(seq);
      hopper.writable.end();
      await pipeline(
        hopper.readable,
        recordSink<string>((record) => check.see(Number(record.slice(0, record.indexOf(' '))))),
      );
      // Resolves once nothing runs on the disk in the background any more (it can be unmounted).
      await hopper.close();
      const us = (ns: number): number => ns / 1000;
      return {
        metrics: {
          accepted: seq,
          p50Us: us(histogram.percentile(50)),
          p99Us: us(histogram.percentile(99)),
          maxUs: us(histogram.max),
          syncWrites,
        },
        info: { spilled, everyMs: EVERY_MS, perTick: PER_TICK },
        check: check.result(),
      };
    } finally {
      await disk?.release();
    }
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    const plain = points.filter((point) => point.settings.channel !== 'durable');
    const fast = plain.find((point) => point.settings.disk === 'fast');
    const slow = plain.find((point) => point.settings.disk === 'slow');
    if (fast !== undefined && slow !== undefined) {
      const accepted = slow.ratios.accepted?.median;
      checks.push({
        scenario: 10,
        target: 'slow disk: records accepted in the time >= 0.8x the fast disk',
        measured: slow.failure ?? (accepted === undefined ? 'n/a' : formatRatio(slow.ratios.accepted!)),
        met: slow.failure !== undefined || accepted === undefined ? undefined : accepted >= 0.8,
      });
      const p99 = slow.metrics.p99Us?.median;
      checks.push({
        scenario: 10,
        target: 'slow disk: event-loop delay p99 <= 10 ms',
        measured: slow.failure ?? (p99 === undefined ? 'n/a' : formatValue(p99, 'us')),
        met: slow.failure !== undefined || p99 === undefined ? undefined : p99 <= 10_000,
      });
    }
    const durableFast = points.find((point) => point.settings.channel === 'durable' && point.settings.disk === 'fast');
    const durableSlow = points.find((point) => point.settings.channel === 'durable' && point.settings.disk === 'slow');
    if (durableFast !== undefined && durableSlow !== undefined) {
      const ratio = (durableSlow.metrics.accepted?.median ?? Number.NaN) / (durableFast.metrics.accepted?.median ?? Number.NaN);
      checks.push({
        scenario: 10,
        target: 'report: durable channel, records accepted on the slow disk against the fast disk',
        measured: durableSlow.failure ?? durableFast.failure ?? `${ratio.toFixed(2)}×`,
        met: undefined,
        report: true,
      });
    }
    for (const point of points) {
      const p = (key: string): string => formatValue(point.metrics[key]?.median ?? Number.NaN, 'us');
      checks.push({
        scenario: 10,
        target: `report: ${point.label}, event-loop delay`,
        measured: point.failure ?? `p50 ${p('p50Us')}, p99 ${p('p99Us')}, max ${p('maxUs')}`,
        met: undefined,
        report: true,
      });
    }
    return checks;
  },
});
