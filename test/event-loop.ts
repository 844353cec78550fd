import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createHopperStreams, type DiskBehindEvent } from '../lib/index.js';
import { HopperStreams } from '../lib/streams.js';
import { spawnChild } from './helpers/children.js';
import { ManualClock } from './helpers/clock.js';
import { FaultyFileSystem } from './helpers/faulty-fs.js';
import { collect, diskSettled, nextTurn, tempDataDir, until } from './helpers/index.js';
import { mountSlowDisk } from './helpers/slow-disk.js';
import { within } from './helpers/wait.js';

// Design invariant 7: the event loop never waits for the disk. Blocks are written behind the
// producer's back; what waits for the disk is bounded (maxPendingDiskBytes), and past the bound
// the oldest bytes are written synchronously, counted and announced. No test here measures time:
// they count calls, turns of the event loop and records.

const syncIoChild = fileURLToPath(new URL('helpers/sync-io-child.ts', import.meta.url));

/** Runs the --trace-sync-io child; its stderr, and the synchronous file calls it reported between `begin` and `end`. */
async function traceSyncIo(
  t: ExecutionContext,
  args: string[],
  leftovers: string[] = [],
): Promise<{ stderr: string; between(begin: string, end: string): string[] }> {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const child = spawnChild(t, process.execPath, ['--trace-sync-io', '--import', 'tsx/esm', syncIoChild, dir.dataDir, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
  });
  const [code] = (await within(once(child, 'close'), 'the spilling child exiting')) as [number | null];
  t.is(code, 0, stderr.slice(-2_000));
  t.deepEqual(dir.files(), leftovers, 'the channel left nothing behind');
  const between = (begin: string, end: string): string[] => {
    const from = stderr.indexOf(begin);
    const to = stderr.indexOf(end);
    t.true(from >= 0 && to > from, stderr.slice(-2_000));
    return stderr
      .slice(from, to)
      .split('\n')
      .filter((line) => line.includes('Detected use of sync API'));
  };
  return { stderr, between };
}

/** The JSON a child printed after `marker`. */
function reported<T>(stderr: string, marker: string): T {
  return JSON.parse(stderr.slice(stderr.indexOf(marker) + marker.length).split('\n')[0]!) as T;
}

/** The stack lines of the first synchronous calls reported after `marker`, for a failure message. */
function firstStacks(stderr: string, marker: string): string {
  return stderr.slice(stderr.indexOf(marker), stderr.indexOf(marker) + 3_000);
}

test('.send() - a steady spill over many segments makes no synchronous file call (node --trace-sync-io): creating, writing, sealing and closing segments all run in the background', async (t) => {
  const turns = 300; // 30,000 records of about 150 bytes: about 4.5 MB, some 35 segments of 128 KiB
  const { stderr, between } = await traceSyncIo(t, [String(turns)]);
  const steady = between('STEADY BEGIN', 'STEADY END');
  const summary = reported<{ sent: number; diskBytes: number; segments: number; syncWrites: number; sealed: number }>(stderr, 'STEADY END');
  t.true(summary.diskBytes > 2 * 1024 * 1024, `${summary.diskBytes} bytes spilled in the steady phase and before`);
  t.true(summary.sealed >= 10, `${summary.sealed} segments created, filled and sealed in the steady phase`);
  t.is(summary.syncWrites, 0);
  t.deepEqual(steady, [], firstStacks(stderr, 'STEADY BEGIN'));
  // The drain opens, reads ahead, closes and removes every segment in the background.
  const drain = between('DRAIN BEGIN', 'DRAIN END');
  const drained = reported<{ read: number; removed: number }>(stderr, 'DRAIN END');
  t.is(drained.read, summary.sent);
  t.true(drained.removed >= summary.sealed, `${drained.removed} segments removed while draining`);
  t.deepEqual(drain, [], firstStacks(stderr, 'DRAIN BEGIN'));
  // The tracer does see what the channel does synchronously: opening it, before the steady phase.
  t.true(stderr.slice(0, stderr.indexOf('STEADY BEGIN')).includes('Detected use of sync API'), 'the tracer reports synchronous calls at all');
});

