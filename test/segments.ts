import fs from 'node:fs';
import v8 from 'node:v8';
import path from 'node:path';
import zlib from 'node:zlib';
import test from 'ava';
import avsc from 'avsc';
import { createHopperStreams, HopperError, type SegmentEvent } from '../lib/index.js';
import { createCodec } from '../lib/codec.js';
import { decodeHeader, encodeBlockHeader, encodeHeader } from '../lib/ocf.js';
import { LostRecords, SegmentLog, WAIT, segmentFileName, type SegmentFileSystem } from '../lib/segments/index.js';
import { BlockBuilder } from '../lib/segments/block-builder.js';
import { BlockReader, decodeRecord } from '../lib/segments/block-reader.js';
import { Corruption, DecoderBug } from '../lib/segments/results.js';
import { RetryPolicy } from '../lib/segments/io.js';
import { ManualClock } from './helpers/clock.js';
import { FaultyFileSystem } from './helpers/faulty-fs.js';
import { collect, diskSettled, plain, point, pointSchema, tempDataDir, until, type Point } from './helpers/index.js';

function decodeFile(file: string): Promise<unknown[]> {
  return collect(avsc.createFileDecoder(file));
}

function copySealedSegments(hopper: { on(event: 'segment', listener: (event: SegmentEvent) => void): unknown }, into: string): SegmentEvent[] {
  const sealed: SegmentEvent[] = [];
  fs.mkdirSync(into, { recursive: true });
  hopper.on('segment', (event) => {
    if (event.action !== 'sealed') return;
    sealed.push(event);
    fs.copyFileSync(event.file, path.join(into, path.basename(event.file)));
  });
  return sealed;
}

for (const codec of ['null', 'deflate'] as const) {
  test(`segment files - a sealed segment decodes with avsc createFileDecoder to exactly the records written (codec ${codec})`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<Point>({
      dataDir: dir.dataDir,
      schema: pointSchema,
      maxMemoryBytes: 0,
      maxSegmentBytes: codec === 'deflate' ? 4_000 : 20_000,
      codec,
    });
    const aside = path.join(dir.dataDir, 'aside');
    const sealed = copySealedSegments(hopper, aside);
    const written = Array.from({ length: 3_000 }, (_, i) => point(i));
    for (const record of written) hopper.send(record);
    await diskSettled(hopper);
    t.true(sealed.length >= 2, `${sealed.length} segments sealed`);

    let offset = 0;
    for (const event of sealed) {
      const copy = path.join(aside, path.basename(event.file));
      const decoded = await decodeFile(copy);
      t.deepEqual(plain(decoded), written.slice(offset, offset + event.records));
      offset += event.records;
      const header = decodeHeader(fs.readFileSync(copy))!;
      t.is(header.codec, codec);
      t.deepEqual(header.schema, JSON.parse(JSON.stringify(avsc.Type.forSchema(pointSchema as never).schema({ exportAttrs: true }))));
    }
    const closed = hopper.close();
    t.deepEqual(plain(await collect(hopper.readable)), written);
    await closed;
  });
}

test('segment files - schemaless records are stored in a union any Avro reader decodes', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<unknown>({ dataDir: dir.dataDir, maxMemoryBytes: 0, maxSegmentBytes: 1 });
  const aside = path.join(dir.dataDir, 'aside');
  const sealed = copySealedSegments(hopper, aside);
  hopper.send(Buffer.from([0, 1, 2, 255]));
  await diskSettled(hopper);
  hopper.send('héllo');
  await diskSettled(hopper);
  hopper.send({ a: [1, 'two', null] });
  await diskSettled(hopper);
  hopper.send(new Map([[1, new Date(0)]]));
  await diskSettled(hopper);
  t.is(sealed.length, 4);
  const decoded = [];
  for (const event of sealed) decoded.push(...(await decodeFile(path.join(aside, path.basename(event.file)))));
  t.deepEqual(decoded[0], Buffer.from([0, 1, 2, 255]));
  t.is(decoded[1], 'héllo');
  // Any other value is a `Value` record: JSON text for plain data, node:v8's serialization for the rest.
  t.deepEqual(plain(decoded[2]), { data: '{"a":[1,"two",null]}' });
  t.deepEqual(v8.deserialize((decoded[3] as { data: Buffer }).data), new Map([[1, new Date(0)]]));
  hopper.destroy();
});

test('segment files - live in <dataDir>/<name>/ with zero-padded increasing .avro names', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, name: 'events', schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 2_000 });
  for (let i = 0; i < 500; i++) hopper.send(point(i));
  hopper.writable.end();
  await diskSettled(hopper);
  const files = dir.files();
  const segments = files.filter((file) => file.endsWith('.avro'));
  t.true(segments.length >= 3);
  t.deepEqual(
    segments,
    segments.map((_, i) => path.join('events', segmentFileName(i + 1))),
  );
  t.deepEqual(
    files.filter((file) => !file.endsWith('.avro')),
    [path.join('events', 'hopper.lock', 'owner.json')],
  );
  t.is(segmentFileName(42), '000000000042.avro');
  t.is(hopper.stats().segments, segments.length);
  t.is(
    hopper.stats().diskBytes,
    segments.reduce((sum, file) => sum + fs.statSync(path.join(dir.dataDir, file)).size, 0),
  );
  await collect(hopper.readable);
  t.deepEqual(dir.files(), []);
});

