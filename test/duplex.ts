import fs from 'node:fs';
import { once } from 'node:events';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { createHopperStream, createHopperStreams, HopperError } from '../lib/index.js';
import { diskSettled, nextTurn, plain, point, pointSchema, sleep, tempDataDir, type Point } from './helpers/index.js';

function slowSink(out: unknown[], every = 500): Writable {
  return new Writable({
    objectMode: true,
    write(record, _encoding, callback) {
      out.push(record);
      if (out.length % every === 0) setTimeout(callback, 1);
      else callback();
    },
  });
}

test('createHopperStream() - pipeline(source, hopper, transform, sink) delivers every record in order without holding the source back', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 20_000, maxSegmentBytes: 100_000 });
  const total = 30_000;
  let sourceDoneAt = -1;
  const out: number[] = [];
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < total; i++) yield point(i);
    })(),
  );
  source.on('end', () => {
    sourceDoneAt = out.length;
  });
  await pipeline(
    source,
    hopper,
    new Transform({ objectMode: true, transform: (record: Point, _encoding, callback) => callback(null, record.seq) }),
    slowSink(out),
  );
  t.deepEqual(
    out,
    Array.from({ length: total }, (_, i) => i),
  );
  t.true(sourceDoneAt >= 0 && sourceDoneAt < total / 2, `the source ended when the sink had ${sourceDoneAt} records`);
  t.true(hopper.stats().spilled > 0);
  t.true(hopper.stats().memoryBytes <= 20_000);
  t.deepEqual(dir.files(), []);
});

test('createHopperStream() - an error at the source destroys the hopper, removes its files, and pipeline rejects with it', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0 });
  const failure = new Error('source broke');
  const source = Readable.from(
    (async function* () {
      for (let i = 0; i < 1_000; i++) yield point(i);
      await nextTurn();
      throw failure;
    })(),
  );
  await t.throwsAsync(pipeline(source, hopper, new PassThrough({ objectMode: true, highWaterMark: 1 })), { is: failure });
  t.true(hopper.destroyed);
  t.deepEqual(dir.files(), []);
});

test('createHopperStream() - an error at the sink destroys the hopper, removes its files, and pipeline rejects with it', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0 });
  const failure = new Error('sink broke');
  let seen = 0;
  const sink = new Writable({
    objectMode: true,
    write(_record, _encoding, callback) {
      callback(++seen === 100 ? failure : null);
    },
  });
  const source = Readable.from(Array.from({ length: 5_000 }, (_, i) => point(i)));
  await t.throwsAsync(pipeline(source, hopper, sink), { is: failure });
  t.true(hopper.destroyed);
  await nextTurn();
  t.deepEqual(dir.files(), []);
});

test('createHopperStream() - stats(), send() and the hopper events are on the Duplex', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<string>({ dataDir: dir.dataDir, maxMemoryBytes: 10, maxSegmentBytes: 1 });
  const events: string[] = [];
  hopper.on('spill', () => events.push('spill'));
  hopper.on('segment', (event) => events.push(event.action));
  hopper.write('0123456789');
  hopper.send('abc');
  hopper.end('def');
  await diskSettled(hopper);
  t.deepEqual(hopper.stats().recordsIn, 3);
  t.is(hopper.stats().spilled, 2);
  t.true(events.includes('spill') && events.includes('sealed'));
  const out: string[] = [];
  for await (const record of hopper) out.push(record);
  t.deepEqual(out, ['0123456789', 'abc', 'def']);
  t.true(events.includes('removed'));
  t.is(fs.existsSync(hopper.path), false);
});

test('createHopperStream() - a refused write fails the Duplex, as in any pipeline', async (t) => {
  const hopper = createHopperStream<Point>({ schema: pointSchema });
  const source = Readable.from([point(0), { seq: 'x' } as unknown as Point]);
  const err = await t.throwsAsync(pipeline(source, hopper, new PassThrough({ objectMode: true })), { instanceOf: HopperError });
  t.is(err?.code, 'ERR_HOPPER_INVALID_RECORD');
  t.true(hopper.destroyed);
});

