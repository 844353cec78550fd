import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import avsc from 'avsc';
import { createHopperStreams, type SegmentEvent } from '../lib/index.js';
import { createCodec } from '../lib/codec.js';
import { decodeHeader } from '../lib/ocf.js';
import { SegmentLog, segmentFileName, type SegmentFileSystem } from '../lib/segments.js';
import { collect, plain, point, pointSchema, tempDataDir, type Point } from './helpers/index.js';

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
    const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: codec === 'deflate' ? 4_000 : 20_000, codec });
    const aside = path.join(dir.dataDir, 'aside');
    const sealed = copySealedSegments(hopper, aside);
    const written = Array.from({ length: 3_000 }, (_, i) => point(i));
    for (const record of written) hopper.send(record);
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
  await new Promise((resolve) => setImmediate(resolve));
  hopper.send('héllo');
  await new Promise((resolve) => setImmediate(resolve));
  hopper.send({ a: [1, 'two', null] });
  await new Promise((resolve) => setImmediate(resolve));
  t.is(sealed.length, 3);
  const decoded = [];
  for (const event of sealed) decoded.push(...(await decodeFile(path.join(aside, path.basename(event.file)))));
  t.deepEqual(decoded[0], Buffer.from([0, 1, 2, 255]));
  t.is(decoded[1], 'héllo');
  t.deepEqual(plain(decoded[2]), { json: '{"a":[1,"two",null]}' });
  hopper.destroy();
});

test('segment files - live in <dataDir>/<name>/ with zero-padded increasing .avro names', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, name: 'events', schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 2_000 });
  for (let i = 0; i < 500; i++) hopper.send(point(i));
  hopper.writable.end();
  await new Promise((resolve) => setImmediate(resolve));
  const files = dir.files();
  const segments = files.filter((file) => file.endsWith('.avro'));
  t.true(segments.length >= 3);
  t.deepEqual(segments, segments.map((_, i) => path.join('events', segmentFileName(i + 1))));
  t.deepEqual(files.filter((file) => !file.endsWith('.avro')), [path.join('events', 'hopper.lock')]);
  t.is(segmentFileName(42), '000000000042.avro');
  t.is(hopper.stats().segments, segments.length);
  t.is(hopper.stats().diskBytes, segments.reduce((sum, file) => sum + fs.statSync(path.join(dir.dataDir, file)).size, 0));
  await collect(hopper.readable);
  t.deepEqual(dir.files(), []);
});

test('segment files - the reader deletes each sealed segment as soon as it has read it through', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 2_000 });
  const events: string[] = [];
  hopper.on('segment', (event) => events.push(`${event.action} ${path.basename(event.file)}`));
  for (let i = 0; i < 300; i++) hopper.send(point(i));
  await new Promise((resolve) => setImmediate(resolve));
  const before = hopper.stats().segments;
  const iterator = hopper.readable[Symbol.asyncIterator]();
  let read = 0;
  t.true(events.includes(`sealed ${segmentFileName(1)}`));
  // Read records until the first segment has been read through: it must be gone right then.
  while (!events.includes(`removed ${segmentFileName(1)}`)) {
    await iterator.next();
    read++;
  }
  t.is(hopper.stats().segments, before - 1);
  t.false(fs.existsSync(path.join(hopper.path, segmentFileName(1))));
  t.true(read < 300);
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
    { maxSegmentBytes: 1024 ** 3, maxSegments: Infinity, maxDiskBytes: Infinity, codec: 'null', onCorrupt: 'error', channel: 'unit' },
    { onSegment: (event) => events.push(event), onFault: (event) => t.fail(event.error.message), onRecovered: () => {} },
    fileSystem,
  );
  for (let i = 0; i < 20_000; i++) t.is(log.append(point(i)), 'ok');
  t.true(log.tryFlush());
  const bytes = writes.reduce((a, b) => a + b, 0);
  t.is(bytes, log.bytes);
  t.true(writes.length < 20_000 / 100, `${writes.length} writes for 20000 records`);
  t.true(writes.every((n) => n <= 64 * 1024 + 1024), 'blocks stay near the 64 KiB target');
  for (let i = 0; i < 20_000; i++) t.is((log.next() as Point).seq, i);
  t.is(log.records, 0);
  t.is(log.segmentCount, 0, 'a log read through holds no files');
  t.deepEqual(events.map((event) => event.action), ['removed']);
  log.close();
});

test('SegmentLog - maxDiskBytes and maxSegments refuse appends without writing anything', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const codec = createCodec(pointSchema as never);
  const hooks = { onSegment: () => {}, onFault: () => t.fail('no fault expected'), onRecovered: () => {} };
  const bySize = new SegmentLog(dir.dataDir, codec, { maxSegmentBytes: 1_000, maxSegments: Infinity, maxDiskBytes: 3_000, codec: 'null', onCorrupt: 'error', channel: 'a' }, hooks);
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
  const byCount = new SegmentLog(sub, codec, { maxSegmentBytes: 1, maxSegments: 2, maxDiskBytes: Infinity, codec: 'null', onCorrupt: 'error', channel: 'b' }, hooks);
  t.is(byCount.append(point(0)), 'ok');
  t.is(byCount.append(point(1)), 'ok');
  t.is(byCount.append(point(2)), 'full');
  t.is(byCount.segmentCount, 2);
  t.is(fs.readdirSync(sub).length, 2);
  byCount.close();
  t.deepEqual(fs.readdirSync(sub), []);
});
