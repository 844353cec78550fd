// Child process for a lifecycle test: holds records and awaits close(), then ('read') reads them
// all or ('nobody') leaves them unread, so the process reaches its exit with close() pending.
import { createHopperStreams } from '../../lib/index.js';

const [mode, dataDir, name] = process.argv.slice(2);
const hopper = createHopperStreams<string>({ dataDir, name, maxMemoryBytes: 100 });
for (let i = 0; i < 50; i++) hopper.send(`record ${i}`);
const closing = hopper.close();
if (mode === 'read') for await (const record of hopper.readable) void record;
await closing;