test('segment files - the reader deletes each sealed segment once it has read it through', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 2_000 });
  const events: SegmentEvent[] = [];
  hopper.on('segment', (event) => events.push(event));
  for (let i = 0; i < 300; i++) hopper.send(point(i));
  await diskSettled(hopper);
  const before = hopper.stats().segments;
  t.true(before >= 3);
  const first = path.join(hopper.path, segmentFileName(1));
  const sealed = events.find((event) => event.action === 'sealed' && event.file === first);
  t.not(sealed, undefined);
  // Removal runs in the background once a segment is read through: when it is announced, the file
  // is gone and no longer counts, while later segments are still there.
  const removed = new Promise<{ segments: number; exists: boolean }>((resolve) => {
    hopper.on('segment', (event) => {
      if (event.action === 'removed' && event.file === first) resolve({ segments: hopper.stats().segments, exists: fs.existsSync(first) });
    });
  });
  const iterator = hopper.readable[Symbol.asyncIterator]();
  const read: Point[] = [];
  while (read.length <= sealed!.records) read.push((await iterator.next()).value as Point);
  const atRemoval = await removed;
  t.is(atRemoval.segments, before - 1);
  t.false(atRemoval.exists);
  while (read.length < 300) read.push((await iterator.next()).value as Point);
  t.deepEqual(
    plain(read),
    Array.from({ length: 300 }, (_, i) => point(i)),
  );
  hopper.destroy();
});

function countingFs(): { fs: SegmentFileSystem; writes: number[] } {
  const writes: number[] = [];
  const wrapped: SegmentFileSystem = {
    ...fs,
    writevSync: (fd, buffers, position) => {
      const n = fs.writevSync(fd, buffers, position);
      writes.push(n);
      return n;
    },
  };
  return { fs: wrapped, writes };
}

test('SegmentLog - one write per block, not per record; reads whole blocks back in order', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { fs: fileSystem, writes } = countingFs();
  const events: SegmentEvent[] = [];
  const log = new SegmentLog(
    dir.dataDir,
    createCodec(pointSchema as never),
    { maxSegmentBytes: 1024 ** 3, maxSegments: Infinity, maxDiskBytes: Infinity, codec: 'null', onCorrupt: 'error', channel: 'unit', maxPendingDiskBytes: 0 },
    { onSegment: (event) => events.push(event), onFault: (event) => t.fail(event.error.message), onRecovered: () => {} },
    fileSystem,
  );
  for (let i = 0; i < 20_000; i++) t.is(log.append(point(i)), 'ok');
  t.true(log.tryFlush());
  const bytes = writes.reduce((a, b) => a + b, 0);
  t.is(bytes, log.bytes);
  t.true(writes.length < 20_000 / 100, `${writes.length} writes for 20000 records`);
  t.true(
    writes.every((n) => n <= 64 * 1024 + 1024),
    'blocks stay near the 64 KiB target',
  );
  for (let i = 0; i < 20_000; i++) t.is((log.next() as Point).seq, i);
  t.is(log.records, 0);
  t.is(log.segmentCount, 0, 'a log read through holds no files');
  t.deepEqual(
    events.map((event) => event.action),
    ['removed'],
  );
  log.close();
});

test('SegmentLog - maxDiskBytes and maxSegments refuse appends without writing anything', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const codec = createCodec(pointSchema as never);
  const hooks = { onSegment: () => {}, onFault: () => t.fail('no fault expected'), onRecovered: () => {} };
  const bySize = new SegmentLog(
    dir.dataDir,
    codec,
    { maxSegmentBytes: 1_000, maxSegments: Infinity, maxDiskBytes: 3_000, codec: 'null', onCorrupt: 'error', channel: 'a', maxPendingDiskBytes: 0 },
    hooks,
  );
  let accepted = 0;
  while (bySize.append(point(accepted)) === 'ok') accepted++;
  t.true(bySize.tryFlush());
  t.true(accepted > 10);
  t.true(bySize.bytes <= 3_000, `${bySize.bytes} bytes`);
  t.is(bySize.append({ seq: 1, label: 'x'.repeat(5_000), score: 1 }), 'too-large');
  for (let i = 0; i < accepted; i++) t.is((bySize.next() as Point).seq, i);
  t.is(bySize.append(point(0)), 'ok', 'reading frees the room');
  bySize.close();

  const sub = path.join(dir.dataDir, 'b');
  fs.mkdirSync(sub);
  const byCount = new SegmentLog(
    sub,
    codec,
    { maxSegmentBytes: 1, maxSegments: 2, maxDiskBytes: Infinity, codec: 'null', onCorrupt: 'error', channel: 'b', maxPendingDiskBytes: 0 },
    hooks,
  );
  t.is(byCount.append(point(0)), 'ok');
  t.is(byCount.append(point(1)), 'ok');
  t.is(byCount.append(point(2)), 'full');
  t.is(byCount.segmentCount, 2);
  t.is(fs.readdirSync(sub).length, 2);
  byCount.close();
  t.deepEqual(fs.readdirSync(sub), []);
});

