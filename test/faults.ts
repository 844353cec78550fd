import { once } from 'node:events';
import fs from 'node:fs';
import test from 'ava';
import { HopperError, type DropEvent, type FaultEvent, type HopperOptions } from '../lib/index.js';
import { HopperStreams } from '../lib/streams.js';
import { ManualClock } from './helpers/clock.js';
import { within } from './helpers/wait.js';
import { FaultyFileSystem } from './helpers/faulty-fs.js';
import { collect, diskSettled, nextTurn, plain, point, pointSchema, tempDataDir, until, type Point } from './helpers/index.js';

// Faults injected through the segment log's file seam: no real disk has to fail. The log's
// retries wait on a clock the test drives: no test sleeps through a retry.

function faultyHopper(t: { teardown(fn: () => void): void }, options: HopperOptions = {}) {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const clock = new ManualClock();
  const faulty = new FaultyFileSystem(clock);
  const hopper = new HopperStreams<Point>(
    { dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 4_000, ...options },
    { fileSystem: faulty.fs },
  );
  const faults: FaultEvent[] = [];
  hopper.on('fault', (event) => faults.push(event));
  return { hopper, faulty, faults, dir, clock };
}

for (const code of ['ENOSPC', 'EIO'] as const) {
  test(`faults - ${code} on block writes: accepted records are kept and retried, new disk-bound records are handed back with ERR_HOPPER_IO`, async (t) => {
    const { hopper, faulty, faults, clock } = faultyHopper(t, { onFull: 'error' });
    const sender = hopper.sender();
    for (let i = 0; i < 100; i++) hopper.send(point(i));
    await diskSettled(hopper); // the pending block is handed over when the event loop turns, and written behind
    faulty.fail('write', code, Infinity);
    // Accepted before the disk failed: the block holding these fails to write, and is kept for a retry.
    for (let i = 100; i < 110; i++) hopper.send(point(i));
    await until(() => faults.length >= 1, 'the write fault');
    t.is(faults[0]!.operation, 'write');
    t.regex(faults[0]!.error.message, new RegExp(code));
    const refused: Point[] = [];
    for (let i = 110; i < 120; i++) {
      const err = t.throws(() => hopper.send(point(i)), { instanceOf: HopperError });
      t.is(err!.code, 'ERR_HOPPER_IO');
      t.is((err!.cause as NodeJS.ErrnoException).code, code);
      refused.push(err!.record as Point);
    }
    t.deepEqual(
      refused.map((record) => record.seq),
      Array.from({ length: 10 }, (_, k) => 110 + k),
      'each refused record is handed back',
    );
    // The writable reports the same through its callback (and, as any failed Node write, ends).
    hopper.writable.on('error', () => {});
    const writeError = await new Promise<Error | null | undefined>((resolve) => hopper.writable.write(point(120), resolve));
    t.is((writeError as HopperError).code, 'ERR_HOPPER_IO');
    t.deepEqual((writeError as HopperError).record, point(120));

    faulty.clear();
    t.true(clock.runNext(), 'a retry was armed'); // it goes through, in the background
    await diskSettled(hopper);
    t.is(clock.pending, 0, 'no retry is armed once the write went through');
    for (let i = 121; i < 130; i++) sender.write(point(i));
    sender.end();
    const out = (await collect<Point>(hopper.readable)).map((record) => record.seq);
    const accepted = [...Array.from({ length: 110 }, (_, k) => k), ...Array.from({ length: 9 }, (_, k) => 121 + k)];
    t.deepEqual(out, accepted, 'every accepted record arrives, in order, once');
    t.true(faulty.failures.write >= 1);
  });
}

test("faults - with onFull 'block', writes that need the disk wait while it fails and go on once it recovers", async (t) => {
  const { hopper, faulty, faults, clock } = faultyHopper(t, { onFull: 'block' });
  faulty.fail('write', 'ENOSPC', Infinity);
  const done: number[] = [];
  hopper.writable.write(point(0), (err) => (err ? t.fail(err.message) : done.push(0)));
  await until(() => faults.length === 1, 'the write fault'); // its block fails to write: the disk is now known to fail
  for (let i = 1; i < 20; i++) hopper.writable.write(point(i), (err) => (err ? t.fail(err.message) : done.push(i)));
  // Retries that fail again: the writes stay held.
  for (let retry = 0; retry < 3; retry++) {
    t.true(clock.runNext());
    await until(() => faulty.failures.write >= retry + 2 && clock.pending === 1, 'the retry failing again');
  }
  t.true(faulty.failures.write >= 4);
  t.deepEqual(done, [0], 'writes that need the disk are held while it fails');
  faulty.clear();
  t.true(clock.runNext()); // the retry that goes through
  hopper.writable.end();
  const out = await collect<Point>(hopper.readable);
  t.deepEqual(
    plain(out),
    Array.from({ length: 20 }, (_, i) => point(i)),
  );
  t.is(done.length, 20);
});