for (const factory of ['createHopperStream', 'createHopperStreams'] as const) {
  test(`${factory}() - aborting the signal destroys the channel with an AbortError and removes its files`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const controller = new AbortController();
    const options = { dataDir: dir.dataDir, maxMemoryBytes: 0, signal: controller.signal };
    const readable = factory === 'createHopperStream' ? createHopperStream<string>(options) : createHopperStreams<string>(options).readable;
    const sender = factory === 'createHopperStream' ? (readable as ReturnType<typeof createHopperStream<string>>) : undefined;
    if (sender) sender.send('on disk');
    const errored = once(readable, 'error');
    controller.abort(new Error('operator said stop'));
    const [err] = (await errored) as [Error & { code?: string; cause?: Error }];
    t.is(err.name, 'AbortError');
    t.is(err.code, 'ABORT_ERR');
    t.is(err.cause?.message, 'operator said stop');
    t.deepEqual(dir.files(), []);
  });
}

test('createHopperStream() - a signal aborted before creation destroys the channel at once', async (t) => {
  const hopper = createHopperStream<string>({ signal: AbortSignal.abort() });
  const [err] = (await once(hopper, 'error').catch((e: unknown) => [e])) as [Error];
  t.is(err.name, 'AbortError');
  await sleep(1);
  t.false(fs.existsSync(hopper.path));
});

test('createHopperStream() - records written to the Duplex keep their fields from memory and from disk', async (t) => {
  const hopper = createHopperStream<Point>({ schema: pointSchema, maxMemoryBytes: 200 });
  const records = Array.from({ length: 50 }, (_, i) => point(i));
  const out: Point[] = [];
  await pipeline(Readable.from(records), hopper, slowSink(out, 10));
  t.deepEqual(plain(out), records);
});

test('createHopperStream() - a synchronous source through to a consumer that keeps up stays in memory: nothing spills', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 4_096 });
  const total = 50_000;
  const out: number[] = [];
  await pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < total; i++) yield point(i);
      })(),
    ),
    hopper,
    new Writable({
      objectMode: true,
      write(record: Point, _encoding, callback) {
        out.push(record.seq);
        callback();
      },
    }),
  );
  t.deepEqual(
    out,
    Array.from({ length: total }, (_, i) => i),
  );
  t.is(hopper.stats().spilled, 0, 'every record went straight from write() to the consumer');
  t.is(hopper.stats().recordsOut, total);
});

test('createHopperStream() - a consumer that writes back into the hopper while taking a record gets every record in acceptance order', async (t) => {
  const hopper = createHopperStream<number>({ maxMemoryBytes: 1_000 });
  const out: number[] = [];
  const accepted: number[] = [];
  hopper.on('data', (n: number) => {
    out.push(n);
    if (n < 20) {
      accepted.push(n + 1000);
      hopper.send(n + 1000);
    }
  });
  const ended = once(hopper, 'end');
  await nextTurn();
  for (let i = 0; i < 50; i++) {
    accepted.push(i);
    hopper.write(i);
  }
  hopper.end();
  await ended;
  t.is(out.length, 70);
  t.deepEqual(out, accepted);
});

test('createHopperStream() - a waiting reader takes a record inside write() even when it is larger than the memory budget; a budget of 0 sends every record through the segment log', async (t) => {
  for (const maxMemoryBytes of [16, 0]) {
    const hopper = createHopperStream<string>({ maxMemoryBytes });
    const out: string[] = [];
    hopper.on('data', (record: string) => out.push(record));
    await nextTurn(); // the readable has asked, and waits
    const big = 'x'.repeat(1_000);
    hopper.write(big);
    if (maxMemoryBytes > 0) t.deepEqual(out, [big], 'delivered inside write()');
    hopper.end();
    await once(hopper, 'end');
    t.deepEqual(out, [big]);
    t.is(hopper.stats().spilled, maxMemoryBytes > 0 ? 0 : 1);
  }
});

test("createHopperStreams() and createHopperStream() - the streams are node:stream's own classes, so instanceof holds", (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams({ dataDir: dir.dataDir, name: 'pair' });
  t.true(hopper.writable instanceof Writable);
  t.true(hopper.readable instanceof Readable);
  const duplex = createHopperStream({ dataDir: dir.dataDir, name: 'duplex' });
  t.true(duplex instanceof Readable);
  t.true(duplex instanceof Writable);
  hopper.destroy();
  duplex.destroy();
});