// Large Buffers (16 KiB and more, schemaless, codec 'null') go to disk by reference: the block
// holds their head, and writev takes the caller's Buffer as one of its parts.

function schemalessLog(
  dir: string,
  hooks: Partial<ConstructorParameters<typeof SegmentLog>[3]> = {},
  fileSystem?: SegmentFileSystem,
  options: Partial<ConstructorParameters<typeof SegmentLog>[2]> = {},
): SegmentLog {
  return new SegmentLog(
    dir,
    createCodec(undefined),
    {
      maxSegmentBytes: 1024 ** 3,
      maxSegments: Infinity,
      maxDiskBytes: Infinity,
      codec: 'null',
      onCorrupt: 'error',
      channel: 'unit',
      maxPendingDiskBytes: 0,
      ...options,
    },
    { onSegment: () => {}, onFault: () => {}, onRecovered: () => {}, ...hooks },
    fileSystem,
  );
}

function mixedRecords(): unknown[] {
  const records: unknown[] = [];
  for (let i = 0; i < 12; i++) {
    records.push(Buffer.alloc([16 * 1024, 16 * 1024 - 1, 20_000, 65_536, 200_000, 40_000][i % 6]!, i + 1));
    if (i % 3 === 0) records.push(`small ${i}`, Buffer.from([i, 255 - i]), { i, list: [i] });
  }
  return records;
}

test('SegmentLog - large Buffers written by reference read back byte-exact, among small records, from files any Avro reader decodes', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { fs: fileSystem, writes } = countingFs();
  const sealed: SegmentEvent[] = [];
  const aside = path.join(dir.dataDir, 'aside');
  fs.mkdirSync(aside);
  const log = schemalessLog(
    dir.dataDir,
    {
      onSegment: (event) => {
        if (event.action !== 'sealed') return;
        sealed.push(event);
        fs.copyFileSync(event.file, path.join(aside, path.basename(event.file)));
      },
    },
    fileSystem,
    { maxSegmentBytes: 300_000 },
  );
  const records = mixedRecords();
  const copies = records.map((record) => (Buffer.isBuffer(record) ? Buffer.from(record) : record));
  for (const record of records) t.is(log.append(record), 'ok');
  t.true(log.tryFlush());
  t.is(
    writes.reduce((a, b) => a + b, 0),
    log.bytes,
    'the bytes counted are the bytes written',
  );
  t.true(sealed.length >= 2, `${sealed.length} segments sealed`);
  const onDisk: unknown[] = [];
  for (const event of sealed) onDisk.push(...(await decodeFile(path.join(aside, path.basename(event.file)))));
  t.deepEqual(
    plain(onDisk),
    plain(copies.slice(0, onDisk.length).map((record) => (Buffer.isBuffer(record) || typeof record === 'string' ? record : { data: JSON.stringify(record) }))),
  );
  const out = records.map(() => log.next());
  t.deepEqual(out, copies);
  t.true(
    records.every((record, i) => !Buffer.isBuffer(record) || out[i] !== record),
    'records read from a file are not the Buffers written',
  );
  t.deepEqual(records, copies, 'the Buffers written are left as they were');
  t.is(log.records, 0);
  log.close();
});

test('SegmentLog - a reader that caught up takes large Buffers straight from the block being filled, in order with small records', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { fs: fileSystem, writes } = countingFs();
  const log = schemalessLog(dir.dataDir, {}, fileSystem);
  const large = [Buffer.alloc(20_000, 1), Buffer.alloc(16_384, 2), Buffer.alloc(30_000, 3)];
  t.is(log.append('a'), 'ok');
  t.is(log.append(large[0]), 'ok');
  t.is(log.append(Buffer.from([1, 2, 3])), 'ok');
  t.is(log.append(large[1]), 'ok');
  t.true(log.bytes > 20_000 + 16_384, 'pending bytes count the Buffers held by reference');
  t.is(log.next(), 'a');
  const first = log.next() as Buffer;
  t.deepEqual(first, large[0], 'the Buffer appended comes back, as from memory');
  t.not(first, large[0], 'a copy, made when it was appended: the producer may reuse its Buffer');
  // More records while two are unread: the block moves its unread bytes to the front to make room.
  t.is(log.append({ x: 'y'.repeat(10_000) }), 'ok');
  t.is(log.append(large[2]), 'ok');
  t.deepEqual(log.next(), Buffer.from([1, 2, 3]));
  t.deepEqual(log.next(), large[1]);
  t.deepEqual(log.next(), { x: 'y'.repeat(10_000) });
  t.deepEqual(log.next(), large[2]);
  t.is(log.records, 0);
  t.true(log.tryFlush());
  t.deepEqual(writes, [], 'nothing was written: the reader kept up');
  t.is(log.bytes, 0);

  // A record too big for the room left moves the unread records (and the Buffers between them) to
  // the front, then the block is written: the file holds them in order.
  t.is(log.append('b'), 'ok');
  t.is(log.append(large[0]), 'ok');
  t.is(log.append('c'), 'ok');
  t.is(log.append(large[1]), 'ok');
  t.is(log.next(), 'b');
  // (An object: a string this long would be held by reference too.)
  t.is(log.append({ z: 'z'.repeat(65_530) }), 'ok');
  t.is(writes.length, 1);
  t.deepEqual(log.next(), large[0]);
  t.is(log.next(), 'c');
  t.deepEqual(log.next(), large[1]);
  t.deepEqual(log.next(), { z: 'z'.repeat(65_530) });
  t.is(log.records, 0);
  log.close();
});

