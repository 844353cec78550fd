/**
 * A fast producer and a slow consumer joined by a hopper with a small memory budget.
 * The producer writes every record without waiting; what does not fit in memory spills to
 * Avro segment files, and the consumer still reads every record in order.
 *
 *   npm run demo -- --records 200000 --memory 1048576
 */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { createHopperStreams, type HopperStats, type HopperStreams } from '../lib/index.js';
import { eventSchema, events, type Event } from './events.js';

const MiB = 1024 * 1024;

interface DemoOptions {
  records: number;
  memoryBytes: number;
  segmentBytes: number;
  consumerDelayMs: number;
  consumerBatch: number;
}

interface Peaks {
  memoryBytes: number;
  diskBytes: number;
  segments: number;
}

interface OrderCheck {
  expected: number;
  firstMismatch: { index: number; expected: number; got: number } | undefined;
}

interface Outcome {
  recordsRead: number;
  order: OrderCheck;
  finalStats: HopperStats;
  producerDoneMs: number | undefined;
  consumerDoneMs: number;
  channelDirExists: boolean;
  tempDirExists: boolean;
}

const USAGE = `Usage: npm run demo -- [options]

  --records N               records to send (default 1000000)
  --memory BYTES            hopper memory budget (default 4194304 = 4 MiB)
  --segment-bytes BYTES     segment file size before a new one is opened (default 16 MiB)
  --consumer-delay-ms MS    the consumer sleeps this long after each batch (default 1)
  --consumer-batch N        records per consumer batch (default 100)
  --help                    show this help`;

