import assert from 'node:assert/strict';
import path from 'node:path';
import test from 'ava';
import { createHopperStreams, type DropEvent } from '../lib/index.js';
import { collect, nextTurn, plain, point, pointSchema, tempDataDir, type Point } from './helpers/index.js';

test("onFull 'drop-newest' - a record that finds no room is dropped, counted and announced; writes never wait", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 500,
    maxSegmentBytes: 2_000,
    maxSegments: 2,
    onFull: 'drop-newest',
  });
  const drops: DropEvent[] = [];
  hopper.on('drop', (event) => drops.push(event));
  let calledBack = 0;
  for (let i = 0; i < 1_000; i++) {
    t.true(
      hopper.writable.write(point(i), (err) => {
        t.falsy(err);
        calledBack++;
      }),
    );
  }
  for (let i = 1_000; i < 1_100; i++) hopper.send(point(i));
  await nextTurn();
  t.is(calledBack, 1_000);
  const { recordsIn, dropped } = hopper.stats();
  t.true(dropped > 0);
  t.is(recordsIn + dropped, 1_100);
  t.is(drops.length, dropped);
  t.true(drops.every((event) => event.count === 1 && event.policy === 'drop-newest' && /maxSegments \(2\)/.test(event.reason)));
  hopper.writable.end();
  const out = await collect<Point>(hopper.readable);
  t.is(out.length, recordsIn);
  // What was kept is the oldest: a prefix of what was written.
  t.deepEqual(
    plain(out),
    Array.from({ length: recordsIn }, (_, i) => point(i)),
  );
});

test("onFull 'drop-oldest' - the oldest sealed segment not being read is deleted to make room, its records counted as dropped", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 300,
    maxSegmentBytes: 1_000,
    maxSegments: 3,
    onFull: 'drop-oldest',
  });
  const drops: DropEvent[] = [];
  hopper.on('drop', (event) => drops.push(event));
  const total = 2_000;
  for (let i = 0; i < total; i++) hopper.send(point(i));
  t.true(hopper.stats().segments <= 3);
  const { dropped, recordsIn, memoryRecords } = hopper.stats();
  t.true(memoryRecords > 0);
  t.is(recordsIn, total, 'every incoming record was taken');
  t.true(drops.length > 0);
  t.is(
    drops.reduce((sum, event) => sum + event.count, 0),
    dropped,
  );
  t.true(drops.every((event) => event.policy === 'drop-oldest' && /^\d{12}\.avro$/.test(path.basename(event.file ?? ''))));
  hopper.writable.end();
  const out = (await collect<Point>(hopper.readable)).map((record) => record.seq);
  t.is(out.length, total - dropped);
  // In order, with the dropped records missing as whole runs of the oldest disk records.
  t.true(out.every((seq, i) => i === 0 || seq > out[i - 1]!));
  t.deepEqual(
    out.slice(-50),
    Array.from({ length: 50 }, (_, i) => total - 50 + i),
    'the newest records are all there',
  );
  t.deepEqual(
    out.slice(0, memoryRecords),
    Array.from({ length: memoryRecords }, (_, i) => i),
    'records held in memory are never dropped',
  );
  t.deepEqual(dir.files(), []);
});

test("onFull 'drop-oldest' - while the reader is inside a segment, an older-than-the-rest sealed one goes instead", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 0,
    maxSegmentBytes: 1_000,
    maxSegments: 2,
    onFull: 'drop-oldest',
  });
  // A dropped incoming record (no segment could go) was never accepted; a dropped segment's were.
  let segmentDrops = 0;
  hopper.on('drop', (event) => {
    if (event.file !== undefined) segmentDrops += event.count;
  });
  let i = 0;
  while (hopper.stats().segments < 2 || hopper.stats().dropped === 0) hopper.send(point(i++));
  const iterator = hopper.readable[Symbol.asyncIterator]();
  const first = (await iterator.next()).value as Point;
  // The reader now holds the oldest segment open: a drop must take the next sealed one, or nothing.
  const before = hopper.stats().dropped;
  for (let k = 0; k < 200; k++) hopper.send(point(i++));
  t.true(hopper.stats().dropped >= before);
  hopper.writable.end();
  const rest: number[] = [first.seq];
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) rest.push((next.value as Point).seq);
  t.true(
    rest.every((seq, k) => k === 0 || seq > rest[k - 1]!),
    'still in order',
  );
  t.is(rest.length, hopper.stats().recordsIn - segmentDrops);
});

test('onFull drop policies - what comes out is, in order, what went in less what was counted as dropped (property)', async (t) => {
  const fc = (await import('fast-check')).default;
  const dir = tempDataDir();
  t.teardown(dir.remove);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<'drop-newest' | 'drop-oldest'>('drop-newest', 'drop-oldest'),
      fc.integer({ min: 0, max: 400 }),
      fc.integer({ min: 1, max: 1_500 }),
      fc.integer({ min: 1, max: 4 }),
      fc.array(fc.nat({ max: 40 }), { minLength: 1, maxLength: 30 }),
      async (onFull, maxMemoryBytes, maxSegmentBytes, maxSegments, pattern) => {
        const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes, maxSegmentBytes, maxSegments, onFull });
        const iterator = hopper.readable[Symbol.asyncIterator]();
        let segmentDrops = 0;
        let incomingDrops = 0;
        hopper.on('drop', (event) => {
          if (event.file === undefined) incomingDrops += event.count;
          else segmentDrops += event.count;
        });
        const out: number[] = [];
        let seq = 0;
        for (const [k, burst] of pattern.entries()) {
          for (let i = 0; i < burst; i++) hopper.send(point(seq++));
          // Read a few between bursts, as long as records are there to read.
          for (let r = k % 3; r > 0 && hopper.stats().recordsIn - hopper.stats().dropped > out.length; r--) {
            out.push(((await iterator.next()).value as Point).seq);
          }
        }
        hopper.writable.end();
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) out.push((next.value as Point).seq);
        const { recordsIn, dropped } = hopper.stats();
        // Plain asserts throw, so fast-check sees a failure and shrinks it to a small counterexample.
        assert.ok(
          out.every((value, i) => i === 0 || value > out[i - 1]!),
          'in order',
        );
        assert.equal(segmentDrops + incomingDrops, dropped);
        if (onFull === 'drop-newest') assert.equal(segmentDrops, 0);
        // A dropped incoming record was never accepted; a dropped segment's records were.
        assert.equal(recordsIn + incomingDrops, seq);
        assert.equal(out.length, recordsIn - segmentDrops);
        await nextTurn();
        assert.deepEqual(dir.files(), []);
      },
    ),
    { numRuns: 80 },
  );
  t.pass();
});
