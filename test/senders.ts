import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { createHopperStreams, type HopperError } from '../lib/index.js';
import { collect, nextTurn, tempDataDir } from './helpers/index.js';

interface Tagged {
  from: string;
  n: number;
}

test('.sender() - many producers: per-sender order holds, the global order is the order writes were accepted', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Tagged>({ dataDir: dir.dataDir, maxMemoryBytes: 2_000, maxSegmentBytes: 5_000 });
  const accepted: string[] = [];
  const producers = ['a', 'b', 'c', 'd'].map((name) => ({ name, writable: name === 'a' ? hopper.writable : hopper.sender() }));
  // Interleave the producers' writes in a fixed pseudo-random order, recording the accept order.
  let state = 7;
  const counts = new Map(producers.map((p) => [p.name, 0]));
  for (let i = 0; i < 8_000; i++) {
    state = (state * 48271) % 2147483647;
    const producer = producers[state % producers.length]!;
    const n = counts.get(producer.name)!;
    counts.set(producer.name, n + 1);
    producer.writable.write({ from: producer.name, n });
    accepted.push(`${producer.name}${n}`);
    if (i % 1_000 === 0) hopper.send({ from: 'send', n: i });
    if (i % 1_000 === 0) accepted.push(`send${i}`);
  }
  const out: Tagged[] = [];
  const reading = (async () => {
    for await (const record of hopper.readable) out.push(record);
  })();
  // The readable ends only once every sender and the hopper's own writable have ended.
  for (const producer of producers.slice(0, 3)) producer.writable.end();
  await nextTurn();
  await new Promise((resolve) => setTimeout(resolve, 20));
  t.false(hopper.readable.readableEnded, 'one sender is still open');
  producers[3]!.writable.end();
  await reading;
  t.deepEqual(
    out.map((record) => `${record.from}${record.n}`),
    accepted,
  );
  t.true(hopper.stats().spilled > 0);
  t.deepEqual(dir.files(), []);
});

test('.sender() - an error on one sender ends that sender only; the others and the readable go on, nothing accepted is lost', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Tagged>({
    dataDir: dir.dataDir,
    maxMemoryBytes: 1_000,
    schema: {
      type: 'record',
      name: 'Tagged',
      fields: [
        { name: 'from', type: 'string' },
        { name: 'n', type: 'int' },
      ],
    },
  });
  const good = hopper.sender();
  const failing = hopper.sender();
  const broken = hopper.sender();
  for (let n = 0; n < 100; n++) {
    good.write({ from: 'good', n });
    failing.write({ from: 'failing', n });
    broken.write({ from: 'broken', n });
  }
  // A record the schema refuses fails its sender's write...
  failing.write({ from: 'failing', n: 'x' } as unknown as Tagged);
  const [refused] = (await once(failing, 'error')) as [HopperError];
  t.is(refused.code, 'ERR_HOPPER_INVALID_RECORD');
  // ...and a sender whose own source fails in a pipeline is destroyed with that error.
  const sourceFailure = new Error('upstream went away');
  await t.throwsAsync(
    pipeline(
      Readable.from(
        (async function* () {
          yield { from: 'broken', n: 100 };
          throw sourceFailure;
        })(),
      ),
      broken,
    ),
    { is: sourceFailure },
  );
  for (let n = 100; n < 200; n++) good.write({ from: 'good', n });
  hopper.send({ from: 'send', n: 0 });
  good.end();
  hopper.writable.end();
  const out = await collect<Tagged>(hopper.readable);
  const by = (from: string): number[] => out.filter((record) => record.from === from).map((record) => record.n);
  t.deepEqual(
    by('good'),
    Array.from({ length: 200 }, (_, n) => n),
  );
  t.deepEqual(
    by('failing'),
    Array.from({ length: 100 }, (_, n) => n),
  );
  t.deepEqual(
    by('broken'),
    Array.from({ length: 101 }, (_, n) => n),
  );
  t.deepEqual(by('send'), [0]);
});

test('.sender() - after every writer has ended, new senders and send() are refused with ERR_STREAM_WRITE_AFTER_END', async (t) => {
  const hopper = createHopperStreams<string>();
  hopper.writable.end();
  await once(hopper.writable, 'finish');
  t.throws(() => hopper.sender(), { code: 'ERR_STREAM_WRITE_AFTER_END' } as never);
  t.throws(() => hopper.send('late'), { code: 'ERR_STREAM_WRITE_AFTER_END' } as never);
  t.deepEqual(await collect(hopper.readable), []);
});

test(".sender() - with onFull 'block', held writes of all senders are admitted in the order they were made", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 40, maxSegmentBytes: 1, maxSegments: 1, onFull: 'block' });
  const a = hopper.sender();
  const b = hopper.sender();
  const order: string[] = [];
  for (let i = 0; i < 10; i++) {
    a.write(`a${i}-------`);
    order.push(`a${i}-------`);
    b.write(`b${i}-------`);
    order.push(`b${i}-------`);
  }
  a.end();
  b.end();
  hopper.writable.end();
  await nextTurn();
  t.true(hopper.stats().recordsIn < 20, 'some writes are held');
  t.deepEqual(await collect(hopper.readable), order);
});