test('.send() - durable: a steady spill over many segments and a drain across them make no synchronous file call (node --trace-sync-io): segment files are created, opened for reading and closed in the background', async (t) => {
  // Every record is written through, group commits sync it, and the drain acknowledges what it
  // reads (ack 'delivered'): the ledger file is written and segments removed in the background too.
  const { stderr, between } = await traceSyncIo(t, ['300', 'durable'], [path.join('events', 'hopper.ledger')]);
  const steady = between('STEADY BEGIN', 'STEADY END');
  const summary = reported<{ sent: number; diskBytes: number; syncWrites: number; sealed: number }>(stderr, 'STEADY END');
  t.true(summary.diskBytes > 2 * 1024 * 1024, `${summary.diskBytes} bytes on disk`);
  t.true(summary.sealed >= 10, `${summary.sealed} segments created, filled and sealed in the steady phase`);
  t.is(summary.syncWrites, 0);
  t.deepEqual(steady, [], firstStacks(stderr, 'STEADY BEGIN'));
  const drain = between('DRAIN BEGIN', 'DRAIN END');
  const drained = reported<{ read: number; removed: number }>(stderr, 'DRAIN END');
  t.is(drained.read, summary.sent);
  t.true(drained.removed >= summary.sealed, `${drained.removed} segments read through, acknowledged and removed while draining`);
  t.deepEqual(drain, [], firstStacks(stderr, 'DRAIN BEGIN'));
});

test("onFull 'drop-oldest' - a full disk that drops the oldest segment again and again makes no synchronous file call (node --trace-sync-io)", async (t) => {
  const { stderr, between } = await traceSyncIo(t, ['300', 'drop-oldest']);
  const steady = between('STEADY BEGIN', 'STEADY END');
  const summary = reported<{ sent: number; dropped: number; removed: number; syncWrites: number }>(stderr, 'STEADY END');
  t.true(summary.removed >= 10, `${summary.removed} segments dropped and removed in the steady phase`);
  t.true(summary.dropped > 0);
  t.is(summary.syncWrites, 0);
  t.deepEqual(steady, [], firstStacks(stderr, 'STEADY BEGIN'));
});

test('.send() - a disk that stalls: accepted at once while bytes wait; past maxPendingDiskBytes, the oldest are written synchronously, counted and announced once', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const faulty = new FaultyFileSystem(new ManualClock());
  const maxPendingDiskBytes = 256 * 1024;
  const hopper = new HopperStreams<Buffer>({ dataDir: dir.dataDir, maxMemoryBytes: 0, maxPendingDiskBytes }, { fileSystem: faulty.fs });
  const behind: DiskBehindEvent[] = [];
  hopper.on('diskBehind', (event) => behind.push(event));
  // The first block creates the segment file; then every background write stalls.
  hopper.send(Buffer.alloc(100, 0));
  await diskSettled(hopper);
  faulty.hold('write');
  // A producer that reuses one Buffer: what it wrote must come out, not what it wrote later.
  const reused = Buffer.alloc(1_000);
  const sent: Buffer[] = [Buffer.alloc(100, 0)];
  let peak = 0;
  for (let i = 1; i <= 1_000; i++) {
    reused.fill(i % 251);
    hopper.send(reused);
    sent.push(Buffer.from(reused));
    peak = Math.max(peak, hopper.stats().pendingDiskBytes);
    if (i % 50 === 0) await nextTurn();
  }
  reused.fill(255);
  const { syncWrites, pendingDiskBytes } = hopper.stats();
  t.true(faulty.heldCount('write') >= 1, 'a background write is stalled');
  t.true(syncWrites >= 1, 'the disk fell behind: the oldest bytes were written synchronously');
  t.is(behind.length, 1, 'announced once for the episode');
  t.is(behind[0]!.maxPendingDiskBytes, maxPendingDiskBytes);
  t.true(behind[0]!.pendingDiskBytes > maxPendingDiskBytes);
  // Bounded: the bound, one background write (at most the bound here) and one block.
  t.true(peak <= 2 * maxPendingDiskBytes + 64 * 1024 + 2_048, `at most ${peak} bytes waited`);
  t.true(pendingDiskBytes <= 2 * maxPendingDiskBytes + 64 * 1024 + 2_048);
  faulty.release('write');
  await diskSettled(hopper);
  hopper.writable.end();
  const out = await collect<Buffer>(hopper.readable);
  t.is(out.length, sent.length, 'every record once');
  t.true(
    out.every((record, i) => record.equals(sent[i]!)),
    'in order, as they were when sent',
  );
});

