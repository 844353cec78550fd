import fs from 'node:fs';
import { Readable as NodeReadable, Writable as NodeWritable } from 'node:stream';
import { pipeline as nodePipeline } from 'node:stream/promises';
import test from 'ava';
import { Readable, Writable, pipelinePromise } from 'streamx';
import { createHopperStream, createHopperStreams } from '../lib/streamx.js';
import { HopperError } from '../lib/index.js';
import { decodeHeader, isProblem, parseBlockHeader } from '../lib/ocf.js';
import { diskSettled, nextTurn, plain, point, pointSchema, tempDataDir, until, type Point } from './helpers/index.js';

function slowStreamxSink(out: unknown[]): Writable {
  return new Writable({
    write(record: unknown, callback: (err: Error | null) => void) {
      out.push(record);
      if (out.length % 200 === 0) setTimeout(() => callback(null), 1);
      else callback(null);
    },
  });
}

test('streamx createHopperStreams() - writable and readable round-trip through memory and disk, in order', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 2_000, maxSegmentBytes: 10_000 });
  // streamx hands writes to the hopper on the next tick: within a tick, 1,024 writes return true.
  for (let i = 0; i < 5_000; i++) {
    if (!hopper.writable.write(point(i))) t.fail(`write ${i} returned false`);
    if (i % 1_000 === 999) await nextTurn();
  }
  hopper.writable.end(undefined);
  const out: Point[] = [];
  for await (const record of hopper.readable) out.push(record);
  t.deepEqual(
    plain(out),
    Array.from({ length: 5_000 }, (_, i) => point(i)),
  );
  t.true(hopper.stats().spilled > 4_000);
  t.deepEqual(dir.files(), []);
});

test('streamx createHopperStream() - works in streamx.pipeline with streamx streams', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 1_000 });
  const out: Point[] = [];
  await pipelinePromise(Readable.from(Array.from({ length: 3_000 }, (_, i) => point(i))), hopper, slowStreamxSink(out));
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: 3_000 }, (_, i) => i),
  );
  t.true(hopper.stats().spilled > 0);
  t.deepEqual(dir.files(), []);
});

test("streamx createHopperStream() - works in Node's pipeline between Node streams", async (t) => {
  const hopper = createHopperStream<number>({ maxMemoryBytes: 100 });
  const out: number[] = [];
  await nodePipeline(
    NodeReadable.from(Array.from({ length: 2_000 }, (_, i) => i)),
    hopper as unknown as NodeJS.ReadWriteStream,
    new NodeWritable({
      objectMode: true,
      write(n: number, _encoding, callback) {
        out.push(n);
        callback();
      },
    }),
  );
  t.deepEqual(
    out,
    Array.from({ length: 2_000 }, (_, i) => i),
  );
  t.false(fs.existsSync(hopper.path));
});

test('streamx createHopperStream() - an error in the pipeline destroys the hopper and removes its files', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStream<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0 });
  const failure = new Error('sink broke');
  let seen = 0;
  const sink = new Writable({
    write(_record: unknown, callback: (err: Error | null) => void) {
      callback(++seen === 50 ? failure : null);
    },
  });
  await t.throwsAsync(pipelinePromise(Readable.from(Array.from({ length: 2_000 }, (_, i) => point(i))), hopper, sink), { is: failure });
  await nextTurn();
  t.true(hopper.destroyed);
  t.deepEqual(dir.files(), []);
});

test('streamx createHopperStreams() - sender(), send() and stats() work as in the readable-stream adapter', async (t) => {
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 8 });
  const sender = hopper.sender();
  hopper.writable.write('a-main');
  sender.write('b-sender');
  // streamx hands writes over on the next tick: send() is accepted at once.
  hopper.send('c-send');
  await nextTurn();
  hopper.send('d-send');
  t.throws(() => hopper.send(undefined as unknown as string), { instanceOf: HopperError });
  sender.end(undefined);
  const closing = hopper.close();
  const out: string[] = [];
  for await (const record of hopper.readable) out.push(record);
  await closing;
  t.deepEqual(out, ['c-send', 'a-main', 'b-sender', 'd-send']);
  t.is(hopper.stats().spilled, 3);
});

test('streamx createHopperStreams() - destroy(err) reports the error on the readable and removes the files', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 0 });
  hopper.send('on disk');
  await diskSettled(hopper);
  t.true(dir.files().length > 1);
  const failure = new Error('stop');
  const errored = new Promise<Error>((resolve) => hopper.readable.once('error', resolve));
  let writableErrors = 0;
  hopper.writable.on('error', () => writableErrors++);
  hopper.destroy(failure);
  t.is(await errored, failure);
  await nextTurn();
  t.is(writableErrors, 0);
  t.deepEqual(dir.files(), []);
  await t.throwsAsync(hopper.close(), { is: failure });
});

