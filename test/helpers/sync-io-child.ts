// Child process for the --trace-sync-io test: a steady spill with the consumer stalled. Run with
// `node --trace-sync-io`, which prints a warning with a stack for each synchronous file call made
// after the first turn of the event loop. The child marks the steady phase on stderr: it begins
// once the first segment exists and its bytes are on disk (opening the channel and creating a
// segment file are synchronous by design), and ends before the channel is closed. A drain phase
// follows: the records read back, blocks read ahead in the background.
import { createHopperStreams } from '../../lib/index.js';

const [dataDir, turnsArg] = process.argv.slice(2);
const turns = Number(turnsArg);
// No heartbeat during the run: the lock's refresh is a synchronous write, every staleLockMs / 3.
const hopper = createHopperStreams<string>({ dataDir, maxMemoryBytes: 64 * 1024, staleLockMs: 3_600_000 });
const record = (i: number): string => `record ${i} ${'x'.repeat(140)}`;
let sent = 0;
const burst = (): void => {
  for (let k = 0; k < 100; k++) hopper.send(record(sent++));
};
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

// Warm-up: spill until the segment file exists and nothing waits for the disk.
do {
  burst();
  await nextTurn();
} while (hopper.stats().segments === 0 || hopper.stats().spilled === 0);
while (hopper.stats().pendingDiskBytes > 0) await nextTurn();
process.stderr.write('STEADY BEGIN\n');
for (let turn = 0; turn < turns; turn++) {
  burst();
  await nextTurn();
}
while (hopper.stats().pendingDiskBytes > 0) await nextTurn();
const { diskBytes, segments, syncWrites } = hopper.stats();
process.stderr.write(`STEADY END ${JSON.stringify({ sent, diskBytes, segments, syncWrites })}\n`);
// The drain: every record read back, through the read-ahead.
process.stderr.write('DRAIN BEGIN\n');
let read = 0;
for await (const value of hopper.readable) {
  if (value !== record(read)) throw new Error(`record ${read} came back as ${value}`);
  if (++read < sent) continue;
  // Before the break, which closes the channel (synchronously, by design).
  process.stderr.write(`DRAIN END ${JSON.stringify({ read })}\n`);
  break;
}
