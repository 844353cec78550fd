// Child process for a lifecycle test: two channels open when the process exits. The first has a
// segment that cannot be removed and a 'fault' listener that throws; the second is plain.
import { HopperStreams } from '../../lib/streams.js';
import { FaultyFileSystem } from './faulty-fs.js';

const [dataDir] = process.argv.slice(2);
const faulty = new FaultyFileSystem();
const first = new HopperStreams<string>({ dataDir, name: 'first', maxMemoryBytes: 0 }, { fileSystem: faulty.fs });
const second = new HopperStreams<string>({ dataDir, name: 'second', maxMemoryBytes: 0 });
first.on('fault', (event) => {
  throw new Error(`a fault listener that throws at exit (${event.operation})`);
});
for (let i = 0; i < 20; i++) {
  first.send(`first ${i}`);
  second.send(`second ${i}`);
}
// Exits once the blocks are on disk (they are written in the background): the first channel then
// has a segment to remove at exit.
const settled = (): boolean => first.stats().pendingDiskBytes === 0 && second.stats().pendingDiskBytes === 0;
const exitWhenSettled = (): void => {
  if (!settled()) {
    setImmediate(exitWhenSettled);
    return;
  }
  faulty.fail('unlink', 'EBUSY', Infinity);
  process.exit(0);
};
setImmediate(exitWhenSettled);