test('faults - EMFILE when creating a segment is retried; nothing is lost', async (t) => {
  const { hopper, faulty, faults, clock } = faultyHopper(t);
  faulty.fail('create', 'EMFILE', 3);
  // Accepted at once: the segment is created behind the producer's back, and that fails.
  for (let i = 0; i < 100; i++) hopper.send(point(i));
  await until(() => faults.length >= 1, 'the fault creating a segment');
  // Known to fail now: a record that needs the disk is handed back.
  const err = t.throws(() => hopper.send(point(100)), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_IO');
  t.deepEqual(err!.record, point(100));
  // Retried until the segment is created and everything waiting is on disk.
  await clock.runUntil(diskSettled(hopper), 'the segment created once the shortage ended');
  hopper.writable.end();
  const out = await collect<Point>(hopper.readable);
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: 100 }, (_, i) => i),
  );
  t.is(faulty.failures.create, 3);
  t.true(faults.some((event) => event.operation === 'write' && /EMFILE/.test(event.error.message)));
});

test('faults - short writes are completed: the segment holds every byte', async (t) => {
  const { hopper, faulty } = faultyHopper(t);
  faulty.shortenWrites(5);
  for (let i = 0; i < 500; i++) hopper.send(point(i));
  hopper.writable.end();
  const out = await collect<Point>(hopper.readable);
  t.deepEqual(
    plain(out),
    Array.from({ length: 500 }, (_, i) => point(i)),
  );
});

test('faults - EIO on reads is retried, and delivery goes on when reads work again', async (t) => {
  const { hopper, faulty, faults, clock } = faultyHopper(t);
  for (let i = 0; i < 300; i++) hopper.send(point(i));
  await diskSettled(hopper);
  faulty.fail('read', 'EIO', 3);
  hopper.writable.end();
  const out = await clock.runUntil(collect<Point>(hopper.readable), 'the delivery of every record');
  t.deepEqual(
    out.map((record) => record.seq),
    Array.from({ length: 300 }, (_, i) => i),
  );
  t.is(faulty.failures.read, 3);
  t.true(faults.filter((event) => event.operation === 'read').length >= 3);
});

test('faults - reads that keep failing end in ERR_HOPPER_IO on the readable, naming the file', async (t) => {
  const { hopper, faulty, faults, clock } = faultyHopper(t);
  for (let i = 0; i < 50; i++) hopper.send(point(i));
  await diskSettled(hopper);
  faulty.fail('read', 'EIO', Infinity);
  const errored = once(hopper.readable, 'error');
  hopper.readable.resume();
  const [err] = (await clock.runUntil(errored, "the readable's error")) as [HopperError];
  t.is(err.code, 'ERR_HOPPER_IO');
  t.regex(err.message, /reading a segment failed on .*000000000001\.avro: EIO/);
  // Given up on only after 10 failed reads in a row that went on for 5 s.
  t.true(faulty.failures.read >= 10, `${faulty.failures.read} failed reads`);
  t.true(clock.now() >= 5_000, `given up after ${clock.now()} ms`);
  t.is(faults.filter((event) => event.operation === 'read').length, faulty.failures.read - 1, 'each retried failure was reported');
});

test('faults - a failed delete of a read segment does not stop delivery; it still counts against the caps until removed', async (t) => {
  const { hopper, faulty, faults, dir, clock } = faultyHopper(t, { maxSegmentBytes: 1_000 });
  const sealed: number[] = [];
  hopper.on('segment', (event) => event.action === 'sealed' && sealed.push(event.records));
  for (let i = 0; i < 200; i++) hopper.send(point(i));
  await diskSettled(hopper);
  const segmentsBefore = hopper.stats().segments;
  t.true(segmentsBefore > 3);
  faulty.fail('unlink', 'EBUSY', Infinity);
  const iterator = hopper.readable[Symbol.asyncIterator]();
  const out: number[] = [];
  // Read past the first segment: its removal (in the background) fails.
  while (out.length <= sealed[0]!) out.push(((await iterator.next()).value as Point).seq);
  await until(() => faults.some((event) => event.operation === 'remove'), 'the failed removal');
  const stuck = faults.find((event) => event.operation === 'remove')!.file;
  t.is(hopper.stats().segments, segmentsBefore, 'the undeleted file still counts');
  t.true(dir.files().some((file) => stuck.endsWith(file)));
  const removed = new Promise<void>((resolve) => {
    hopper.on('segment', (event) => {
      if (event.action === 'removed' && event.file === stuck) resolve();
    });
  });
  faulty.clear();
  while (out.length < 200) out.push(((await iterator.next()).value as Point).seq);
  t.deepEqual(
    out,
    Array.from({ length: 200 }, (_, i) => i),
  );
  await clock.runUntil(removed, `the removal of ${stuck} once the fault cleared`);
  t.false(
    dir.files().some((file) => stuck.endsWith(file)),
    'removed once the fault cleared',
  );
  hopper.destroy();
});

