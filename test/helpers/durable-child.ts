// One round of test/durable-crash.ts: a real process that owns a durable channel, produces into
// it and consumes from it with `ack: 'manual'`, logging each event to its own log file with
// writeSync (see test/helpers/crash-checker.ts for the lines). The parent kills it with SIGKILL at
// a random instant; the final round is not killed: it drains the channel, acknowledges everything
// and closes. Argument: the round's settings as JSON.
import './end-with-parent.js';
import fs from 'node:fs';
import { createHopperStreams, type HopperOptions } from '../../lib/index.js';
import { padFor, ROUND_IDS } from './crash-checker.js';
import { seededRandom } from './power-cut-fs.js';

interface Settings {
  dataDir: string;
  name: string;
  fsync: 'always' | 'batch' | 'never';
  round: number;
  seed: number;
  final: boolean;
  log: string;
}

interface Entry {
  id: number;
  pad: string;
}

const settings = JSON.parse(process.argv[2]!) as Settings;
const logFd = fs.openSync(settings.log, 'a');
const line = (text: string): void => {
  fs.writeSync(logFd, `${text}\n`);
};
const random = seededRandom(settings.seed);

const entrySchema = {
  type: 'record',
  name: 'Entry',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'pad', type: 'string' },
  ],
} as const;

// The durable API of issue 24 (durable, fsync, ack; ack(), flush()).
const options = {
  dataDir: settings.dataDir,
  name: settings.name,
  schema: entrySchema,
  durable: true,
  fsync: settings.fsync,
  fsyncIntervalMs: 10,
  ack: 'manual',
  maxSegmentBytes: 64 * 1024,
  maxMemoryBytes: 256 * 1024,
} as unknown as HopperOptions;
const hopper = createHopperStreams<Entry>(options) as ReturnType<typeof createHopperStreams<Entry>> & {
  ack(count: number): void;
  flush(): Promise<void>;
};
line(`R ${JSON.stringify(hopper.stats())}`);

const waiting: number[] = []; // delivered, not acknowledged, oldest first
let lastAcked = -1;
let flushing = false;

hopper.readable.on('data', (entry: Entry) => {
  line(`D ${entry.id}`);
  if (entry.pad !== padFor(entry.id)) line(`BAD ${entry.id} pad ${JSON.stringify(entry.pad).slice(0, 40)}`);
  waiting.push(entry.id);
  if (settings.final) return;
  if (random() < 0.08) {
    const count = 1 + Math.floor(random() * waiting.length);
    const ids = waiting.splice(0, count);
    line(`A ${ids.join(' ')}`); // before ack(): a crash in between only adds a redelivery
    hopper.ack(count);
    lastAcked = ids.at(-1)!;
  }
  if (!flushing && random() < 0.01) {
    flushing = true;
    const upTo = lastAcked;
    hopper.flush().then(
      () => {
        line(`F ${upTo}`);
        flushing = false;
      },
      (err: Error) => line(`N flush failed: ${err.message}`),
    );
  }
  if (random() < 0.02) {
    // A slow consumer now and then: records pile up on disk.
    hopper.readable.pause();
    setTimeout(() => hopper.readable.resume(), 1 + Math.floor(random() * 30));
  }
});

if (settings.final) {
  // Everything the channel holds at open comes out first (stats().recovered): read it, acknowledge
  // it as it comes, then flush the acknowledgements and close.
  const expected = hopper.stats().recovered;
  let count = 0;
  const finish = (): void => {
    hopper
      .flush()
      .then(() => hopper.close())
      .then(() => {
        line(`E ${count}`);
        process.stdout.write('done\n');
      })
      .catch((err: Error) => {
        line(`N final round failed: ${err.stack}`);
        process.exitCode = 1;
      });
  };
  hopper.readable.on('data', () => {
    hopper.ack(waiting.length);
    waiting.length = 0;
    if (++count === expected) finish();
  });
  hopper.readable.on('error', (err) => line(`N readable failed: ${err.stack}`));
  if (expected === 0) finish();
} else {
  const base = settings.round * ROUND_IDS;
  let next = 0;
  const produce = (): void => {
    for (let k = 0; k < 20; k++) {
      const id = base + next++;
      hopper.writable.write({ id, pad: padFor(id) }, (err) => {
        if (err) line(`N write ${id} failed: ${err.message}`);
        else line(`W ${id}`);
      });
    }
    setTimeout(produce, 1);
  };
  produce();
}
process.stdout.write('ready\n');
