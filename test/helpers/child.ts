// Child process for lifecycle tests: opens a channel, spills records, then either waits to be
// killed ("hold") or exits with the channel still open ("exit"). It reports once its segments are
// on disk (they are created and written in the background).
import './end-with-parent.js';
import { createHopperStreams } from '../../lib/index.js';

const [mode, dataDir, name] = process.argv.slice(2);
const hopper = createHopperStreams<string>({ dataDir: dataDir === '-' ? undefined : dataDir, name, maxMemoryBytes: 0, maxSegmentBytes: 100 });
for (let i = 0; i < 50; i++) hopper.send(`record ${i}`);
// The records are handed to the writer when the event loop turns (before this runs), then written.
const report = (): void => {
  if (hopper.stats().pendingDiskBytes > 0) {
    setImmediate(report);
    return;
  }
  process.stdout.write(`${JSON.stringify({ pid: process.pid, path: hopper.path, segments: hopper.stats().segments })}\n`);
  if (mode === 'exit') process.exit(0);
  else setInterval(() => {}, 1_000);
};
setImmediate(report);