test('SegmentLog - with deflate, large Buffers taken from the block being filled are copies that later records do not overwrite', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const log = schemalessLog(dir.dataDir, {}, undefined, { codec: 'deflate' });
  t.is(log.append(Buffer.alloc(40_000, 1)), 'ok');
  const first = log.next() as Buffer;
  t.is(log.append(Buffer.alloc(40_000, 2)), 'ok');
  t.deepEqual(log.next(), Buffer.alloc(40_000, 2));
  t.deepEqual(first, Buffer.alloc(40_000, 1));
  log.close();
});

test('SegmentLog - a failed write of a block holding Buffers by reference is retried with the same bytes', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const clock = new ManualClock();
  const faulty = new FaultyFileSystem(clock);
  let recovered = 0;
  const faults: string[] = [];
  const log = schemalessLog(dir.dataDir, { onFault: (event) => faults.push(event.operation), onRecovered: () => recovered++ }, faulty.fs);
  const first = [Buffer.alloc(20_000, 7), 'between', Buffer.alloc(100_000, 8)];
  faulty.fail('write', 'EIO', 2);
  for (const record of first) t.is(log.append(record), 'ok', 'kept: its block is retried');
  t.false(log.tryFlush());
  t.is(log.fault?.message.includes('EIO'), true);
  t.is(log.append(Buffer.alloc(70_000, 9)), 'fault');
  faulty.shortenWrites(1);
  // Retries back off from 5 ms: the third attempt (a short write, completed) goes through.
  t.is(clock.nextDelay, 5);
  t.true(clock.runNext());
  t.not(log.fault, undefined, 'the second attempt fails too');
  t.is(clock.nextDelay, 10);
  t.true(clock.runNext());
  t.is(log.fault, undefined);
  t.is(clock.pending, 0);
  t.is(faulty.failures.write, 2);
  // The log tells the channel of a recovery on a tick of its own, never from inside its own calls.
  t.is(recovered, 0);
  await new Promise((resolve) => process.nextTick(resolve));
  t.is(recovered, 1);
  t.deepEqual(faults, ['write']);
  t.is(log.append(Buffer.alloc(70_000, 9)), 'ok');
  t.true(log.tryFlush());
  t.deepEqual(log.next(), first[0]);
  t.is(log.next(), 'between');
  t.deepEqual(log.next(), first[2]);
  t.deepEqual(log.next(), Buffer.alloc(70_000, 9));
  t.is(log.records, 0);
  log.close();
});

for (const onCorrupt of ['error', 'skip'] as const) {
  test(`SegmentLog - a changed byte inside a Buffer written by reference is caught by the block checksum (onCorrupt '${onCorrupt}')`, (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const log = schemalessLog(dir.dataDir, {}, undefined, { onCorrupt });
    const records = [Buffer.alloc(70_000, 1), Buffer.alloc(70_000, 2), Buffer.alloc(70_000, 3)];
    for (const record of records) {
      t.is(log.append(record), 'ok');
      t.true(log.tryFlush()); // a block each
    }
    const file = path.join(dir.dataDir, segmentFileName(1));
    const bytes = fs.readFileSync(file);
    // The middle of the second record: its block is the second, 70,000 bytes of 2 at the middle.
    const at = bytes.indexOf(Buffer.alloc(64, 2)) + 30_000;
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xee]), 0, 1, at);
    fs.closeSync(fd);
    t.deepEqual(log.next(), records[0]);
    if (onCorrupt === 'error') {
      const err = t.throws(() => log.next(), { instanceOf: HopperError });
      t.is(err!.code, 'ERR_HOPPER_CORRUPT_SEGMENT');
      t.regex(err!.message, /checksum mismatch/);
    } else {
      const lost = log.next();
      t.true(lost instanceof LostRecords, 'next() gives the records lost');
      t.is((lost as LostRecords).count, 1);
      t.regex((lost as LostRecords).problem, /checksum mismatch/);
      t.deepEqual(log.next(), records[2]);
      t.is(log.records, 0);
    }
    log.close();
  });
}

test('SegmentLog - large Buffers read from a file are views of their own block, not of each other', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const log = schemalessLog(dir.dataDir);
  for (let i = 1; i <= 3; i++) t.is(log.append(Buffer.alloc(100_000, i)), 'ok');
  t.true(log.tryFlush());
  const out = [log.next(), log.next(), log.next()] as Buffer[];
  out[1]!.fill(0);
  t.deepEqual(out[0], Buffer.alloc(100_000, 1));
  t.deepEqual(out[2], Buffer.alloc(100_000, 3));
  t.true(
    out.every((buffer) => buffer.buffer.byteLength <= 5 * 100_000),
    'each keeps no more than its block alive, at most five times its size',
  );
  log.close();
});

