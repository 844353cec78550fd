// Worker thread for the ownership tests; `workerData.mode` says what it does. Every mode posts
// `{ ready, tid, threadId }` once it is set up, then answers each command with one message.
//
// "race": answers `open` and `release` as race-participant.ts says.
//
// "hold": opens the channel with every record going to disk, sends `count` records and reports
// when they are written; on `drain`, closes the channel and answers with every record it read back
// (and the error its readable met, if any).
//
// "open": on `open`, tries to open the channel once and answers with the error code and message
// (or `owner: true`, and then closes it).
//
// "spill": opens the channel with every record going to disk and writes without end, until it is
// terminated; posts `spilling` once its first segment is sealed.
//
// "produce": posts `count` records `{ worker, seq }` to the main thread, in batches, then `done`.
import { parentPort, threadId, workerData } from 'node:worker_threads';
import { createHopperStreams } from '../../lib/index.js';
import { collect } from './index.js';
import { raceParticipant } from './race-participant.js';
import { osThreadId } from './threads.js';

interface Data {
  mode: 'race' | 'hold' | 'open' | 'spill' | 'produce';
  dataDir: string;
  name: string;
  count?: number;
  worker?: number;
}

type Command = { op: 'open'; round?: number } | { op: 'release' } | { op: 'drain' };

const { mode, dataDir, name, count = 0, worker = threadId } = workerData as Data;
const port = parentPort!;
const post = (message: object): void => port.postMessage(message);

if (mode === 'race') {
  const participant = raceParticipant(dataDir, name, post);
  port.on('message', (command: Command) => {
    if (command.op === 'open' || command.op === 'release') participant(command);
  });
} else if (mode === 'hold') {
  const hopper = createHopperStreams<string>({ dataDir, name, maxMemoryBytes: 0, maxSegmentBytes: 2_000 });
  let failure: string | undefined;
  hopper.readable.on('error', (err) => {
    failure = err.message;
  });
  for (let i = 0; i < count; i++) hopper.send(`record ${i}`);
  port.on('message', async (command: Command) => {
    if (command.op !== 'drain') return;
    const closing = hopper.close();
    const records = await collect<string>(hopper.readable).catch((err: Error) => {
      failure = err.message;
      return [];
    });
    await closing.catch(() => undefined);
    post({ records, failure });
  });
  // Reported once the records are on disk (blocks are written in the background).
  const whenWritten = (): void => {
    if (hopper.stats().pendingDiskBytes > 0) setImmediate(whenWritten);
    else post({ written: true, segments: hopper.stats().segments });
  };
  setImmediate(whenWritten);
} else if (mode === 'open') {
  port.on('message', (command: Command) => {
    if (command.op !== 'open') return;
    try {
      createHopperStreams({ dataDir, name }).destroy();
      post({ owner: true });
    } catch (err) {
      const e = err as Error & { code?: string };
      post({ owner: false, code: e.code ?? e.name, message: e.message });
    }
  });
} else if (mode === 'spill') {
  const hopper = createHopperStreams<string>({ dataDir, name, maxMemoryBytes: 0, maxSegmentBytes: 2_000 });
  hopper.once('segment', () => post({ spilling: true }));
  let i = 0;
  const write = (): void => {
    for (let k = 0; k < 20; k++) hopper.send(`record ${i++} ${'x'.repeat(i % 50)}`);
    setImmediate(write);
  };
  write();
} else if (mode === 'produce') {
  for (let seq = 0; seq < count; seq += 100) {
    post({ records: Array.from({ length: Math.min(100, count - seq) }, (_, k) => ({ worker, seq: seq + k })) });
  }
  post({ done: true });
}

post({ ready: true, tid: osThreadId(), threadId });