// Serial: it counts the descriptors of the whole process, which concurrent tests would move.
test('.send() - one record larger than maxPendingDiskBytes, with no write under way, is written in the background: no synchronous write, no diskBehind', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Buffer>({ dataDir: dir.dataDir, maxMemoryBytes: 0, maxPendingDiskBytes: 64 * 1024 });
  const behind: DiskBehindEvent[] = [];
  hopper.on('diskBehind', (event: DiskBehindEvent) => behind.push(event));
  const large = Buffer.alloc(1024 * 1024, 3);
  hopper.send(large);
  t.true(hopper.stats().pendingDiskBytes > 64 * 1024, 'the record waits for the disk, past the bound');
  await diskSettled(hopper);
  t.is(hopper.stats().syncWrites, 0);
  t.deepEqual(behind, []);
  // A second one, sent while nothing is under way either, goes the same way.
  hopper.send(Buffer.alloc(1024 * 1024, 4));
  await diskSettled(hopper);
  t.is(hopper.stats().syncWrites, 0);
  const closing = hopper.close();
  t.deepEqual(await collect<Buffer>(hopper.readable), [large, Buffer.alloc(1024 * 1024, 4)]);
  await closing;
});

test.serial('.destroy() - during a read ahead in flight: no error, no descriptor left, no file left, nothing read after', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const before = fs.readdirSync('/proc/self/fd').length;
  const faulty = new FaultyFileSystem(new ManualClock());
  const hopper = new HopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 0 }, { fileSystem: faulty.fs });
  for (let i = 0; i < 2_000; i++) hopper.send(`record ${i}`);
  await diskSettled(hopper);
  faulty.hold('read');
  let errors = 0;
  hopper.readable.on('error', () => errors++);
  const seen: string[] = [];
  hopper.readable.on('data', (record: string) => seen.push(record));
  await faulty.whenHeld('read');
  t.deepEqual(seen, [], 'the first block is still being read');
  hopper.destroy();
  t.deepEqual(dir.files(), [], 'the files are gone at once');
  const readsBefore = faulty.calls.read + faulty.heldCount('read');
  faulty.release('read');
  await hopper.close();
  await nextTurn();
  t.is(faulty.calls.read, readsBefore, 'no read after destroy');
  t.deepEqual(seen, [], 'nothing delivered after destroy');
  t.is(errors, 0);
  t.is(fs.readdirSync('/proc/self/fd').length, before, 'every descriptor closed');
  t.deepEqual(dir.files(), []);
});

/** The open descriptors of this process. */
const openFds = (): number => fs.readdirSync('/proc/self/fd').length;

test.serial(
  '.destroy() - durable: during a segment creation in flight: no error, no descriptor left, no draft left; the records are kept for the next open',
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const options = { dataDir: dir.dataDir, name: 'events', durable: true, ack: 'manual', fsync: 'never', maxMemoryBytes: 0 } as const;
    const before = openFds();
    const faulty = new FaultyFileSystem(new ManualClock());
    const hopper = new HopperStreams<string>(options, { fileSystem: faulty.fs });
    let errors = 0;
    hopper.readable.on('error', () => errors++);
    faulty.hold('write');
    const sent = Array.from({ length: 100 }, (_, i) => `record ${i}`);
    for (const record of sent) hopper.send(record);
    // The background task made the draft and is writing its header: the write stalls.
    await faulty.whenHeld('write');
    t.true(fs.existsSync(path.join(dir.dataDir, 'events', 'hopper.lock', 'segment.draft')), 'the creation is under way');
    hopper.destroy();
    faulty.release('write');
    await hopper.close().catch(() => undefined);
    await nextTurn();
    t.is(errors, 0);
    t.is(openFds(), before, "every descriptor closed, the draft's too");
    const files = dir.files();
    t.deepEqual(
      files.filter((file) => file.includes('hopper.lock') || file.includes('draft')),
      [],
      'no draft, no lock',
    );
    t.is(files.filter((file) => file.endsWith('.avro')).length, 1, 'one segment file: the one close() made, not the abandoned one');
    // destroy() wrote what was accepted: the next open delivers it.
    const again = createHopperStreams<string>(options);
    again.writable.end();
    t.deepEqual(await collect<string>(again.readable), sent);
    await again.close();
  },
);