test('SegmentLog - a block holding Buffers by reference grows to 256 KiB, with at most 64 KiB copied into it', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { fs: fileSystem, writes } = countingFs();
  const log = schemalessLog(dir.dataDir, {}, fileSystem);
  for (let i = 0; i < 16; i++) t.is(log.append(Buffer.alloc(65_536, i)), 'ok');
  t.is(writes.length, 4, 'four blocks written as they filled, not at the turn');
  t.true(
    writes.every((n) => n >= 256 * 1024 && n < 256 * 1024 + 1024),
    writes.join(', '),
  );
  // Small records are copied: they still close a block at 64 KiB.
  for (let i = 0; i < 2_000; i++) t.is(log.append(`record ${i} `.repeat(4)), 'ok');
  t.true(log.tryFlush());
  t.true(
    writes.slice(4).every((n) => n < 64 * 1024 + 1024),
    writes.join(', '),
  );
  for (let i = 0; i < 16; i++) t.deepEqual(log.next(), Buffer.alloc(65_536, i));
  for (let i = 0; i < 2_000; i++) t.is(log.next(), `record ${i} `.repeat(4));
  log.close();
});

test('SegmentLog - a record that decodes as null is corruption, never a value a readable would take for its end', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const log = schemalessLog(dir.dataDir);
  t.teardown(() => log.close());
  // The channel refuses null when written; the log itself stores what it is given, like a
  // segment whose bytes were changed into a valid `null`.
  t.is(log.append('before'), 'ok');
  t.is(log.append(null), 'ok');
  t.true(log.tryFlush());
  t.is(log.next(), 'before');
  const err = t.throws(() => log.next(), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_CORRUPT_SEGMENT');
  t.regex(err!.message, /a record decodes as null, which no record can be/);
});

// The parts of the segment log, each on its own.

test('BlockBuilder - a staged record that is dropped leaves the block as it was, and a grown block shrinks once emptied', (t) => {
  const block = new BlockBuilder(createCodec(undefined), false);
  block.stage('first');
  t.false(block.keep());
  const pending = block.pending;
  block.stage('x'.repeat(300_000));
  block.drop();
  t.is(block.pending, pending);
  t.is(block.count, 1);
  t.is(block.shift(), 'first');
  t.is(block.count, 0);
  // The block's data is a view of its buffer: the memory it keeps alive is the buffer's size.
  block.stage('next');
  block.keep();
  const [data] = block.parts('null');
  t.is(data!.toString('latin1').includes('next'), true);
  const held = data!.buffer.byteLength;
  t.true(held <= 256 * 1024, `the block buffer is back to ${held} bytes`);
});

test('BlockBuilder - a block handed to the writer keeps its bytes while the next blocks are filled in the same buffer, records larger than what is left included', (t) => {
  const block = new BlockBuilder(createCodec(undefined), false);
  const handed: Array<{ parts: Buffer[]; bytes: Buffer }> = [];
  let seq = 0;
  for (let blocks = 0; blocks < 6; blocks++) {
    // Small records until the block is full; every other block ends with one that does not fit in
    // what is left of the buffer.
    for (;;) {
      block.stage(blocks % 2 === 1 && block.count === 10 ? 'y'.repeat(120_000 + seq) : `record ${seq}`.padEnd(500, '.'));
      seq++;
      if (block.keep()) break;
    }
    const parts = block.parts('null');
    handed.push({ parts, bytes: Buffer.concat(parts.map((part) => Buffer.from(part))) });
    block.handOff();
  }
  block.stage('last');
  block.keep();
  for (const { parts, bytes } of handed) t.true(Buffer.concat(parts).equals(bytes), 'a handed-off block was written over');
});

test('BlockBuilder - copies of large Buffers are reused only once their block was written: blocks still waiting keep their bytes though the producer reuses its Buffer', (t) => {
  const block = new BlockBuilder(createCodec(undefined), true);
  const reused = Buffer.alloc(40_000);
  const handed: Array<{ parts: Buffer[]; bytes: Buffer; written: () => void }> = [];
  for (let blocks = 0; blocks < 12; blocks++) {
    for (let i = 0; ; i++) {
      reused.fill(blocks * 16 + i);
      block.stage(reused);
      if (block.keep()) break;
    }
    // As the writer does: the parts, a lease on the copies among them, then the hand-off.
    const parts = block.parts('null');
    handed.push({ parts, bytes: Buffer.concat(parts.map((part) => Buffer.from(part))), written: block.lease() });
    block.handOff();
    // Every other block is written at once: its copies may be reused by the next records.
    if (blocks % 2 === 0) handed[blocks]!.written();
  }
  handed.forEach(({ parts, bytes }, index) => {
    if (index % 2 === 1) t.true(Buffer.concat(parts).equals(bytes), `block ${index}, waiting for the disk, was written over`);
  });
  t.true(block.bufferBytes <= 256 * 1024 + 1024 * 1024, 'copies kept for reuse are bounded');
});

