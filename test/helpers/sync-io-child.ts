// Child process for the --trace-sync-io tests: a steady spill with the consumer stalled. Run with
// `node --trace-sync-io`, which prints a warning with a stack for each synchronous file call made
// after the first turn of the event loop. The child marks the steady phase on stderr: it begins
// once the first segment exists and its bytes are on disk (opening the channel is synchronous by
// design), and ends before the channel is closed. Segments are small, so the steady phase
// creates, fills, seals and closes many. A drain phase follows: the records read back, segments
// opened, read ahead, closed and removed in the background.
// Mode 'drop-oldest': the disk cap is small and full, so the steady phase drops the oldest
// segment again and again (onFull: 'drop-oldest'); there is no drain. The producer waits for each
// dropped segment's file to be gone before it sends on: a drop while the previous one's removal is
// still under way removes its file synchronously (the last resort, which bounds the disk to one
// segment past the cap), and that is not what this run is about.
// Mode 'durable': a durable channel (every record written through, group commits, segments
// removed once acknowledged: ack 'delivered'), the same steady spill and drain.
import { createHopperStreams } from '../../lib/index.js';

const [dataDir, turnsArg, mode = 'spill'] = process.argv.slice(2);
const turns = Number(turnsArg);
const dropping = mode === 'drop-oldest';
const durable = mode === 'durable';
// The shortest staleness window: the lock's heartbeat (a check of the lock and a touch of its
// owner file, off the event loop too) beats every third of a second during the run.
const hopper = createHopperStreams<string>({
  dataDir,
  maxMemoryBytes: 64 * 1024,
  maxSegmentBytes: 128 * 1024,
  staleLockMs: 1_000,
  ...(dropping ? { maxDiskBytes: 1024 * 1024, onFull: 'drop-oldest' as const } : {}),
  ...(durable ? { name: 'events', durable: true, ack: 'delivered' as const } : {}),
});
/** What may wait for the disk before the producer waits a turn: a quarter of maxPendingDiskBytes. */
const PACE_BYTES = 1024 * 1024;
const record = (i: number): string => `record ${i} ${'x'.repeat(140)}`;
let sent = 0;
let sealed = 0;
let removed = 0;
let dropped = 0;
let droppedFiles = 0;
hopper.on('segment', (event) => {
  if (event.action === 'sealed') sealed++;
  else removed++;
});
hopper.on('drop', (event) => {
  dropped += event.count;
  if (event.file !== undefined) droppedFiles++;
});
const burst = (): void => {
  for (let k = 0; k < 100; k++) hopper.send(record(sent++));
};
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// Warm-up: spill until the segment file exists and nothing waits for the disk.
do {
  burst();
  await nextTurn();
} while (hopper.stats().segments === 0 || (durable ? hopper.stats().diskBytes : hopper.stats().spilled) === 0);
while (hopper.stats().pendingDiskBytes > 0) await nextTurn();
const sealedBefore = sealed;
const removedBefore = removed;
process.stderr.write('STEADY BEGIN\n');
for (let turn = 0; turn < turns; turn++) {
  burst();
  await nextTurn();
  while (dropping && removed < droppedFiles) await nextTurn();
  // A producer the disk keeps up with: on a starved thread pool (a loaded machine) a producer
  // that never waits would pass maxPendingDiskBytes (4 MiB) and meet the last resort, a
  // synchronous write by design, which is not what this run is about.
  while (hopper.stats().pendingDiskBytes > PACE_BYTES) await nextTurn();
}
while (hopper.stats().pendingDiskBytes > 0) await nextTurn();
// Background removals and closes land within a few turns; they belong to the steady phase.
for (let turn = 0; turn < 20; turn++) await nextTurn();
const { diskBytes, segments, syncWrites } = hopper.stats();
const summary = { sent, diskBytes, segments, syncWrites, sealed: sealed - sealedBefore, removed: removed - removedBefore, dropped };
process.stderr.write(`STEADY END ${JSON.stringify(summary)}\n`);
if (!dropping) {
  // The drain: every record read back, through the read-ahead.
  process.stderr.write('DRAIN BEGIN\n');
  let read = 0;
  for await (const value of hopper.readable) {
    if (value !== record(read)) throw new Error(`record ${read} came back as ${value}`);
    if (++read < sent) continue;
    // Removals of the last segments land within a few turns; then the break closes the channel
    // (synchronously, by design). A durable channel removes a segment once the ledger file says it
    // is acknowledged: written fsyncIntervalMs after the acknowledgements moved.
    for (let turn = 0; turn < 20; turn++) await nextTurn();
    for (let wait = 0; durable && wait < 1_000 && removed - removedBefore < sealed - sealedBefore; wait++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    process.stderr.write(`DRAIN END ${JSON.stringify({ read, removed: removed - removedBefore })}\n`);
    break;
  }
} else {
  hopper.destroy();
}