test.serial('.destroy() - durable: during the open of a segment for reading in flight: no error, no descriptor left, nothing read after', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const before = openFds();
  const faulty = new FaultyFileSystem(new ManualClock());
  const hopper = new HopperStreams<string>(
    { dataDir: dir.dataDir, name: 'events', durable: true, ack: 'manual', fsync: 'never', maxMemoryBytes: 0 },
    { fileSystem: faulty.fs },
  );
  for (let i = 0; i < 2_000; i++) hopper.send(`record ${i}`);
  await hopper.flush();
  // The reader opens the first segment on the thread pool: the open stalls.
  faulty.hold('open');
  let errors = 0;
  hopper.readable.on('error', () => errors++);
  const seen: string[] = [];
  hopper.readable.on('data', (record: string) => seen.push(record));
  await faulty.whenHeld('open');
  t.deepEqual(seen, [], 'the first segment is still being opened');
  hopper.destroy();
  const readsBefore = faulty.calls.read;
  faulty.release('open');
  await hopper.close().catch(() => undefined);
  await nextTurn();
  t.is(faulty.calls.read, readsBefore, 'no read after destroy');
  t.deepEqual(seen, [], 'nothing delivered after destroy');
  t.is(errors, 0);
  t.is(openFds(), before, 'every descriptor closed, the one the open gave too');
});

test('.send() - on a slow disk (ext4 -o sync on a loop device on FUSE, 2 ms per operation) writes are accepted while the disk works, and the event loop turns meanwhile', async (t) => {
  const disk = await mountSlowDisk(t, 2);
  if ('notChecked' in disk) {
    t.log(`NOT CHECKED: ${disk.notChecked}`);
    t.pass();
    return;
  }
  const hopper = createHopperStreams<string>({ dataDir: disk.dir, maxMemoryBytes: 64 * 1024 });
  // Before the slow disk is unmounted: close() resolves once nothing runs on it in the background.
  t.teardown(async () => {
    hopper.destroy();
    await hopper.close().catch(() => undefined);
  });
  // A ticker counts turns of the event loop, and those taken while bytes waited for the disk.
  let turnsWhileWaiting = 0;
  let ticking = true;
  const tick = (): void => {
    if (hopper.stats().pendingDiskBytes > 0) turnsWhileWaiting++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const total = 10_000;
  const record = (i: number): string => `record ${i} ${'x'.repeat(140)}`;
  for (let i = 0; i < total; i++) {
    hopper.send(record(i));
    if (i % 100 === 99) await nextTurn();
  }
  t.is(hopper.stats().recordsIn, total, 'every write was accepted at once');
  await until(() => hopper.stats().pendingDiskBytes === 0 && hopper.stats().segments > 0, 'the slow disk catching up');
  ticking = false;
  // Each background write of up to 1 MiB takes the slow disk many operations; with synchronous
  // writes, no turn at all would pass while a block waited.
  t.true(turnsWhileWaiting >= 20, `${turnsWhileWaiting} turns while bytes waited for the disk`);
  hopper.writable.end();
  const out = await collect<string>(hopper.readable);
  t.is(out.length, total);
  t.true(
    out.every((value, i) => value === record(i)),
    'every record once, in order',
  );
  await hopper.close();
});
