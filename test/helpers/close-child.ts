// Child process for a lifecycle test: holds records and awaits close(), then ('read') reads them
// all, ('nobody') leaves them unread, or ('paused') reads 10 with a 'data' listener and pauses,
// so that the rest wait in the readable's own buffer; the process reaches its exit with close() pending.
import { createHopperStreams } from '../../lib/index.js';

const [mode, dataDir, name] = process.argv.slice(2);
const hopper = createHopperStreams<string>({ dataDir, name, maxMemoryBytes: 100 });
for (let i = 0; i < 50; i++) hopper.send(`record ${i}`);
const closing = hopper.close();
if (mode === 'read') for await (const record of hopper.readable) void record;
if (mode === 'paused') {
  let taken = 0;
  const take = (): void => {
    if (++taken < 10) return;
    hopper.readable.off('data', take);
    hopper.readable.pause();
  };
  hopper.readable.on('data', take);
}
await closing;
