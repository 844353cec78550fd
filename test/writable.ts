import { once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import fc from 'fast-check';
import { createHopperStreams, HopperError } from '../lib/index.js';
import { collect, nextTurn, plain, point, pointSchema, tempDataDir, type Point, readToFailure } from './helpers/index.js';
import { within } from './helpers/wait.js';

test('.writable - write() returns true and calls back for writes far beyond the memory budget while the reader is paused', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 10_000 });
  const total = 50_000;
  let calledBack = 0;
  for (let i = 0; i < total; i++) {
    const ok = hopper.writable.write(point(i), (err) => {
      t.falsy(err);
      calledBack++;
    });
    if (!ok) t.fail(`write ${i} returned false`);
  }
  await nextTurn();
  t.is(calledBack, total, 'every callback fired without the reader reading anything');
  const stats = hopper.stats();
  t.is(stats.recordsOut, 0);
  t.is(stats.recordsIn, total);
  t.true(stats.memoryBytes <= 10_000);
  t.true(stats.spilled > total * 0.9);
  const closed = hopper.close();
  const out = await collect<Point>(hopper.readable);
  await closed;
  t.is(out.length, total);
  t.true(out.every((record, i) => record.seq === i));
});

test('.writable - source.pipe(writable) drains a fast source at full speed', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 5_000, maxSegmentBytes: 50_000 });
  const total = 20_000;
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < total; i++) yield point(i);
    })(),
  );
  source.pipe(hopper.writable);
  await once(hopper.writable, 'finish');
  t.is(hopper.stats().recordsIn, total, 'the source finished before anything was read');
  t.is(hopper.stats().recordsOut, 0);
  const out = await collect<Point>(hopper.readable);
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: total }, (_, i) => i),
  );
  t.deepEqual(dir.files(), []);
});

test('.readable - a synchronous source piped through to a consumer that keeps up goes straight from write() to the consumer', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 4_096 });
  const total = 50_000;
  const out: number[] = [];
  const sink = new Writable({
    objectMode: true,
    write(record: Point, _encoding, callback) {
      out.push(record.seq);
      callback();
    },
  });
  Readable.from(
    (function* () {
      for (let i = 0; i < total; i++) yield point(i);
    })(),
  ).pipe(hopper.writable);
  hopper.readable.pipe(sink);
  await once(sink, 'finish');
  t.deepEqual(
    out,
    Array.from({ length: total }, (_, i) => i),
  );
  t.is(hopper.stats().spilled, 0);
});

test(".writable - onFull 'block' holds the callback of the write that meets the cap until the reader frees room", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 500,
    maxSegmentBytes: 1_000,
    maxSegments: 2,
    onFull: 'block',
  });
  let fullEvents = 0;
  hopper.on('full', () => fullEvents++);
  const callbacks: number[] = [];
  let i = 0;
  // Write until write() asks us to wait: the write that met the cap is held, later ones queue in the Writable.
  while (hopper.writable.write(point(i), () => callbacks.push(i))) i++;
  const written = i + 1;
  await nextTurn();
  t.true(fullEvents >= 1);
  t.true(callbacks.length < written, 'the write that met the cap has not called back');
  t.is(hopper.stats().recordsIn, callbacks.length);
  const drained = once(hopper.writable, 'drain');
  const iterator = hopper.readable[Symbol.asyncIterator]();
  const out: Point[] = [];
  while (out.length < written) out.push((await iterator.next()).value as Point);
  await drained;
  await nextTurn();
  t.is(callbacks.length, written, 'reading freed room for every held write');
  t.is(hopper.stats().recordsIn, written);
  hopper.writable.end();
  for (let next = await iterator.next(); !next.done; next = await iterator.next()) out.push(next.value as Point);
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: written }, (_, k) => k),
  );
});

test(".writable - onFull 'block' with maxSegments: 1 and no memory: the held write goes in once the reader has read the only segment", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 0,
    maxSegmentBytes: 1_000,
    maxSegments: 1,
    onFull: 'block',
  });
  const total = 300;
  let written = 0;
  const source = Readable.from(
    (function* () {
      while (written < total) yield point(written++);
    })(),
  );
  source.pipe(hopper.writable);
  // The consumer starts only once writes are held: the one segment is full and unread.
  await once(hopper, 'full');
  t.true(written < total, 'the cap held the source back');
  const out = (await collect(hopper.readable)) as Point[];
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: total }, (_, k) => k),
  );
  t.is(hopper.stats().segments, 0);
});

