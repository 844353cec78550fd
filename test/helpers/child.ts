// Child process for lifecycle tests: opens a channel, spills records, then either waits to be
// killed ("hold") or exits with the channel still open ("exit").
import { createHopperStreams } from '../../lib/index.js';

const [mode, dataDir, name] = process.argv.slice(2);
const hopper = createHopperStreams<string>({ dataDir: dataDir === '-' ? undefined : dataDir, name, maxMemoryBytes: 0, maxSegmentBytes: 100 });
for (let i = 0; i < 50; i++) hopper.send(`record ${i}`);
setImmediate(() => {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, path: hopper.path, segments: hopper.stats().segments })}\n`);
  if (mode === 'exit') process.exit(0);
  else setInterval(() => {}, 1_000);
});