for (const [outageMs, label] of [
  [500, '500 ms'],
  [3_000, '3 s'],
] as const) {
  test(`faults - an fd shortage (EMFILE) of ${label} while reading is waited out with backoff: nothing is lost`, async (t) => {
    const { hopper, faulty, faults, clock } = faultyHopper(t, { maxSegmentBytes: 2_000 });
    const total = 3_000;
    for (let i = 0; i < total; i++) hopper.send(point(i));
    await diskSettled(hopper);
    t.true(hopper.stats().segments > 10);
    const iterator = hopper.readable[Symbol.asyncIterator]();
    const out: number[] = [];
    for (let i = 0; i < 100; i++) out.push(((await iterator.next()).value as Point).seq);
    // No more fds: neither the next segment can be opened nor the current one read.
    faulty.fail('open', 'EMFILE', Infinity);
    faulty.fail('read', 'EMFILE', Infinity);
    let cleared = false;
    const clearOnTime = (): void => {
      if (cleared || clock.now() < outageMs) return;
      cleared = true;
      faulty.clear();
    };
    hopper.writable.end();
    const rest = (async () => {
      for (;;) {
        const next = await iterator.next();
        if (next.done) break;
        out.push((next.value as Point).seq);
      }
    })();
    await clock.runUntil(rest, 'the delivery of every record', clearOnTime);
    t.true(cleared, 'the readable waited for the shortage to end');
    t.deepEqual(
      out,
      Array.from({ length: total }, (_, i) => i),
      'every record, in order, once',
    );
    const readFaults = faults.filter((event) => event.operation === 'read').length;
    t.true(readFaults >= 1, 'the shortage was reported with fault events');
    // Retried with a delay doubling from 5 ms to 1 s, not every few ms (that would be hundreds).
    t.true(readFaults <= 20, `${readFaults} read faults during the shortage`);
  });
}

test("destroy() - a 'fault' listener that throws for a segment left at close: the lock is released first, and the exception is the readable's error", async (t) => {
  const { hopper, faulty, dir } = faultyHopper(t, { name: 'left' });
  for (let i = 0; i < 50; i++) hopper.send(point(i));
  await diskSettled(hopper);
  faulty.fail('unlink', 'EBUSY', Infinity);
  const thrown = new Error('a fault listener that throws');
  const seen: FaultEvent[] = [];
  hopper.on('fault', (event) => {
    seen.push(event);
    throw thrown;
  });
  const errored = once(hopper.readable, 'error');
  hopper.destroy();
  const [err] = (await errored) as [Error];
  t.is(err, thrown, 'the exception is reported, not swallowed');
  t.is(seen.length, 1);
  t.like(seen[0], { operation: 'remove' });
  t.regex(seen[0]!.error.message, /removing a segment at close failed on .*EBUSY/);
  t.true(
    dir.files().some((file) => seen[0]!.file.endsWith(file)),
    'the file that could not go is left',
  );
  // The lock went before the listener ran: the channel opens again, and removes the leftover.
  const again = new HopperStreams<Point>({ dataDir: dir.dataDir, name: 'left', schema: pointSchema });
  t.deepEqual(
    dir.files().filter((file) => file.endsWith('.avro')),
    [],
  );
  again.destroy();
});