function parseCount(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text.replaceAll('_', ''));
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`--${name} must be an integer from ${min} up, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseOptions(argv: string[]): DemoOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      records: { type: 'string' },
      memory: { type: 'string' },
      'segment-bytes': { type: 'string' },
      'consumer-delay-ms': { type: 'string' },
      'consumer-batch': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return undefined;
  return {
    records: parseCount('records', values.records, 1_000_000, 1),
    memoryBytes: parseCount('memory', values.memory, 4 * MiB, 0),
    segmentBytes: parseCount('segment-bytes', values['segment-bytes'], 16 * MiB, 1),
    consumerDelayMs: parseCount('consumer-delay-ms', values['consumer-delay-ms'], 1, 0),
    consumerBatch: parseCount('consumer-batch', values['consumer-batch'], 100, 1),
  };
}

function* generateEvents(count: number): Generator<Event> {
  // Timestamps from now, so the demo's records look live.
  yield* events(count, 1, Date.now());
}

function samplePeaks(hopper: HopperStreams<Event>, peaks: Peaks): HopperStats {
  const stats = hopper.stats();
  peaks.memoryBytes = Math.max(peaks.memoryBytes, stats.memoryBytes);
  peaks.diskBytes = Math.max(peaks.diskBytes, stats.diskBytes);
  peaks.segments = Math.max(peaks.segments, stats.segments);
  return stats;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < MiB) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

function progressLine(stats: HopperStats, options: DemoOptions, elapsedMs: number): string {
  return [
    `${(elapsedMs / 1000).toFixed(1)}s`,
    `in ${formatCount(stats.recordsIn)}/${formatCount(options.records)}`,
    `out ${formatCount(stats.recordsOut)}`,
    `memory ${formatBytes(stats.memoryBytes)}/${formatBytes(options.memoryBytes)}`,
    `disk ${formatBytes(stats.diskBytes)}`,
    `segments ${stats.segments}`,
    `spilled ${formatCount(stats.spilled)}`,
  ].join(' | ');
}

/** On a TTY, one line rewritten 4 times a second; otherwise a full line every 2 s so logs stay short. */
function startProgress(hopper: HopperStreams<Event>, peaks: Peaks, options: DemoOptions, startedAt: number): () => void {
  const tty = process.stdout.isTTY === true;
  const printEveryMs = tty ? 0 : 2000;
  let lastPrinted = startedAt;
  const timer = setInterval(() => {
    const stats = samplePeaks(hopper, peaks);
    const now = performance.now();
    if (tty) {
      process.stdout.write(`\r\x1b[2K${progressLine(stats, options, now - startedAt)}`);
    } else if (now - lastPrinted >= printEveryMs) {
      lastPrinted = now;
      process.stdout.write(`${progressLine(stats, options, now - startedAt)}\n`);
    }
  }, 250);
  return () => {
    clearInterval(timer);
    if (tty) process.stdout.write('\r\x1b[2K');
  };
}

function checkOrder(order: OrderCheck, index: number, seq: number): void {
  if (seq !== order.expected && order.firstMismatch === undefined) {
    order.firstMismatch = { index, expected: order.expected, got: seq };
  }
  order.expected = seq + 1;
}

async function consume(hopper: HopperStreams<Event>, peaks: Peaks, options: DemoOptions): Promise<{ count: number; order: OrderCheck }> {
  const order: OrderCheck = { expected: 1, firstMismatch: undefined };
  let count = 0;
  for await (const event of hopper.readable) {
    checkOrder(order, count, event.seq);
    count++;
    if (count % 10_000 === 0) samplePeaks(hopper, peaks);
    if (count % options.consumerBatch === 0 && options.consumerDelayMs > 0) await sleep(options.consumerDelayMs);
  }
  return { count, order };
}

async function run(options: DemoOptions): Promise<{ outcome: Outcome; peaks: Peaks }> {
  const hopper = createHopperStreams<Event>({
    schema: eventSchema(),
    maxMemoryBytes: options.memoryBytes,
    maxSegmentBytes: options.segmentBytes,
  });
  const channelDir = hopper.path;
  const tempDir = path.dirname(channelDir);
  const startedAt = performance.now();
  const peaks: Peaks = { memoryBytes: 0, diskBytes: 0, segments: 0 };
  hopper.on('spill', () => samplePeaks(hopper, peaks));
  hopper.on('segment', () => samplePeaks(hopper, peaks));

  console.log(
    `hopper-streams demo: ${formatCount(options.records)} Event records, memory budget ${formatBytes(options.memoryBytes)}, segments of ${formatBytes(options.segmentBytes)}`,
  );
  console.log(`channel directory: ${channelDir}`);

  let producerDoneMs: number | undefined;
  hopper.writable.once('finish', () => {
    producerDoneMs = performance.now() - startedAt;
  });
  // close() ends the writable if it is still open, so it must wait for the producer's own end.
  const closed = new Promise<void>((resolve, reject) => {
    hopper.writable.once('finish', () => hopper.close().then(resolve, reject));
  });
  closed.catch(() => {});

  const source = Readable.from(generateEvents(options.records));
  // pipe() does not pass a source error on; without this the consumer would wait for ever.
  source.once('error', (err) => hopper.destroy(err));
  source.pipe(hopper.writable);

  const stopProgress = startProgress(hopper, peaks, options, startedAt);
  try {
    const { count, order } = await consume(hopper, peaks, options);
    const consumerDoneMs = performance.now() - startedAt;
    await closed;
    return {
      peaks,
      outcome: {
        recordsRead: count,
        order,
        finalStats: hopper.stats(),
        producerDoneMs,
        consumerDoneMs,
        channelDirExists: fs.existsSync(channelDir),
        tempDirExists: fs.existsSync(tempDir),
      },
    };
  } finally {
    stopProgress();
  }
}

function yesNo(ok: boolean): string {
  return ok ? 'yes' : 'NO';
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? 'never' : `${(ms / 1000).toFixed(2)} s`;
}

/** Prints the summary and returns the names of the checks that failed. */
function report(options: DemoOptions, outcome: Outcome, peaks: Peaks): string[] {
  const { order, finalStats: stats } = outcome;
  const countOk = outcome.recordsRead === options.records && stats.recordsIn === options.records;
  const inOrder = order.firstMismatch === undefined && order.expected === options.records + 1;
  const withinBudget = peaks.memoryBytes <= options.memoryBytes;
  const diskUsed = stats.spilled > 0 && peaks.diskBytes > 0;
  const dirRemoved = !outcome.channelDirExists && !outcome.tempDirExists;
  const mismatch = order.firstMismatch;

  console.log('\nSummary');
  console.log(`  records written:        ${formatCount(stats.recordsIn)} of ${formatCount(options.records)}`);
  console.log(`  records read:           ${formatCount(outcome.recordsRead)}  (count matches: ${yesNo(countOk)})`);
  console.log(
    `  every record in order:  ${yesNo(inOrder)}${mismatch ? `  (first mismatch at record #${mismatch.index}: expected seq ${mismatch.expected}, got ${mismatch.got})` : ''}`,
  );
  console.log(
    `  peak memory:            ${formatCount(peaks.memoryBytes)} B of a ${formatCount(options.memoryBytes)} B budget  (within budget: ${yesNo(withinBudget)})`,
  );
  console.log(
    `  peak disk:              ${formatCount(peaks.diskBytes)} B in at most ${peaks.segments} segment file(s); ${formatCount(stats.spilled)} records spilled  (disk used: ${yesNo(diskUsed)})`,
  );
  console.log(`  producer finished at:   ${seconds(outcome.producerDoneMs)}`);
  console.log(`  consumer finished at:   ${seconds(outcome.consumerDoneMs)}`);
  console.log(`  channel dir removed:    ${yesNo(!outcome.channelDirExists)}  (temp dir removed: ${yesNo(!outcome.tempDirExists)})`);

  const failed: string[] = [];
  if (!countOk) failed.push(`count: wrote ${stats.recordsIn}, read ${outcome.recordsRead}, expected ${options.records}`);
  if (!inOrder)
    failed.push(
      mismatch ? `order: record #${mismatch.index} had seq ${mismatch.got}, expected ${mismatch.expected}` : `order: last seq was ${order.expected - 1}`,
    );
  if (!withinBudget) failed.push(`memory: peak ${peaks.memoryBytes} B is above the ${options.memoryBytes} B budget`);
  if (!diskUsed) failed.push('disk: nothing spilled to disk');
  if (!dirRemoved) failed.push(`cleanup: ${outcome.channelDirExists ? 'the channel directory' : 'the temp directory'} still exists`);
  return failed;
}

async function main(): Promise<number> {
  let options: DemoOptions | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (options === undefined) {
    console.log(USAGE);
    return 0;
  }
  const { outcome, peaks } = await run(options);
  const failed = report(options, outcome, peaks);
  if (failed.length === 0) {
    console.log('\nAll checks passed.');
    return 0;
  }
  console.log('\nFailed checks:');
  for (const failure of failed) console.log(`  - ${failure}`);
  return 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error('\ndemo failed:', err);
    process.exitCode = 1;
  },
);