test('streamx .close() - resolves without a reader when nothing is left to deliver (pair and Duplex), and waits for one when records are held', async (t) => {
  const empty = createHopperStreams<Point>();
  await empty.close();
  t.false(fs.existsSync(empty.path));
  const emptyDuplex = createHopperStream<Point>();
  await emptyDuplex.close();
  t.false(fs.existsSync(emptyDuplex.path));

  const hopper = createHopperStreams<Point>();
  hopper.send(point(1));
  hopper.send(point(2));
  let closed = false;
  const closing = hopper.close().then(() => {
    closed = true;
  });
  for (let turn = 0; turn < 5; turn++) await nextTurn();
  t.false(closed);
  t.false(hopper.readerAttached);
  const out: Point[] = [];
  for await (const record of hopper.readable) out.push(record);
  await closing;
  t.true(hopper.readerAttached);
  t.deepEqual(
    out.map((p) => p.seq),
    [1, 2],
  );
});

for (const [tier, maxMemoryBytes] of [
  ['in memory', 1024 ** 2],
  ['on disk', 1_000],
] as const) {
  test(`streamx createHopperStreams() - writable.destroy(err) ends the input: every record accepted is delivered ${tier}, then ERR_HOPPER_PRODUCER_FAILED`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes, maxSegmentBytes: 2_000 });
    for (let i = 0; i < 300; i++) hopper.send(point(i));
    if (tier === 'on disk') t.true(hopper.stats().diskRecords > 0, 'the backlog is on disk');
    const failure = new Error('producer gave up');
    hopper.writable.on('error', () => {});
    hopper.writable.destroy(failure);
    await nextTurn();
    const records: Point[] = [];
    let error: unknown;
    try {
      for await (const record of hopper.readable) records.push(record);
    } catch (err) {
      error = err;
    }
    t.deepEqual(
      records.map((p) => p.seq),
      Array.from({ length: 300 }, (_, i) => i),
    );
    t.true(HopperError.is(error, 'ERR_HOPPER_PRODUCER_FAILED'), String(error));
    t.is((error as Error).cause, failure);
    await t.throwsAsync(hopper.close(), { is: error as Error });
    t.deepEqual(dir.files(), []);
  });
}

test("streamx createHopperStreams() - onCorrupt 'error': records read intact before a corrupt block reach the consumer before the error", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 8_000, onCorrupt: 'error' });
  const sealed: string[] = [];
  hopper.on('segment', (event) => {
    if (event.action === 'sealed') sealed.push(event.file);
  });
  // Blocks are written when the event loop turns: bursts of 60 make blocks of 60 records, more
  // than the readable's buffer holds (16).
  for (let i = 0; i < 600; i++) {
    hopper.send(point(i));
    if (i % 60 === 59) await nextTurn();
  }
  // A segment is sealed, and its blocks are on disk, once the background writes have run: waited
  // for as counts (a loaded machine may take many turns), not as one turn.
  await until(() => sealed.length > 0 && hopper.stats().pendingDiskBytes === 0, 'a sealed segment on disk');
  const bytes = fs.readFileSync(sealed[0]!);
  let offset = decodeHeader(bytes)!.length;
  const first = parseBlockHeader(bytes, offset, bytes.length - offset);
  if (isProblem(first)) throw new Error(first.problem);
  offset = first.end;
  const second = parseBlockHeader(bytes, offset, bytes.length - offset);
  if (isProblem(second)) throw new Error(second.problem);
  const fd = fs.openSync(sealed[0]!, 'r+');
  fs.writeSync(fd, Buffer.from([0xff]), 0, 1, second.dataStart + 3);
  fs.closeSync(fd);

  const seen: number[] = [];
  let failure: unknown;
  try {
    for await (const record of hopper.readable) seen.push(record.seq);
  } catch (err) {
    failure = err;
  }
  t.true(HopperError.is(failure, 'ERR_HOPPER_CORRUPT_SEGMENT'), String(failure));
  t.deepEqual(
    seen,
    Array.from({ length: 60 }, (_, i) => i),
    'the first block, whole and in order',
  );
  t.is(hopper.stats().recordsOut, seen.length, 'every record counted as delivered was delivered');
});