test('BlockBuilder - a block buffer is filled again only once every block handed from it was written; blocks still waiting keep their bytes', (t) => {
  const block = new BlockBuilder(createCodec(undefined), false);
  const handed: Array<{ parts: Buffer[]; bytes: Buffer; written: () => void }> = [];
  let seq = 0;
  // About 60 blocks of 64 KiB: some twenty 256 KiB buffers filled, most of them let go.
  for (let blocks = 0; blocks < 60; blocks++) {
    for (;;) {
      block.stage(`record ${seq++}`.padEnd(700, String.fromCharCode(97 + (blocks % 26))));
      if (block.keep()) break;
    }
    // As the writer does: the parts, a lease, then the hand-off.
    const parts = block.parts('null');
    handed.push({ parts, bytes: Buffer.concat(parts.map((part) => Buffer.from(part))), written: block.lease() });
    block.handOff();
    // Blocks are written in order, three behind; every seventh waits for good (a write that keeps failing).
    const done = handed[blocks - 3];
    if (done !== undefined && (blocks - 3) % 7 !== 0) done.written();
  }
  let changed = 0;
  handed.forEach(({ parts, bytes }, index) => {
    const same = Buffer.concat(parts).equals(bytes);
    if (index % 7 === 0 || index >= handed.length - 3) t.true(same, `block ${index}, waiting for the disk, was written over`);
    else if (!same) changed++;
  });
  // Written blocks' buffers were filled again (the bytes of their parts changed): reuse happened.
  t.true(changed > 0, 'no written block buffer was filled again');
});

test('BlockReader - reads a block by its own framing, and checks it against what the ledger says was written', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const type = avsc.Type.forSchema('string');
  const sync = Buffer.alloc(16, 7);
  const header = encodeHeader(Buffer.from(JSON.stringify('string')), 'null', sync);
  const data = Buffer.concat([type.toBuffer('one'), type.toBuffer('two')]);
  const file = path.join(dir.dataDir, 'block.avro');
  fs.mkdirSync(dir.dataDir, { recursive: true });
  fs.writeFileSync(file, Buffer.concat([header, encodeBlockHeader(2, data.length), data, sync]));
  const size = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const reader = new BlockReader(fs);
  reader.reset(fd);
  const available = size - header.length;

  const read = reader.block(header.length, available, size, sync, 'null');
  t.is(read.frame.count, 2);
  const first = decodeRecord(type, read.data, 0, false);
  t.is(first.value, 'one');
  t.is(decodeRecord(type, read.data, first.offset, false).value, 'two');
  const checksum = zlib.crc32(data);
  t.is(reader.block(header.length, available, size, sync, 'null', { count: 2, checksum }).data.length, data.length);

  const refused = (written: { count: number; checksum: number } | undefined, otherSync = sync): Corruption => {
    const err = t.throws(() => reader.block(header.length, available, size, otherSync, 'null', written), { instanceOf: Corruption })!;
    t.is(err.loss, 'block');
    return err;
  };
  t.regex(refused({ count: 3, checksum }).problem, /record count says 2, 3 were written/);
  t.regex(refused({ count: 2, checksum: checksum ^ 1 }).problem, /checksum mismatch/);
  const badSync = refused(undefined, Buffer.alloc(16, 8));
  t.regex(badSync.problem, /sync marker does not match/);
  t.is(badSync.offset, size - 16, 'the offset of the sync marker in the file');
});

test('RetryPolicy - one timer on the clock it is given, its delay doubling from 5 ms to 1 s and back to 5 ms once things work', (t) => {
  const clock = new ManualClock();
  let retries = 0;
  const policy = new RetryPolicy(() => retries++, clock);
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) {
    policy.schedule();
    policy.schedule(); // armed already: still one timer
    t.is(clock.pending, 1);
    delays.push(clock.nextDelay!);
    t.true(clock.runNext());
  }
  t.deepEqual(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1_000, 1_000]);
  t.is(retries, 10);
  policy.writesWork();
  policy.schedule();
  t.is(clock.nextDelay, 5, 'back to 5 ms once writes work');
  policy.stop();
  t.is(clock.pending, 0, 'stop() disarms the timer');
  policy.schedule();
  t.is(clock.pending, 0, 'a stopped policy arms nothing');
  t.is(retries, 10);
});

test('RetryPolicy - failed reads are given up on only when they are both 10 in a row and 5 s old, by the clock given', (t) => {
  const clock = new ManualClock();
  const policy = new RetryPolicy(() => {}, clock);
  // Ten quick failures: not old enough.
  for (let i = 0; i < 20; i++) t.false(policy.readFailed(), `failure ${i + 1} at ${clock.now()} ms`);
  clock.setTimeout(() => {}, 5_000);
  clock.runNext();
  t.true(policy.readFailed(), 'the 21st, 5 s after the first');
  policy.readsWork(false);
  t.is(policy.failingReads, 0);
  // Old enough, but not ten yet.
  t.false(policy.readFailed());
  clock.setTimeout(() => {}, 60_000);
  clock.runNext();
  for (let i = 2; i < 10; i++) t.false(policy.readFailed(), `failure ${i}`);
  t.true(policy.readFailed(), 'the 10th, a minute after the first');
});