test(".writable - onFull 'block' under tight caps and a consumer that stalls at random, durable or not: every record arrives, in order, and nothing hangs (property)", async (t) => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        maxMemoryBytes: fc.constantFrom(0, 400, 2_000),
        maxSegmentBytes: fc.integer({ min: 600, max: 4_000 }),
        maxSegments: fc.integer({ min: 1, max: 3 }),
        records: fc.integer({ min: 1, max: 300 }),
        // Turns of the event loop the consumer waits before taking each next record, in a cycle.
        stalls: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 20, max: 60 })), { minLength: 1, maxLength: 12 }),
        startLate: fc.boolean(),
        durable: fc.boolean(),
      }),
      async ({ maxMemoryBytes, maxSegmentBytes, maxSegments, records, stalls, startLate, durable }) => {
        const dir = tempDataDir();
        try {
          const hopper = createHopperStreams<Point>({
            dataDir: dir.dataDir,
            schema: pointSchema,
            maxMemoryBytes,
            maxSegmentBytes,
            maxSegments,
            onFull: 'block',
            ...(durable ? { durable: true, name: 'durable' } : {}),
          });
          const out: number[] = [];
          let taken = 0;
          const sink = new Writable({
            objectMode: true,
            write(record: Point, _encoding, callback) {
              out.push(record.seq);
              let turns = stalls[taken++ % stalls.length]!;
              const step = (): void => {
                if (turns-- > 0) setImmediate(step);
                else callback();
              };
              step();
            },
          });
          const written = pipeline(
            Readable.from(
              (function* () {
                for (let i = 0; i < records; i++) yield point(i);
              })(),
            ),
            hopper.writable,
          );
          // The consumer starts once a write is held, or once everything is written (the caps never met).
          if (startLate) await Promise.race([once(hopper, 'full'), written]);
          await within(Promise.all([written, pipeline(hopper.readable, sink)]), `${records} records through the hopper`);
          t.deepEqual(
            out,
            Array.from({ length: records }, (_, k) => k),
          );
          // A segment read through may still be on its way out (its unlink on the thread pool):
          // close() resolves once nothing runs on the disk any more.
          await hopper.close();
          t.is(hopper.stats().segments, 0);
        } finally {
          dir.remove();
        }
      },
    ),
    // A hang is caught by the safety net; shrinking would wait for it again at every step.
    { numRuns: 40, endOnFailure: true },
  );
});

test(".writable - onFull 'error' fails the write with ERR_HOPPER_FULL carrying the record; accepted records are still delivered", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({
    dataDir: dir.dataDir,
    schema: pointSchema,
    maxMemoryBytes: 500,
    maxSegmentBytes: 1_000,
    maxSegments: 1,
    onFull: 'error',
  });
  const errored = once(hopper.writable, 'error');
  let refused: Point | undefined;
  let accepted = 0;
  for (let i = 0; i < 1_000; i++) {
    const record = point(i);
    const more = hopper.writable.write(record, (err) => {
      if (!err) accepted++;
      else if (refused === undefined) refused = record;
    });
    if (!more) break;
  }
  const [err] = (await errored) as [HopperError];
  t.is(err.code, 'ERR_HOPPER_FULL');
  t.is(err.record, refused);
  t.regex(err.message, /maxSegments \(1\)/);
  t.is(err.option, 'maxSegments', 'the cap is named as a field too');
  const out = await collect<Point>(hopper.readable);
  t.is(out.length, accepted);
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: accepted }, (_, k) => k),
  );
  t.deepEqual(dir.files(), []);
});

test('.writable - an invalid record fails its write with ERR_HOPPER_INVALID_RECORD naming the field; earlier records are delivered', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 200 });
  for (let i = 0; i < 50; i++) hopper.writable.write(point(i));
  hopper.writable.write({ seq: 50, label: 7, score: 1 } as unknown as Point);
  const [err] = (await once(hopper.writable, 'error')) as [HopperError];
  t.is(err.code, 'ERR_HOPPER_INVALID_RECORD');
  t.deepEqual(err.path, ['label']);
  t.regex(err.message, /field `label` expected "string", got 7 \(number\)/);
  t.true(hopper.writable.destroyed, 'like any Node Writable, a failed write ends the writable');
  const out = await collect<Point>(hopper.readable);
  t.deepEqual(
    plain(out),
    Array.from({ length: 50 }, (_, i) => point(i)),
  );
});

