import test from 'ava';
import { createHopperStreams } from '../lib/index.js';
import { collect, point, pointSchema, tempDataDir, type Point } from './helpers/index.js';

const gc = (globalThis as { gc?: () => void }).gc;

function heapAfterGc(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

test('memory bound - with the consumer paused, memoryBytes never passes maxMemoryBytes and the rest spills', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const budget = 64 * 1024;
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: budget, maxSegmentBytes: 256 * 1024 });
  let peak = 0;
  for (let i = 0; i < 100_000; i++) {
    hopper.writable.write(point(i));
    const { memoryBytes } = hopper.stats();
    if (memoryBytes > peak) peak = memoryBytes;
  }
  const stats = hopper.stats();
  t.true(peak <= budget, `peak ${peak} of ${budget}`);
  t.true(peak > budget - 200, 'memory was used up to the budget before spilling');
  t.is(stats.memoryRecords + stats.diskRecords, 100_000);
  t.true(stats.spilled >= 95_000);
  t.true(stats.segments > 1);
  hopper.writable.end();
  const out = await collect<Point>(hopper.readable);
  t.is(out.length, 100_000);
});

test('memory bound - heap growth stays bounded however far the writer runs ahead', async (t) => {
  t.truthy(gc, 'run with --expose-gc');
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const budget = 1024 * 1024;
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: budget });
  const record = (i: number): Point => ({ seq: i, label: `label-${i}-${'y'.repeat(60)}`, score: i / 3 });
  // Fill memory first, so what we then measure is what writing far beyond the budget adds.
  let i = 0;
  while (hopper.stats().spilled === 0) hopper.send(record(i++));
  const before = heapAfterGc();
  const writes = 400_000; // about 40 MiB of records, 40 times the budget
  for (let n = 0; n < writes; n++) hopper.send(record(i++));
  const growth = heapAfterGc() - before;
  const stats = hopper.stats();
  t.true(stats.diskBytes > 30 * budget, `${stats.diskBytes} bytes went to disk`);
  t.true(growth < 4 * 1024 * 1024, `heap grew by ${growth} bytes while ${writes} records went to disk`);
  hopper.destroy();
});

test('memory bound - once a record spills, later writes follow it to disk until the reader takes a record', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  // Without a schema a string record is estimated at its UTF-8 length: exact sizes.
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 100 });
  hopper.writable.write('a'.repeat(40));
  hopper.writable.write('b'.repeat(40));
  hopper.writable.write('c'.repeat(30)); // 110 bytes would pass the budget: spills
  hopper.writable.write('d'.repeat(10)); // would fit in the 20 bytes left, but follows c to disk
  t.like(hopper.stats(), { memoryRecords: 2, memoryBytes: 80, diskRecords: 2, spilled: 2 });

  t.is(hopper.readable.read(), 'a'.repeat(40)); // the reader takes records: memory frees room
  t.is(hopper.stats().memoryRecords, 0);
  hopper.writable.write('e'.repeat(10)); // not to disk (handed to the waiting reader, or held in memory)
  t.like(hopper.stats(), { diskRecords: 0, spilled: 2 });

  hopper.writable.end();
  t.deepEqual(await collect<string>(hopper.readable), ['b'.repeat(40), 'c'.repeat(30), 'd'.repeat(10), 'e'.repeat(10)]);
});

test('memory bound - a record too large for memory spills alone: once the reader has taken it, memory is used again', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 100 });
  hopper.writable.write('x'.repeat(150)); // larger than the whole budget: disk
  hopper.writable.write('y'.repeat(10)); // follows it
  t.like(hopper.stats(), { memoryRecords: 0, diskRecords: 2, spilled: 2 });
  t.is(hopper.readable.read(), 'x'.repeat(150));
  hopper.writable.write('z'.repeat(10));
  t.like(hopper.stats(), { diskRecords: 0, spilled: 2 });
  hopper.writable.end();
  t.deepEqual(await collect<string>(hopper.readable), ['y'.repeat(10), 'z'.repeat(10)]);
});
