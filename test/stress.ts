import { once } from 'node:events';
import test from 'ava';
import { createHopperStreams } from '../lib/index.js';
import { nextTurn, sleep, tempDataDir } from './helpers/index.js';

interface Tagged {
  producer: number;
  n: number;
}

const schema = {
  type: 'record',
  name: 'Tagged',
  fields: [
    { name: 'producer', type: 'int' },
    { name: 'n', type: 'int' },
  ],
};

test('stress - 8 concurrent senders, 1,000,000 records, a consumer with random stalls: all arrive, per-sender order holds, memory stays in budget', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const producers = 8;
  const perProducer = 125_000;
  const maxMemoryBytes = 512 * 1024;
  const hopper = createHopperStreams<Tagged>({ dataDir: dir.dataDir, schema, maxMemoryBytes, maxSegmentBytes: 4 * 1024 * 1024 });
  let peakMemoryBytes = 0;
  const sample = (): void => {
    peakMemoryBytes = Math.max(peakMemoryBytes, hopper.stats().memoryBytes);
  };
  hopper.on('spill', sample);
  hopper.on('segment', sample);

  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };

  const produce = async (producer: number): Promise<void> => {
    const sender = hopper.sender();
    for (let n = 0; n < perProducer; n++) {
      if (!sender.write({ producer, n })) await once(sender, 'drain');
      // Producers take turns at random moments, so their writes interleave.
      if (random() < 0.002) await nextTurn();
    }
    sender.end();
  };
  const producing = Promise.all(Array.from({ length: producers }, (_, p) => produce(p)));
  hopper.writable.end();

  const lastSeen = new Array<number>(producers).fill(-1);
  const counts = new Array<number>(producers).fill(0);
  let outOfOrder = 0;
  let total = 0;
  for await (const record of hopper.readable) {
    if (record.n !== lastSeen[record.producer]! + 1) outOfOrder++;
    lastSeen[record.producer] = record.n;
    counts[record.producer]!++;
    if (++total % 10_000 === 0) sample();
    const roll = random();
    if (roll < 0.0002) await sleep(2);
    else if (roll < 0.002) await nextTurn();
  }
  await producing;

  t.is(total, producers * perProducer);
  t.deepEqual(counts, new Array(producers).fill(perProducer), 'the multiset out equals the multiset in');
  t.is(outOfOrder, 0, 'each sender’s records come out in the order it wrote them');
  t.true(peakMemoryBytes <= maxMemoryBytes, `peak ${peakMemoryBytes} of ${maxMemoryBytes}`);
  t.true(hopper.stats().spilled > 100_000, `${hopper.stats().spilled} records went through disk`);
  t.deepEqual(dir.files(), [], 'no file is left behind');
});