test("faults - with onFull 'drop-oldest', a segment that cannot be removed to make room is announced once, left counting against the caps, and removed by the retry", async (t) => {
  const { hopper, faulty, faults, clock } = faultyHopper(t, { onFull: 'drop-oldest', maxSegmentBytes: 1_000, maxDiskBytes: 6_000 });
  const drops: DropEvent[] = [];
  hopper.on('drop', (event) => drops.push(event));
  let sent = 0;
  // Fill the disk: sealed segments, nothing dropped yet.
  while (drops.length === 0) {
    hopper.send(point(sent++));
    if (sent % 10 === 0) await diskSettled(hopper);
  }
  t.is(drops[0]!.policy, 'drop-oldest');
  // Segment files only: the drafts new segments are prepared in still go.
  faulty.fail('unlink', 'EBUSY', Infinity, (file) => file.endsWith('.avro'));
  const before = drops.length;
  // Until room is needed again, then until no segment can go any more.
  while (!drops.slice(before).some((event) => event.file === undefined) && sent < 5_000) {
    hopper.send(point(sent++));
    if (sent % 10 === 0) await diskSettled(hopper);
  }
  await diskSettled(hopper);
  const removeFaults = faults.filter((event) => event.operation === 'remove');
  t.is(removeFaults.length, 1, 'announced once, not once per segment or write');
  t.regex(removeFaults[0]!.error.message, /removing a segment to make room failed on .*EBUSY/);
  t.true(HopperError.is(removeFaults[0]!.error, 'ERR_HOPPER_IO'));
  // A segment dropped in the background had its records dropped (counted, announced with its
  // file); its file, which could not go, is left and counts against the caps until a retry.
  const left = drops.slice(before).flatMap((event) => (event.file === undefined ? [] : [event.file]));
  t.true(left.length > 0);
  for (const file of left) t.true(fs.existsSync(file), `${file} is left`);
  t.true(
    drops.slice(before).some((event) => event.policy === 'drop-oldest' && event.file === undefined),
    'with no segment that can go, the incoming records are dropped',
  );
  const { diskBytes, segments } = hopper.stats();
  t.true(diskBytes <= 6_000 + 1_000 + 200, `${diskBytes} bytes on disk: the cap, and at most one segment past it`);
  t.true(segments >= left.length);
  faulty.clear();
  // The retry removes what was left.
  t.true(clock.runNext(), 'a retry was armed');
  await until(() => left.every((file) => !fs.existsSync(file)), 'the files left removed by the retry');
  const dropsBefore = drops.length;
  while (!drops.slice(dropsBefore).some((event) => event.file !== undefined)) {
    hopper.send(point(sent++));
    if (sent % 10 === 0) await diskSettled(hopper);
  }
  t.pass('a segment is removed to make room again once removals work');
  hopper.destroy();
});

test('faults - a stale segment that cannot be checked at open (EACCES) is left untouched and announced with a fault', async (t) => {
  const first = faultyHopper(t, { name: 'stale' });
  for (let i = 0; i < 50; i++) first.hopper.send(point(i));
  await diskSettled(first.hopper);
  // A segment left by a run that ended: its removal at close fails.
  first.faulty.fail('unlink', 'EBUSY', Infinity);
  first.hopper.destroy();
  await once(first.hopper.readable, 'close');
  const left = first.dir.files().filter((file) => file.endsWith('.avro'));
  t.is(left.length, 1);

  const faulty = new FaultyFileSystem(new ManualClock());
  faulty.fail('open', 'EACCES', 1);
  const second = new HopperStreams<Point>({ dataDir: first.dir.dataDir, name: 'stale', schema: pointSchema }, { fileSystem: faulty.fs });
  const faults: FaultEvent[] = [];
  second.on('fault', (event) => faults.push(event));
  await nextTurn();
  t.is(faults.length, 1, 'announced once the opener can listen');
  t.is(faults[0]!.operation, 'remove');
  t.regex(faults[0]!.error.message, /checking a stale segment failed on .*000000000001\.avro: EACCES/);
  t.deepEqual(
    first.dir.files().filter((file) => file.endsWith('.avro')),
    left,
    'left untouched',
  );
  second.destroy();

  // Once it can be checked, it is recognised as ours and removed.
  const third = new HopperStreams<Point>({ dataDir: first.dir.dataDir, name: 'stale', schema: pointSchema });
  t.deepEqual(
    first.dir.files().filter((file) => file.endsWith('.avro')),
    [],
  );
  third.destroy();
});

test('faults - a block write retried after ENOSPC writes large Buffers as they were accepted, though the producer reused them meanwhile', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const faulty = new FaultyFileSystem();
  const hopper = new HopperStreams<Buffer>({ dataDir: dir.dataDir, maxMemoryBytes: 0 }, { fileSystem: faulty.fs });
  faulty.fail('write', 'ENOSPC', Infinity);
  const faulted = once(hopper, 'fault');
  const buffers = [1, 2, 3].map((n) => Buffer.alloc(65_536, n));
  for (const buffer of buffers) hopper.send(buffer);
  await within(faulted, 'a failed block write');
  for (const buffer of buffers) buffer.fill(0);
  faulty.clear();
  void hopper.close();
  const out = await collect<Buffer>(hopper.readable);
  t.deepEqual(
    out,
    [1, 2, 3].map((n) => Buffer.alloc(65_536, n)),
  );
});