test("events - 'spill' fires once when records start going to disk", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 100 });
  const spills: number[] = [];
  hopper.on('spill', (event) => spills.push(event.recordsIn));
  for (let i = 0; i < 20; i++) hopper.send('0123456789');
  t.deepEqual(spills, [10], 'ten 10-byte strings fill 100 bytes; the 11th starts the one run');
  t.is(hopper.stats().spilled, 10);
  t.is(hopper.stats().memoryBytes, 100);
  hopper.destroy();
});

test("events - 'spill' fires once per spill, however often the reader frees memory meanwhile; 'caughtUp' when the disk backlog is empty again, and they alternate", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 100 });
  const events: string[] = [];
  hopper.on('spill', () => events.push('spill'));
  hopper.on('caughtUp', (event) => {
    events.push('caughtUp');
    t.is(event.recordsOut, hopper.stats().recordsOut);
  });
  const readAll = async (): Promise<void> => {
    hopper.readable.resume();
    while (hopper.stats().recordsOut < hopper.stats().recordsIn) await nextTurn();
    hopper.readable.pause();
  };
  // One burst: the reader takes a few records now and then, so memory frees room and the writes
  // go back to memory and on to disk again, while the disk backlog never empties.
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 20; i++) hopper.send('0123456789');
    t.true(hopper.stats().diskRecords > 0);
    hopper.readable.read();
  }
  t.deepEqual(events, ['spill'], 'one burst, one spill');
  t.true(hopper.stats().spilled > 20, 'records went to disk in several runs');
  await readAll();
  t.deepEqual(events, ['spill', 'caughtUp']);
  // The paused readable takes some into its own buffer first, then memory fills, then the disk.
  for (let i = 0; i < 60; i++) hopper.send('0123456789');
  await readAll();
  t.deepEqual(events, ['spill', 'caughtUp', 'spill', 'caughtUp']);
  t.like(hopper.stats(), { spills: 2, caughtUps: 2, diskRecords: 0 });
  hopper.destroy();
});

test('.send() - an invalid record throws at once and the channel keeps working', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema });
  hopper.send(point(0));
  const err = t.throws(() => hopper.send({ seq: 'one' } as unknown as Point), { instanceOf: HopperError });
  t.is(err?.code, 'ERR_HOPPER_INVALID_RECORD');
  t.deepEqual(err?.path, ['seq']);
  hopper.send(point(1));
  const closed = hopper.close();
  t.deepEqual(plain(await collect(hopper.readable)), [point(0), point(1)]);
  await closed;
});

for (const [tier, maxMemoryBytes] of [
  ['in memory', 1024 ** 2],
  ['on disk', 1_000],
] as const) {
  test(`.writable - pipeline() with a source that throws: every record accepted is delivered ${tier}, then ERR_HOPPER_PRODUCER_FAILED with the source's error as cause`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes, maxSegmentBytes: 2_000 });
    const failure = new Error('bad line 501');
    async function* source(): AsyncGenerator<Point> {
      for (let i = 0; i < 500; i++) yield point(i);
      throw failure;
    }
    await t.throwsAsync(pipeline(source(), hopper.writable), { is: failure });
    t.true(hopper.writable.destroyed);
    t.is(hopper.stats().recordsIn, 500);
    if (tier === 'on disk') t.true(hopper.stats().diskRecords > 0, 'the backlog is on disk');
    else t.is(hopper.stats().memoryRecords, 500, 'the backlog is in memory');
    t.throws(() => hopper.send(point(500)), { code: 'ERR_STREAM_WRITE_AFTER_END' } as never);
    const closing = hopper.close();
    const { records, error } = await readToFailure(hopper.readable);
    t.deepEqual(
      plain(records),
      Array.from({ length: 500 }, (_, i) => point(i)),
    );
    t.true(HopperError.is(error, 'ERR_HOPPER_PRODUCER_FAILED'));
    t.is((error as Error).cause, failure);
    await t.throwsAsync(closing, { is: error as Error });
    t.deepEqual(dir.files(), [], 'the files are removed');
  });
}