test('decodeRecord - what bad bytes make a decoder throw does not decode (offset -1); anything else is a DecoderBug, not corruption', (t) => {
  const union = avsc.Type.forSchema(['null', 'string']);
  t.is(decodeRecord(union, Buffer.from([0x08]), 0, false).offset, -1, 'avsc: invalid union index (an Error)');
  const array = avsc.Type.forSchema({ type: 'array', items: 'int' });
  const count = avsc.Type.forSchema('long').toBuffer(2 ** 33);
  t.is(decodeRecord(array, count, 0, false).offset, -1, 'avsc: a block count past any array (RangeError: Invalid array length)');
  const jsonText = { decode: (buf: Buffer) => ({ value: JSON.parse(buf.toString()) as unknown, offset: buf.length }) };
  t.is(decodeRecord(jsonText, Buffer.from('{not json'), 0, false).offset, -1, 'JSON text that does not parse (a SyntaxError)');
  const serialized = { decode: (buf: Buffer) => ({ value: v8.deserialize(buf) as unknown, offset: buf.length }) };
  t.is(decodeRecord(serialized, Buffer.from([0xff, 0x0f, 0x5c, 1, 2]), 0, false).offset, -1, 'node:v8 data that does not deserialize');
  for (const bug of [
    new TypeError("Cannot read properties of undefined (reading 'x')"),
    new RangeError('The value of "offset" is out of range'),
    new ReferenceError('x is not defined'),
  ]) {
    const buggy = {
      decode: (): never => {
        throw bug;
      },
    };
    const err = t.throws(() => decodeRecord(buggy, Buffer.alloc(4), 0, false), { instanceOf: DecoderBug });
    t.is(err!.cause, bug);
    t.true(err!.message.includes(bug.message));
  }
});

for (const onCorrupt of ['error', 'skip'] as const) {
  test(`SegmentLog - a decoder that throws a TypeError fails next() with a DecoderBug, never corruption (onCorrupt '${onCorrupt}')`, (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const codec = createCodec('string');
    const buggy = { ...codec, decode: (buf: Buffer, pos: number) => (buf[pos] === 0x06 ? (undefined as unknown as { x: never }).x : codec.decode(buf, pos)) };
    const log = new SegmentLog(
      dir.dataDir,
      buggy,
      { maxSegmentBytes: 1024 ** 3, maxSegments: Infinity, maxDiskBytes: Infinity, codec: 'null', onCorrupt, channel: 'unit', maxPendingDiskBytes: 0 },
      { onSegment: () => {}, onFault: () => t.fail('no fault expected'), onRecovered: () => {} },
    );
    t.teardown(() => log.close());
    for (const record of ['a', 'bug', 'c']) t.is(log.append(record), 'ok');
    t.true(log.tryFlush());
    t.is(log.next(), 'a');
    const err = t.throws(() => log.next(), { instanceOf: DecoderBug });
    t.true(err!.cause instanceof TypeError);
    t.is(log.records, 2, 'nothing counted as lost');
  });
}

test('SegmentLog - close() hands back the segments it could not remove instead of announcing them itself', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const faulty = new FaultyFileSystem(new ManualClock());
  const log = schemalessLog(dir.dataDir, { onFault: () => t.fail('close() runs no hook') }, faulty.fs);
  t.is(log.append('kept'), 'ok');
  t.true(log.tryFlush());
  faulty.fail('unlink', 'EBUSY', Infinity);
  const leftovers = log.close();
  t.is(leftovers.length, 1);
  t.is(leftovers[0]!.operation, 'remove');
  t.is(faulty.failures.unlink, 3, 'tried three times');
  t.true(HopperError.is(leftovers[0]!.error, 'ERR_HOPPER_IO'));
  t.deepEqual(log.close(), [], 'idempotent');
  faulty.clear();
  t.deepEqual(fs.readdirSync(dir.dataDir), [segmentFileName(1)], 'the file is left');
});

test('SegmentLog - a read that throws something other than a system error is a bug: thrown as it is, never retried as ERR_HOPPER_IO', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  let broken = false;
  const bug = new TypeError('a bug in a read');
  const fileSystem: SegmentFileSystem = {
    ...fs,
    readSync: ((...args: Parameters<typeof fs.readSync>) => {
      if (broken) throw bug;
      return fs.readSync(...args);
    }) as typeof fs.readSync,
  };
  const log = schemalessLog(dir.dataDir, { onFault: (event) => t.fail(`no fault expected: ${event.error.message}`) }, fileSystem);
  t.teardown(() => log.close());
  t.is(log.append('on disk'), 'ok');
  t.true(log.tryFlush());
  broken = true;
  t.is(
    t.throws(() => log.next()),
    bug,
  );
  broken = false;
  t.is(log.records, 1, 'nothing was counted as read or lost');
});

test('decodeRecord - a schemaless record whose view class or view length was damaged does not decode; it is no DecoderBug', (t) => {
  const codec = createCodec(undefined);
  const buf = Buffer.alloc(256);
  const end = codec.encode({ floats: new Float64Array([1.5, -2]) }, buf, 0);
  t.true(end > 0);
  t.deepEqual(decodeRecord(codec, buf, 0, false).value, { floats: new Float64Array([1.5, -2]) }, 'the undamaged record decodes');
  // A host object: '\' (0x5c), the view class number, the byte length (16), the bytes.
  const at = buf.subarray(0, end).findIndex((byte, i) => byte === 0x5c && buf[i + 2] === 16);
  t.true(at > 0, 'the view is found in the encoded bytes');
  const badClass = Buffer.from(buf.subarray(0, end));
  badClass[at + 1] = 0x7f;
  t.is(decodeRecord(codec, badClass, 0, false).offset, -1, 'a view class number no class has');
  const badLength = Buffer.from(buf.subarray(0, end));
  badLength[at + 2] = 15;
  t.is(decodeRecord(codec, badLength, 0, false).offset, -1, '15 bytes are no whole Float64Array');
});

