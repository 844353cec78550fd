import test from 'ava';
import fc from 'fast-check';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHopperStream, createHopperStreams, HopperError } from '../lib/index.js';
import { collect, nextTurn, plain, point, pointSchema, sleep, tempDataDir, type Point } from './helpers/index.js';

// Ports of hopper's own tests (round trip, ingress shedding, concurrent sender and receiver),
// over budgets small enough that tier switches, seals and deletes happen all the time.

const schemalessRecord = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  fc.record({ id: fc.integer(), name: fc.string({ maxLength: 10 }), tags: fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }) }, { noNullPrototype: true }),
  fc.array(fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)), { maxLength: 5 }),
  fc.integer(),
);

test('createHopperStreams() - round trip keeps order across memory and disk (property)', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  await fc.assert(
    fc.asyncProperty(
      fc.array(schemalessRecord, { maxLength: 300 }),
      fc.integer({ min: 0, max: 1500 }),
      fc.integer({ min: 1, max: 2000 }),
      fc.constantFrom<'null' | 'deflate'>('null', 'deflate'),
      // After each write, read this many records (cycled): reads interleave with writes, so
      // records go back to memory between disk runs.
      fc.array(fc.nat({ max: 3 }), { minLength: 1, maxLength: 10 }),
      async (records, maxMemoryBytes, maxSegmentBytes, codec, readPattern) => {
        const hopper = createHopperStreams<unknown>({ dataDir: dir.dataDir, name: 'prop', maxMemoryBytes, maxSegmentBytes, codec });
        const iterator = hopper.readable[Symbol.asyncIterator]();
        const out: unknown[] = [];
        for (let i = 0; i < records.length; i++) {
          hopper.send(records[i]);
          for (let r = readPattern[i % readPattern.length]!; r > 0 && out.length <= i; r--) {
            out.push((await iterator.next()).value);
          }
          t.true(hopper.stats().memoryBytes <= maxMemoryBytes);
        }
        const closed = hopper.close();
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) out.push(next.value);
        await closed;
        t.deepEqual(out, records);
        t.deepEqual(dir.files(), []);
      },
    ),
    { numRuns: 60 },
  );
});

test('createHopperStreams() - schema round trip keeps order with almost everything spilled (property)', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 3000 }),
      fc.integer({ min: 0, max: 300 }),
      fc.integer({ min: 1, max: 4000 }),
      async (count, maxMemoryBytes, maxSegmentBytes) => {
        const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, name: 'schema', schema: pointSchema, maxMemoryBytes, maxSegmentBytes });
        const sent: Point[] = [];
        for (let i = 0; i < count; i++) {
          const record = point(i);
          sent.push(record);
          hopper.send(record);
        }
        const closed = hopper.close();
        const out = await collect<Point>(hopper.readable);
        await closed;
        t.deepEqual(plain(out), sent);
        if (count > 0 && maxMemoryBytes < 50) t.is(hopper.stats().spilled, count);
      },
    ),
    { numRuns: 40 },
  );
});

test('.send() - ingress shedding with maxSegments 2 and onFull error: shed records come back, accepted ones arrive in order', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 2_000,
    maxSegmentBytes: 4_000,
    maxSegments: 2,
    onFull: 'error',
  });
  const accepted: Point[] = [];
  const shed: Point[] = [];
  const fullEvents: unknown[] = [];
  hopper.on('full', (event) => fullEvents.push(event.record));
  for (let i = 0; i < 5_000; i++) {
    const record = point(i);
    try {
      hopper.send(record);
      accepted.push(record);
    } catch (err) {
      t.true(HopperError.is(err, 'ERR_HOPPER_FULL'));
      t.is((err as HopperError).record, record);
      shed.push(record);
    }
    t.true(hopper.stats().segments <= 2);
  }
  t.true(shed.length > 0, 'the caps were reached');
  t.true(accepted.length > 100, 'memory and two segments took records');
  t.deepEqual(fullEvents, shed);
  t.is(accepted.length + shed.length, 5_000);
  const closed = hopper.close();
  const out = await collect<Point>(hopper.readable);
  await closed;
  t.deepEqual(plain(out), accepted);
});

test('createHopperStreams() - a producer and a consumer run concurrently with random consumer stalls', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
      let state = seed;
      const random = (): number => {
        state = (state * 1103515245 + 12345) % 2 ** 31;
        return state / 2 ** 31;
      };
      const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 1_500, maxSegmentBytes: 3_000 });
      const total = 4_000;
      const producer = (async () => {
        for (let i = 0; i < total; i++) {
          t.true(hopper.writable.write(point(i)), 'no backpressure before the cap');
          if (random() < 0.01) await nextTurn();
        }
        hopper.writable.end();
      })();
      let expected = 0;
      for await (const record of hopper.readable) {
        t.is(record.seq, expected++);
        const roll = random();
        if (roll < 0.002) await sleep(2);
        else if (roll < 0.02) await nextTurn();
      }
      await producer;
      t.is(expected, total);
      t.true(hopper.stats().spilled > 0);
      t.deepEqual(dir.files(), []);
    }),
    { numRuns: 8 },
  );
});

for (const shape of ['pair', 'Duplex'] as const) {
  test(`${shape === 'pair' ? 'createHopperStreams()' : 'createHopperStream()'} - a flowing consumer (pipeline to a sink that stalls at random) gets every record once, in order, while the producer writes (property)`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 16 }), async (seed, sinkHighWaterMark) => {
        let state = seed;
        const random = (): number => {
          state = (state * 1103515245 + 12345) % 2 ** 31;
          return state / 2 ** 31;
        };
        const options = { dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 1_500, maxSegmentBytes: 3_000 };
        const hopper = shape === 'pair' ? createHopperStreams<Point>(options) : undefined;
        const duplex = shape === 'Duplex' ? createHopperStream<Point>(options) : undefined;
        const writable = hopper?.writable ?? duplex!;
        const readable = hopper?.readable ?? duplex!;
        const total = 3_000;
        let expected = 0;
        let outOfOrder = 0;
        const sink = new Writable({
          objectMode: true,
          highWaterMark: sinkHighWaterMark,
          write(record: Point, _encoding, callback) {
            if (record.seq !== expected++) outOfOrder++;
            const roll = random();
            if (roll < 0.002) setTimeout(callback, 2);
            else if (roll < 0.03) setImmediate(callback);
            else callback();
          },
        });
        const producer = (async () => {
          // A backlog first, so that the consumer starts with records waiting in memory and on disk.
          const backlog = Math.floor(random() * 1_000);
          for (let i = 0; i < total; i++) {
            t.true(writable.write(point(i)), 'no backpressure before the cap');
            if (i >= backlog && random() < 0.01) await nextTurn();
          }
          writable.end();
        })();
        await Promise.all([producer, pipeline(readable, sink)]);
        t.is(outOfOrder, 0);
        t.is(expected, total);
        t.deepEqual(dir.files(), []);
      }),
      { numRuns: 8 },
    );
  });
}
