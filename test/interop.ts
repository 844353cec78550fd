import { once } from 'node:events';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { createHopperStream, createHopperStreams } from '../lib/index.js';
import { collect, nextTurn } from './helpers/index.js';

// What a Node user expects of any object stream, checked on hopper-streams.

test('Node interop - Readable.from(iterable).pipe(hopper.writable) and async iteration of the readable', async (t) => {
  const hopper = createHopperStreams<{ n: number }>({ maxMemoryBytes: 200 });
  Readable.from(
    (function* () {
      for (let n = 0; n < 1_000; n++) yield { n };
    })(),
  ).pipe(hopper.writable);
  const out = await collect<{ n: number }>(hopper.readable);
  t.deepEqual(
    out.map((record) => record.n),
    Array.from({ length: 1_000 }, (_, n) => n),
  );
});

test('Node interop - stream/promises pipeline into the writable and out of the readable', async (t) => {
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 64 });
  const out: string[] = [];
  await Promise.all([
    pipeline(Readable.from(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']), hopper.writable),
    pipeline(
      hopper.readable,
      new Writable({
        objectMode: true,
        write(chunk: string, _encoding, callback) {
          out.push(chunk);
          setImmediate(callback);
        },
      }),
    ),
  ]);
  t.deepEqual(out, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);
});

test('Node interop - .pipe(writable, { end: false }) from several sources, then end() by hand', async (t) => {
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 16 });
  const first = Readable.from(['1a', '1b', '1c']);
  first.pipe(hopper.writable, { end: false });
  await once(first, 'end');
  const second = Readable.from(['2a', '2b']);
  second.pipe(hopper.writable, { end: false });
  await once(second, 'end');
  t.false(hopper.writable.writableEnded, 'the sources did not end the writable');
  hopper.writable.end('last');
  t.deepEqual(await collect(hopper.readable), ['1a', '1b', '1c', '2a', '2b', 'last']);
});

test('Node interop - Buffer chunks and object chunks mixed in one hopper keep their kind and bytes', async (t) => {
  const hopper = createHopperStream<unknown>({ maxMemoryBytes: 10 });
  const chunks: unknown[] = [Buffer.from('bytes one'), { kind: 'object', list: [1, 2] }, Buffer.from([0, 255, 0]), 'text', [true, null]];
  const out: unknown[] = [];
  // Written before anything reads, so that what does not fit in 10 bytes goes to disk.
  for (const chunk of chunks) hopper.write(chunk);
  hopper.end();
  await pipeline(
    hopper,
    new Writable({
      objectMode: true,
      write(chunk, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    }),
  );
  t.deepEqual(out, chunks);
  t.true(Buffer.isBuffer(out[0]) && Buffer.isBuffer(out[2]));
  t.true(hopper.stats().spilled > 0);
});

test('Node interop - readable.read() and the readable event, paused mode', async (t) => {
  const hopper = createHopperStreams<number>({ maxMemoryBytes: 16 });
  for (let n = 0; n < 10; n++) hopper.send(n);
  hopper.writable.end();
  const out: number[] = [];
  hopper.readable.on('readable', () => {
    for (let record = hopper.readable.read(); record !== null; record = hopper.readable.read()) out.push(record);
  });
  await once(hopper.readable, 'end');
  t.deepEqual(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('Node interop - pause() and resume() on a flowing readable hold and release records', async (t) => {
  const hopper = createHopperStreams<number>({ maxMemoryBytes: 0 });
  const out: number[] = [];
  hopper.readable.on('data', (n: number) => {
    out.push(n);
    if (n === 4) hopper.readable.pause();
  });
  for (let n = 0; n < 10; n++) hopper.send(n);
  await nextTurn();
  await nextTurn();
  t.deepEqual(out, [0, 1, 2, 3, 4]);
  hopper.writable.end();
  hopper.readable.resume();
  await once(hopper.readable, 'end');
  t.deepEqual(out, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test('Node interop - a PassThrough after the Duplex in a pipeline sees the end', async (t) => {
  const out = await collect<number>(
    Readable.from([1, 2, 3])
      .pipe(createHopperStream<number>())
      .pipe(new PassThrough({ objectMode: true })),
  );
  t.deepEqual(out, [1, 2, 3]);
});