// Write-behind: the log's background writes, with the fault seam holding them in flight.

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** The next record of a log that reads ahead in the background: WAIT from next() means "being read". */
async function nextRecord(log: SegmentLog): Promise<unknown> {
  for (;;) {
    const value = log.next();
    if (value instanceof LostRecords) throw new Error('records were lost');
    if (value !== WAIT) return value;
    await log.idle();
  }
}

test('SegmentLog - write-behind: a fault that arrives while a write is in flight is retried; records appended meanwhile are kept, in order', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const clock = new ManualClock();
  const faulty = new FaultyFileSystem(clock);
  const faults: string[] = [];
  let recovered = 0;
  const log = schemalessLog(dir.dataDir, { onFault: (event) => faults.push(event.error.message), onRecovered: () => recovered++ }, faulty.fs, {
    maxPendingDiskBytes: 4 * 1024 * 1024,
  });
  t.teardown(() => log.close());
  const records = Array.from({ length: 3_000 }, (_, i) => `record ${i} ${'z'.repeat(i % 90)}`);
  for (const record of records.slice(0, 1_000)) t.is(log.append(record), 'ok');
  faulty.hold('write');
  t.true(log.tryFlush());
  await faulty.whenHeld('write');
  // The disk fails while the write is under way: the write meets the fault when it completes.
  faulty.fail('write', 'EIO', 1);
  for (const record of records.slice(1_000, 2_000)) t.is(log.append(record), 'ok', 'accepted while the write is in flight');
  t.true(log.tryFlush());
  faulty.release('write');
  await until(() => log.fault !== undefined, 'the write fault');
  t.is(faults.length, 1);
  t.regex(faults[0]!, /writing a block failed on .*EIO/);
  t.is(log.append('refused'), 'fault', 'refused while writes fail');
  // The retry writes what waits; nothing is written twice or lost.
  t.is(clock.nextDelay, 5);
  t.true(clock.runNext());
  await log.idle();
  t.is(log.fault, undefined);
  t.is(log.pendingBytes, 0);
  // The log tells of the recovery on a tick of its own.
  await until(() => recovered >= 1, 'the recovery reported');
  for (const record of records.slice(2_000)) t.is(log.append(record), 'ok');
  t.true(log.tryFlush());
  await log.idle();
  for (const record of records) t.is(await nextRecord(log), record);
  t.is(log.records, 0);
});

// Serial: it counts the descriptors of the whole process, which concurrent tests would move.
test.serial('SegmentLog - write-behind: close() while writes are in flight leaves no file, writes nothing after, and leaks no descriptor', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const faulty = new FaultyFileSystem(new ManualClock());
  const before = openFds();
  const log = schemalessLog(dir.dataDir, {}, faulty.fs, { maxPendingDiskBytes: 4 * 1024 * 1024, maxSegmentBytes: 200_000 });
  for (let i = 0; i < 5_000; i++) t.is(log.append(`record ${i} ${'y'.repeat(100)}`), 'ok');
  faulty.hold('write');
  t.true(log.tryFlush());
  await faulty.whenHeld('write');
  t.true(log.segmentCount > 1);
  t.true(log.pendingBytes > 0);
  // Calls are counted when they run: the held one counts once released.
  const writesBefore = faulty.calls.write + faulty.heldCount('write');
  t.deepEqual(log.close(), []);
  t.deepEqual(fs.readdirSync(dir.dataDir), [], 'every file is gone at close, the one being written to included');
  faulty.release('write');
  await log.idle();
  t.is(faulty.calls.write, writesBefore, 'the write in flight was the last: nothing is written after close');
  t.deepEqual(fs.readdirSync(dir.dataDir), []);
  await until(() => openFds() === before, 'the descriptors closed');
  t.is(openFds(), before);
});

test('SegmentLog - write-behind: a reader that caught up reads blocks still waiting for the disk from memory, and their segment goes without being written', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const faulty = new FaultyFileSystem(new ManualClock());
  const segments: string[] = [];
  const log = schemalessLog(dir.dataDir, { onSegment: (event) => segments.push(event.action) }, faulty.fs, {
    maxPendingDiskBytes: 4 * 1024 * 1024,
    maxSegmentBytes: 100_000,
  });
  t.teardown(() => log.close());
  faulty.hold('write');
  const records = Array.from({ length: 4_000 }, (_, i) => ({ i, text: `record ${i}` }));
  for (const record of records) t.is(log.append(record), 'ok');
  t.true(log.tryFlush());
  await faulty.whenHeld('write');
  t.true(log.segmentCount > 1);
  // Nothing of it is readable from the files: the disk is stalled.
  for (const record of records) t.deepEqual(log.next(), record);
  t.is(log.records, 0);
  faulty.release('write');
  await log.idle();
  t.is(log.pendingBytes, 0);
  t.is(log.segmentCount, 0, 'every segment read through is gone');
  t.deepEqual(fs.readdirSync(dir.dataDir), []);
  t.true(faulty.calls.write <= 2, `${faulty.calls.write} writes: only the one in flight, nothing after`);
});
