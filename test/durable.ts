import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { HopperStreams, createHopperStream, createHopperStreams, HopperError, type HopperOptions, type RecoveredEvent, type TornEvent } from '../lib/index.js';
import { createHopperStreams as createStreamxHopper } from '../lib/streamx.js';
import { LEDGER_FILE, readLedgerFile } from '../lib/segments/ledger-file.js';
import { withDurableOps } from '../lib/segments/durable-io.js';
import { ManualClock } from './helpers/clock.js';
import { HeldSyncFileSystem, SteppingFileSystem } from './helpers/durable-dir.js';
import { FaultyFileSystem } from './helpers/faulty-fs.js';
import { nextTurn, tempDataDir, until } from './helpers/index.js';

interface Rec {
  id: number;
  pad: string;
}

/** A schema for {@link Rec}. */
const REC_SCHEMA = {
  type: 'record',
  name: 'Rec',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'pad', type: 'string' },
  ],
} as const;

const rec = (id: number): Rec => ({ id, pad: `record-${id}-${'x'.repeat(id % 7)}` });
const ids = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

function channel(t: { teardown(fn: () => void): void }) {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'events');
  const options = (extra: Partial<HopperOptions> = {}): HopperOptions => ({ dataDir: dir.dataDir, name: 'events', durable: true, ...extra });
  const segments = (): string[] => (fs.existsSync(channelDir) ? fs.readdirSync(channelDir).filter((n) => n.endsWith('.avro')) : []);
  return { dir, channelDir, options, segments };
}

/** Takes `n` records from a hopper's readable (more may be delivered into its buffer). */
async function take<T>(iterator: AsyncIterator<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  while (out.length < n) {
    const next = await iterator.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

/** Reads every record the hopper delivers until `n` have come. */
async function drain<T>(hopper: { readable: Readable }, n: number): Promise<T[]> {
  const out: T[] = [];
  const onData = (record: T): void => {
    out.push(record);
  };
  hopper.readable.on('data', onData);
  await until(() => out.length >= n, `${n} records delivered (got ${out.length})`);
  hopper.readable.off('data', onData);
  hopper.readable.pause();
  return out;
}

test('createHopperStreams() options - durable needs dataDir and name; fsync, fsyncIntervalMs and ack need durable; drop-oldest is refused', (t) => {
  const { dir } = channel(t);
  t.throws(() => createHopperStreams({ durable: true, name: 'x' }), { instanceOf: RangeError, message: /`dataDir` with `durable: true`/ });
  t.throws(() => createHopperStreams({ durable: true, dataDir: dir.dataDir }), { instanceOf: RangeError, message: /`name` with `durable: true`/ });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, fsync: 'always' }), { instanceOf: RangeError, message: /`fsync` only with `durable: true`/ });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, ack: 'manual' }), { instanceOf: RangeError, message: /`ack` only with `durable: true`/ });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'x', durable: true, onFull: 'drop-oldest' }), {
    instanceOf: RangeError,
    message: /`onFull`.*drop-oldest/,
  });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'x', durable: true, fsyncIntervalMs: 60_001 }), {
    instanceOf: RangeError,
    message: /`fsyncIntervalMs`.*1 to 60000/,
  });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'x', durable: true, fsyncIntervalMs: 0 }), {
    instanceOf: RangeError,
    message: /`fsyncIntervalMs`/,
  });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'x', durable: true, fsync: 'sometimes' as never }), {
    instanceOf: RangeError,
    message: /`fsync` to be one of 'always', 'batch', 'never'/,
  });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'x', durable: true, ack: 'auto' as never }), {
    instanceOf: RangeError,
    message: /`ack` to be one of 'delivered', 'manual'/,
  });
  t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'x', durable: 'yes' as never }), {
    instanceOf: TypeError,
    message: /`durable` to be a boolean/,
  });
  t.deepEqual(dir.files(), []);
});

test("hopper.ack() - the errors: not durable, ack mode 'delivered', beyond what was delivered (nothing acknowledged), a bad count; after destroy() it does nothing", async (t) => {
  const c = channel(t);
  const plain = createHopperStreams({ dataDir: c.dir.dataDir, name: 'plain' });
  t.throws(() => plain.ack(1), { code: 'ERR_HOPPER_NOT_DURABLE' });
  await t.throwsAsync(plain.flush(), { code: 'ERR_HOPPER_NOT_DURABLE' });
  await plain.close();
  const delivered = createHopperStreams<Rec>(c.options({ name: 'delivered' }));
  t.throws(() => delivered.ack(0), { code: 'ERR_HOPPER_ACK_MODE' });
  delivered.destroy();
  const hopper = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  t.teardown(() => hopper.destroy());
  for (let i = 0; i < 5; i++) hopper.writable.write(rec(i));
  const iterator = hopper.readable[Symbol.asyncIterator]();
  await take(iterator, 2);
  const unacknowledged = hopper.stats().unacknowledged;
  t.true(unacknowledged >= 2);
  const beyond = t.throws(() => hopper.ack(unacknowledged + 1), { code: 'ERR_HOPPER_ACK_BEYOND_DELIVERED' }) as HopperError;
  t.is(beyond.count, unacknowledged + 1);
  t.is(beyond.unacknowledged, unacknowledged);
  t.is(hopper.stats().unacknowledged, unacknowledged, 'nothing was acknowledged');
  for (const [count, type] of [
    [-1, RangeError],
    [1.5, RangeError],
    [Number.NaN, RangeError],
    [2 ** 53, RangeError],
    ['1', TypeError],
    [undefined, TypeError],
  ] as const) {
    const refused = t.throws(() => hopper.ack(count as number), { instanceOf: type, code: 'ERR_HOPPER_INVALID_ARGUMENT' });
    t.true(refused instanceof HopperError, `ack(${String(count)}) is a HopperError`);
    t.is((refused as HopperError).argument, 'count');
    t.is((refused as HopperError).value, count);
  }
  t.regex(t.throws(() => hopper.ack(-1))!.message, /The value of "count" is out of range\. It must be a safe integer >= 0\. Received -1/);
  hopper.ack(2);
  t.is(hopper.stats().unacknowledged, unacknowledged - 2);
  t.is(hopper.stats().acknowledged, 2);
  hopper.destroy();
  // A sink's 'ack' listener after a shutdown must not throw: the records come again at the next open.
  t.notThrows(() => hopper.ack(1));
  t.throws(() => hopper.ack(-1), { instanceOf: RangeError, code: 'ERR_HOPPER_INVALID_ARGUMENT' });
});

test("hopper.writable.write() - fsync 'always': no callback before the fsync that covers its record, and no backpressure meanwhile", async (t) => {
  const c = channel(t);
  const held = new HeldSyncFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'always' }), { fileSystem: held.fs });
  t.teardown(() => hopper.destroy());
  held.hold();
  const called: number[] = [];
  let allTrue = true;
  for (let i = 0; i < 200; i++) allTrue = hopper.writable.write(rec(i), () => called.push(i)) && allTrue;
  t.true(allTrue, 'write() returned true for every record');
  await until(() => held.held > 0, 'a commit waits for its fsync');
  for (let i = 0; i < 5; i++) await nextTurn();
  t.deepEqual(called, []);
  t.true(hopper.stats().undurable > 0);
  held.release();
  await until(() => called.length === 200, 'every callback');
  t.deepEqual(called, ids(0, 200), 'in write order');
  t.is(hopper.stats().undurable, 0);
  t.true(hopper.stats().fsyncs >= 1);
});

test('hopper.writable.write() - writes without a callback among writes with one (corked too): each callback once, in order, none before the fsync', async (t) => {
  const c = channel(t);
  const held = new HeldSyncFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'always' }), { fileSystem: held.fs });
  t.teardown(() => hopper.destroy());
  held.hold();
  const called: number[] = [];
  const write = (i: number): void => {
    if (i % 3 === 0) hopper.writable.write(rec(i), () => called.push(i));
    else hopper.writable.write(rec(i));
  };
  for (let i = 0; i < 60; i++) write(i);
  hopper.writable.cork();
  for (let i = 60; i < 120; i++) write(i);
  hopper.writable.uncork();
  await until(() => held.held > 0, 'a commit waits for its fsync');
  for (let i = 0; i < 5; i++) await nextTurn();
  t.deepEqual(called, []);
  t.is(hopper.stats().undurable, 120);
  held.release();
  await hopper.flush();
  for (let i = 0; i < 5; i++) await nextTurn();
  t.deepEqual(
    called,
    ids(0, 120).filter((i) => i % 3 === 0),
    'each callback once, in write order',
  );
  t.is(hopper.stats().undurable, 0);
  t.deepEqual(
    (await drain<Rec>(hopper, 120)).map((r) => r.id),
    ids(0, 120),
  );
});

test("hopper.writable.write() - fsync 'batch': callbacks fire at the group commit, fsyncIntervalMs on the log's clock; flush() commits at once", async (t) => {
  const c = channel(t);
  const clock = new ManualClock();
  const held = new HeldSyncFileSystem(clock);
  const hopper = new HopperStreams<Rec>(c.options({ fsyncIntervalMs: 250 }), { fileSystem: held.fs });
  t.teardown(() => hopper.destroy());
  let called = 0;
  for (let i = 0; i < 10; i++) hopper.writable.write(rec(i), () => called++);
  await until(() => clock.pending > 0, 'the batch timer is armed');
  t.is(clock.nextDelay, 250);
  for (let i = 0; i < 5; i++) await nextTurn();
  t.is(called, 0);
  t.is(held.syncs, 0);
  clock.runNext();
  await until(() => called === 10, 'callbacks at the commit');
  for (let i = 10; i < 15; i++) hopper.writable.write(rec(i), () => called++);
  await hopper.flush();
  await until(() => called === 15, 'flush() made them durable without the timer');
  t.is(clock.now(), 250);
});

test("hopper.writable.write() - fsync 'never': callbacks once the bytes are written, without any fsync", async (t) => {
  const c = channel(t);
  const held = new HeldSyncFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'never' }), { fileSystem: held.fs });
  let called = 0;
  for (let i = 0; i < 20; i++) hopper.writable.write(rec(i), () => called++);
  await until(() => called === 20, 'callbacks');
  await hopper.flush();
  const done = drain<Rec>(hopper, 20);
  t.deepEqual(
    (await done).map((r) => r.id),
    ids(0, 20),
  );
  await hopper.close();
  t.is(held.syncs, 0);
  const ledger = readLedgerFile(withDurableOps(fs), c.channelDir, 'events');
  t.like(ledger, { status: 'ok', state: { synced: 0 } });
});

test('hopper.writable - a failed fsync fails every held callback and the channel, and is never retried', async (t) => {
  const c = channel(t);
  const held = new HeldSyncFileSystem();
  // Manual acknowledgement: no ledger file write (and its own fsync) comes in between.
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'always', ack: 'manual' }), { fileSystem: held.fs });
  const readableError = once(hopper.readable, 'error');
  hopper.readable.resume();
  held.hold();
  const errors: unknown[] = [];
  for (let i = 0; i < 3; i++) hopper.writable.write(rec(i), (err) => errors.push(err));
  await until(() => held.held > 0, 'a commit waits');
  held.fail('EIO');
  held.release();
  await until(() => errors.length === 3, 'callbacks');
  t.true(errors.every((err) => (err as NodeJS.ErrnoException)?.code === 'EIO'));
  const [failure] = (await readableError) as [NodeJS.ErrnoException];
  t.is(failure.code, 'EIO');
  const syncs = held.syncs;
  for (let i = 0; i < 5; i++) await nextTurn();
  t.is(held.syncs, syncs, 'not retried');
  hopper.destroy();
});

test('hopper.flush() - a ledger write the timer started fails (EIO): a flush() waiting on it rejects with the coded error, and the ledger file keeps the old position', async (t) => {
  const c = channel(t);
  const clock = new ManualClock();
  const held = new HeldSyncFileSystem(clock);
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'always', ack: 'manual' }), { fileSystem: held.fs });
  t.teardown(() => hopper.destroy());
  const readableError = once(hopper.readable, 'error');
  for (let i = 0; i < 5; i++) hopper.writable.write(rec(i));
  await hopper.flush();
  await drain<Rec>(hopper, 5);
  held.hold();
  hopper.ack(3);
  await until(() => clock.pending > 0, 'the ledger write is scheduled');
  clock.runNext();
  await until(() => held.held > 0, "the timer's ledger write waits for its fsync");
  const flushed = hopper.flush();
  held.fail('EIO');
  held.release();
  const err = (await t.throwsAsync(flushed)) as HopperError;
  t.is(err.code, 'ERR_HOPPER_IO');
  t.is((await readableError)[0], err, 'the channel failed with the same error');
  t.like(readLedgerFile(withDurableOps(fs), c.channelDir, 'events'), { status: 'ok', state: { acked: 0 } });
  await t.throwsAsync(hopper.flush(), { code: 'ERR_HOPPER_IO' });
});

test("hopper.writable - pipe() and pipeline(): 'finish' means every record is durable", async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ fsync: 'always' }));
  await pipeline(Readable.from(ids(0, 300).map(rec)), hopper.writable);
  t.is(hopper.stats().undurable, 0);
  t.is(hopper.stats().recordsIn, 300);
  const second = createHopperStreams<Rec>(c.options({ name: 'piped' }));
  Readable.from(ids(0, 50).map(rec)).pipe(second.writable);
  await once(second.writable, 'finish');
  t.is(second.stats().undurable, 0);
  t.deepEqual(
    (await drain<Rec>(hopper, 300)).map((r) => r.id),
    ids(0, 300),
  );
  hopper.destroy();
  second.destroy();
});

test('hopper.writable - cork()/uncork(): callbacks once, in order; destroy() with writes buffered calls each back once with the error', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options());
  const called: Array<[number, unknown]> = [];
  hopper.writable.cork();
  for (let i = 0; i < 5; i++) hopper.writable.write(rec(i), (err) => called.push([i, err]));
  hopper.writable.uncork();
  await hopper.flush();
  await until(() => called.length === 5, 'callbacks');
  t.deepEqual(
    called.map(([i]) => i),
    ids(0, 5),
  );
  t.true(called.every(([, err]) => err == null));
  const more: Array<[number, unknown]> = [];
  hopper.writable.cork();
  for (let i = 5; i < 8; i++) hopper.writable.write(rec(i), (err) => more.push([i, err]));
  hopper.writable.on('error', () => {});
  hopper.writable.destroy();
  await until(() => more.length === 3, 'buffered writes called back');
  for (let i = 0; i < 5; i++) await nextTurn();
  t.is(more.length, 3, 'each once');
  t.true(more.every(([, err]) => (err as { code?: string })?.code === 'ERR_STREAM_DESTROYED'));
  const late: unknown[] = [];
  hopper.writable.write(rec(9), (err) => late.push(err));
  await until(() => late.length === 1, 'a write after destroy is called back');
  t.is((late[0] as { code?: string }).code, 'ERR_STREAM_DESTROYED');
  hopper.destroy();
});

test('hopper.writable.write() - an invalid record is called back once with its error; later writes keep their own callbacks', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(
    c.options({
      schema: REC_SCHEMA,
    }),
  );
  const sender = hopper.sender();
  sender.on('error', () => {});
  const calls: Array<[string, unknown]> = [];
  hopper.writable.write(rec(1), (err) => calls.push(['a', err]));
  sender.write({ id: 'nope' } as never, (err) => calls.push(['bad', err]));
  hopper.writable.write(rec(2), (err) => calls.push(['b', err]));
  await hopper.flush();
  await until(() => calls.length === 3, 'callbacks');
  t.deepEqual(calls.map(([name]) => name).sort(), ['a', 'b', 'bad']);
  t.is((calls.find(([name]) => name === 'bad')![1] as { code?: string }).code, 'ERR_HOPPER_INVALID_RECORD');
  t.true(calls.filter(([name]) => name !== 'bad').every(([, err]) => err == null));
  hopper.destroy();
});

test('hopper.writable.write() - an invalid record, then a write Node buffers behind its failure: each callback once, the invalid one with its own error', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(
    c.options({
      schema: REC_SCHEMA,
    }),
  );
  t.teardown(() => hopper.destroy());
  const sender = hopper.sender();
  sender.on('error', () => {});
  const calls: Array<[string, unknown]> = [];
  sender.write(rec(1), (err) => calls.push(['first', err]));
  sender.write({ id: 'nope' } as never, (err) => calls.push(['bad', err]));
  // The writable errored but has not told anyone yet: this write is buffered, then failed.
  sender.write(rec(2), (err) => calls.push(['after', err]));
  await hopper.flush();
  await until(() => calls.length === 3, 'callbacks');
  for (let i = 0; i < 5; i++) await nextTurn();
  t.deepEqual(
    calls.map(([name]) => name),
    ['bad', 'after', 'first'],
  );
  t.is((calls[0]![1] as { code?: string }).code, 'ERR_HOPPER_INVALID_RECORD');
  t.true(calls[1]![1] instanceof Error);
  t.is(calls[2]![1], null, 'the record before it is durable');
});

test('createHopperStreams() durable - close and reopen: the oldest unacknowledged record comes first, in order, then new writes; redelivered counted', async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual', maxMemoryBytes: 2048, maxSegmentBytes: 4096 }));
  for (let i = 0; i < 400; i++) first.writable.write(rec(i));
  const got = await drain<Rec>(first, 400);
  t.deepEqual(
    got.map((r) => r.id),
    ids(0, 400),
  );
  first.ack(150);
  first.readable.resume();
  await first.close();
  t.true(c.segments().length > 0);
  t.like(readLedgerFile(withDurableOps(fs), c.channelDir, 'events'), { status: 'ok', state: { acked: 150, delivered: 400 } });
  const second = createHopperStreams<Rec>(c.options({ ack: 'manual', maxMemoryBytes: 2048, maxSegmentBytes: 4096 }));
  const recovered = once(second, 'recovered') as Promise<[RecoveredEvent]>;
  for (let i = 400; i < 450; i++) second.writable.write(rec(i));
  const [event] = await recovered;
  t.like(event, { records: 250, from: 150, missing: 0, ledger: 'ok' });
  const again = await drain<Rec>(second, 300);
  t.deepEqual(
    again.map((r) => r.id),
    ids(150, 450),
  );
  t.deepEqual(
    again.map((r) => r.pad),
    ids(150, 450).map((i) => rec(i).pad),
  );
  t.like(second.stats(), { recovered: 250, redelivered: 250 });
  second.ack(300);
  second.readable.resume();
  await second.close();
  t.deepEqual(c.segments(), [], 'all acknowledged: only the ledger file is left');
  t.deepEqual(fs.readdirSync(c.channelDir), [LEDGER_FILE]);
});

test("createHopperStreams() durable - ack 'delivered': what was delivered is not delivered again after a reopen", async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options());
  for (let i = 0; i < 100; i++) first.writable.write(rec(i));
  await drain<Rec>(first, 100);
  first.readable.resume();
  await first.close();
  const second = createHopperStreams<Rec>(c.options());
  second.writable.end(rec(100));
  const rest: Rec[] = [];
  for await (const r of second.readable) rest.push(r);
  t.deepEqual(
    rest.map((r) => r.id),
    [100],
  );
});

test('createHopperStreams() durable - segments leave the disk only once acknowledged, the ledger file written first', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ ack: 'manual', maxSegmentBytes: 1024, fsync: 'always' }));
  t.teardown(() => hopper.destroy());
  for (let i = 0; i < 300; i++) {
    hopper.writable.write(rec(i));
    if (i % 20 === 19) await nextTurn();
  }
  await hopper.flush();
  await drain<Rec>(hopper, 300);
  const before = c.segments().length;
  t.true(before > 3);
  await hopper.flush();
  t.is(c.segments().length, before, 'reading removes nothing');
  const removed: string[] = [];
  hopper.on('segment', (e) => {
    if (e.action === 'removed') {
      removed.push(e.file);
      // The ledger file already says so.
      const ledger = readLedgerFile(withDurableOps(fs), c.channelDir, 'events');
      t.true(ledger.status === 'ok' && ledger.state.acked >= 100);
    }
  });
  hopper.ack(100);
  await hopper.flush();
  await until(() => removed.length > 0, 'acknowledged segments removed');
  t.true(c.segments().length < before);
  t.true(c.segments().length > 0);
  hopper.destroy();
});

test("createHopperStreams() durable - onFull 'block' at maxDiskBytes holds writes until acknowledgements free a segment", async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ ack: 'manual', maxSegmentBytes: 1024, maxDiskBytes: 6000, maxMemoryBytes: 0 }));
  t.teardown(() => hopper.destroy());
  const full = once(hopper, 'full');
  for (let i = 0; i < 300; i++) {
    hopper.writable.write(rec(i));
    if (i % 20 === 19) await nextTurn();
  }
  await full;
  const stuck = hopper.stats().recordsIn;
  t.true(stuck < 300, 'the cap held writes back');
  // The files of the segments are made in the background: on disk once what was accepted is.
  await hopper.flush();
  t.true(c.segments().length > 1);
  // Everything accepted is delivered and acknowledged: whole segments can go.
  await drain<Rec>(hopper, stuck);
  hopper.ack(hopper.stats().unacknowledged);
  await hopper.flush();
  await until(() => hopper.stats().recordsIn > stuck, 'acknowledging freed room for the held writes');
  t.pass();
});

test('createHopperStreams() durable - a torn tail is cut off at reopen, reported with its records; nothing before it is lost', async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  for (let i = 0; i < 30; i++) first.writable.write(rec(i));
  await first.flush();
  for (let i = 30; i < 40; i++) first.writable.write(rec(i));
  await first.flush();
  first.destroy();
  const [segment] = c.segments();
  const file = path.join(c.channelDir, segment!);
  const size = fs.statSync(file).size;
  fs.truncateSync(file, size - 7);
  // The ledger says the tail was synced: make it say nothing was (a power cut before the commit).
  const ledgerFile = path.join(c.channelDir, LEDGER_FILE);
  fs.rmSync(ledgerFile);
  const second = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  const torn = once(second, 'torn') as Promise<[TornEvent]>;
  const [event] = await torn;
  t.like(event, { file, records: 10 });
  t.like(second.stats(), { torn: 10, tornBlocks: 1, recovered: 30 });
  second.writable.end();
  const rest: Rec[] = [];
  for await (const r of second.readable) rest.push(r);
  t.deepEqual(
    rest.map((r) => r.id),
    ids(0, 30),
  );
});

test('createHopperStreams() durable - a ledger file torn by a power cut (a few bytes, then zeros) never stops the channel from opening; a foreign one still does', async (t) => {
  const c = channel(t);
  const ledgerFile = path.join(c.channelDir, LEDGER_FILE);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  for (let i = 0; i < 20; i++) first.writable.write(rec(i));
  await first.flush();
  first.destroy();
  const ledger = fs.readFileSync(ledgerFile);
  for (const cut of [1, 20, 36]) {
    // fsync 'never' and a power cut: the first bytes landed, the rest of the page reads as zeros.
    fs.writeFileSync(ledgerFile, Buffer.concat([ledger.subarray(0, cut), Buffer.alloc(4096 - cut)]));
    const again = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
    const [event] = (await once(again, 'recovered')) as [RecoveredEvent];
    t.like(event, { ledger: 'damaged', from: 0, records: 20 }, `${cut} bytes landed`);
    t.deepEqual(
      (await drain<Rec>(again, 20)).map((r) => r.id),
      ids(0, 20),
    );
    again.destroy();
  }
  fs.writeFileSync(ledgerFile, Buffer.concat([Buffer.from('my notes'), Buffer.alloc(100)]));
  t.throws(() => createHopperStreams<Rec>(c.options({ ack: 'manual' })), { code: 'ERR_HOPPER_IO' });
  t.deepEqual(fs.readFileSync(ledgerFile).subarray(0, 8).toString(), 'my notes', 'a foreign file is left as it is');
});

test("hopper.ack() - ack 'manual': accepted after delivery ended, so a finite stream can be acknowledged in full; the files go once all is acknowledged", async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  t.teardown(() => first.destroy());
  for (let i = 0; i < 10; i++) first.writable.write(rec(i));
  first.writable.end();
  const got: number[] = [];
  for await (const r of first.readable) got.push(r.id);
  t.deepEqual(got, ids(0, 10));
  first.ack(4);
  t.is(first.stats().unacknowledged, 6);
  t.throws(() => first.ack(7), { code: 'ERR_HOPPER_ACK_BEYOND_DELIVERED' });
  await first.close();
  t.like(readLedgerFile(withDurableOps(fs), c.channelDir, 'events'), { status: 'ok', state: { acked: 4 } });
  first.ack(1);
  // A sink that acknowledges each record once its (asynchronous) send is done, as the Kafka
  // sink's 'ack' does: the last acknowledgements come after the readable has ended.
  const second = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  t.teardown(() => second.destroy());
  second.writable.end();
  const sent: number[] = [];
  const sink = new Writable({
    objectMode: true,
    write(record: Rec, _encoding, callback) {
      sent.push(record.id);
      callback();
      setImmediate(() => second.ack(1));
    },
  });
  let ended = false;
  second.readable.once('end', () => {
    ended = true;
  });
  await pipeline(second.readable, sink);
  t.deepEqual(sent, ids(4, 10));
  await until(() => second.stats().unacknowledged === 0, 'every record acknowledged');
  t.true(ended);
  t.deepEqual(c.segments(), [], 'all acknowledged: the segments are removed without close()');
  t.like(readLedgerFile(withDurableOps(fs), c.channelDir, 'events'), { status: 'ok', state: { acked: 10 } });
  const third = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  third.writable.end();
  const rest: number[] = [];
  for await (const r of third.readable) rest.push(r.id);
  t.deepEqual(rest, [], 'the lock was released: the channel opens, with nothing left');
});

for (const ack of ['manual', 'delivered'] as const) {
  test(`hopper.close() - durable (ack '${ack}'), a backlog nobody reads: resolves without waiting for delivery; the readable closes without 'end'; the next open delivers the rest`, async (t) => {
    const c = channel(t);
    // A long batch interval: close() itself commits what is waiting.
    const options = c.options({ ack, fsyncIntervalMs: 60_000, maxMemoryBytes: 1024, maxSegmentBytes: 4096 });
    const hopper = createHopperStreams<Rec>(options);
    t.teardown(() => hopper.destroy());
    const called: unknown[] = [];
    for (let i = 0; i < 300; i++) hopper.writable.write(rec(i), (err) => called.push(err));
    // Read on demand: the readable takes at most its highWaterMark ahead of the reader.
    const some = await take(hopper.readable[Symbol.asyncIterator](), 20);
    t.deepEqual(
      some.map((r) => r.id),
      ids(0, 20),
    );
    t.true(hopper.stats().diskRecords > 200, 'most of the backlog is still in the channel');
    if (ack === 'manual') hopper.ack(10);
    let ended = false;
    hopper.readable.once('end', () => {
      ended = true;
    });
    const readableClosed = once(hopper.readable, 'close');
    await hopper.close();
    await readableClosed;
    t.false(ended, 'records remain: the stream is not complete');
    t.is(called.length, 300);
    t.true(
      called.every((err) => err === null),
      'every write called back without an error: close() committed them',
    );
    if (ack === 'manual') t.notThrows(() => hopper.ack(5), 'an acknowledgement after close() does nothing');
    t.false(fs.existsSync(path.join(c.channelDir, 'hopper.lock')), 'the lock is released');
    const again = createHopperStreams<Rec>(options);
    again.writable.end();
    const rest: number[] = [];
    for await (const r of again.readable) rest.push(r.id);
    // 'delivered': what reached the readable counts as delivered (its own buffer included).
    const from = ack === 'manual' ? 10 : (rest[0] ?? 300);
    t.true(from >= some.length || ack === 'manual', `starts at ${from}`);
    t.deepEqual(rest, ids(from, 300));
  });
}

test('hopper.close() - durable, the Duplex and the streamx adapter: records written just before close() (still in the writable) are kept; close() resolves without a reader', async (t) => {
  const c = channel(t);
  const duplex = createHopperStream<Rec>(c.options({ ack: 'manual', name: 'duplex' }));
  t.teardown(() => duplex.destroy());
  for (let i = 0; i < 50; i++) duplex.write(rec(i));
  await duplex.close();
  const streamx = createStreamxHopper<Rec>(c.options({ ack: 'manual', name: 'streamx' }));
  t.teardown(() => streamx.destroy());
  // streamx hands writes to the channel on a later tick: close() must take them in first.
  for (let i = 0; i < 50; i++) streamx.writable.write(rec(i));
  await streamx.close();
  for (const name of ['duplex', 'streamx']) {
    t.deepEqual(await reopenAndRead(c, { name }), ids(0, 50), name);
  }
});

test('hopper.close() - durable, the writable destroyed before end() (a failed producer): close() rejects with ERR_HOPPER_PRODUCER_FAILED without waiting for delivery, and the records stay', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  t.teardown(() => hopper.destroy());
  hopper.readable.on('error', () => {});
  hopper.writable.on('error', () => {});
  for (let i = 0; i < 30; i++) hopper.writable.write(rec(i));
  hopper.writable.destroy(new Error('source failed'));
  await t.throwsAsync(hopper.close(), { code: 'ERR_HOPPER_PRODUCER_FAILED' });
  t.deepEqual(await reopenAndRead(c), ids(0, 30));
});

test("hopper.close() - durable, everything delivered: the readable ends with 'end', as a non-durable hopper's does", async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  for (let i = 0; i < 5; i++) hopper.writable.write(rec(i));
  await drain<Rec>(hopper, 5);
  const ended = once(hopper.readable, 'end');
  hopper.readable.resume();
  await hopper.close();
  await ended;
  t.like(readLedgerFile(withDurableOps(fs), c.channelDir, 'events'), { status: 'ok', state: { acked: 0, delivered: 5 } });
});

test('createHopperStreams() - a non-durable open of a durable channel is refused, and its files are kept', async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  for (let i = 0; i < 5; i++) first.writable.write(rec(i));
  await first.flush();
  first.destroy();
  const files = fs.readdirSync(c.channelDir).sort();
  t.throws(() => createHopperStreams({ dataDir: c.dir.dataDir, name: 'events' }), { code: 'ERR_HOPPER_DURABLE_CHANNEL' });
  t.deepEqual(fs.readdirSync(c.channelDir).sort(), files);
  const again = createHopperStreams<Rec>(c.options({ ack: 'manual' }));
  again.writable.end();
  t.is((await drain<Rec>(again, 5)).length, 5);
  again.destroy();
});

test('createHopperStream() and streamx - the Duplex and the streamx adapter have ack() and flush(), and resume too', async (t) => {
  const c = channel(t);
  const duplex = createHopperStream<Rec>(c.options({ ack: 'manual' }));
  for (let i = 0; i < 10; i++) duplex.write(rec(i));
  await duplex.flush();
  t.is((await drain<Rec>({ readable: duplex as unknown as Readable }, 10)).length, 10);
  duplex.ack(4);
  await duplex.flush();
  duplex.destroy();
  const streamx = createStreamxHopper<Rec>(c.options({ ack: 'manual' }));
  const got: Rec[] = [];
  streamx.readable.on('data', (r: unknown) => got.push(r as Rec));
  await until(() => got.length === 6, 'six records');
  t.deepEqual(
    got.map((r) => r.id),
    ids(4, 10),
  );
  streamx.ack(6);
  await streamx.flush();
  streamx.destroy();
});

/** Opens the channel again with node:fs (`ack: 'manual'`, and `options`), reads every record it delivers, and waits for its close. */
async function reopenAndRead(c: ReturnType<typeof channel>, options: HopperOptions = {}): Promise<number[]> {
  const reopened = createHopperStreams<Rec>(c.options({ ack: 'manual', ...options }));
  reopened.writable.end();
  const rest: number[] = [];
  for await (const r of reopened.readable) rest.push(r.id);
  await reopened.close();
  return rest;
}

/**
 * A process crash between two steps: from the k-th file operation on (after `start`), every call
 * throws and nothing more reaches the disk; the hopper is then abandoned (destroy() finds the seam
 * dead too) and the lock let go, as a takeover after kill -9 would.
 */
async function crash(stepping: SteppingFileSystem, start: number, k: number, hopper: HopperStreams<Rec>, settled: Promise<unknown>): Promise<void> {
  // Steps vary a little from run to run (when blocks are sealed): a run that ends before step k
  // just has no crash.
  let done = false;
  void settled.finally(() => {
    done = true;
  });
  await until(() => done || stepping.log.length >= start + k, `step ${k} reached`);
  // What was under way meets the dead seam: a failed write is retried (and fails again), a failed
  // sync or ledger write fails the channel. Either way nothing more reaches the disk.
  for (let i = 0; i < 3; i++) await nextTurn();
  hopper.destroy();
  // The dead run's calls already on the thread pool land before the reopen, as a killed
  // process's do; from the restart on, its calls fail.
  await stepping.quiet();
  stepping.restart();
}

test('createHopperStreams() durable - a crash between any two steps of removing acknowledged segments (R1-R8) neither loses nor resurrects records, and the channel opens', async (t) => {
  const total = 120;
  const acked = 70;
  const setup = async () => {
    const c = channel(t);
    const stepping = new SteppingFileSystem();
    const hopper = new HopperStreams<Rec>(c.options({ ack: 'manual', fsync: 'always', maxSegmentBytes: 600 }), { fileSystem: stepping.fs });
    hopper.readable.on('error', () => {});
    for (let i = 0; i < total; i++) {
      hopper.writable.write(rec(i));
      if (i % 10 === 9) await nextTurn();
    }
    await hopper.flush();
    await drain<Rec>(hopper, total);
    await hopper.flush();
    return { c, stepping, hopper, start: stepping.log.length };
  };
  // The whole removal, uninterrupted: how many steps it takes.
  const reference = await setup();
  let removed = 0;
  reference.hopper.on('segment', (e) => {
    if (e.action === 'removed') removed++;
  });
  const before = reference.c.segments().length;
  reference.hopper.ack(acked);
  await reference.hopper.flush();
  await until(() => removed > 0 && reference.c.segments().length === before - removed && reference.stepping.log.length > reference.start, 'removals');
  for (let i = 0; i < 5; i++) await nextTurn();
  const steps = reference.stepping.log.length - reference.start;
  const ops = reference.stepping.log.slice(reference.start).map((e) => e.op);
  t.true(ops.includes('rename') && ops.includes('unlink'), ops.join(','));
  t.true(ops.indexOf('rename') < ops.indexOf('unlink'), 'the ledger file before the unlink');
  reference.hopper.destroy();
  for (let k = 0; k < steps; k++) {
    const { c, stepping, hopper, start } = await setup();
    stepping.stopAfter(start + k);
    hopper.ack(acked);
    await crash(
      stepping,
      start,
      k,
      hopper,
      hopper.flush().catch(() => {}),
    );
    const rest = await reopenAndRead(c);
    const from = rest[0];
    t.true(from === 0 || from === acked, `crash before step ${k} (${ops[k]}): delivery starts at the old or the new acknowledged record, not ${from}`);
    t.deepEqual(rest, ids(from ?? acked, total), `crash before step ${k} (${ops[k]}): every record from there, in order`);
  }
});

test('createHopperStreams() durable - a crash between any two steps of creating segments and committing (C1-C3, writes, fsyncs): every record called back survives, and the channel opens', async (t) => {
  const setup = async () => {
    const c = channel(t);
    const stepping = new SteppingFileSystem();
    const hopper = new HopperStreams<Rec>(c.options({ ack: 'manual', fsync: 'always', maxSegmentBytes: 400 }), { fileSystem: stepping.fs });
    hopper.readable.on('error', () => {});
    hopper.writable.on('error', () => {});
    for (let i = 0; i < 10; i++) hopper.writable.write(rec(i));
    await hopper.flush();
    return { c, stepping, hopper, start: stepping.log.length };
  };
  const produce = async (hopper: HopperStreams<Rec>, fired: number[]): Promise<void> => {
    for (let i = 10; i < 60; i++) {
      hopper.writable.write(rec(i), (err) => {
        if (!err) fired.push(i);
      });
      if (i % 5 === 4) await nextTurn();
    }
    await hopper.flush();
  };
  const reference = await setup();
  await produce(reference.hopper, []);
  const steps = reference.stepping.log.length - reference.start;
  const ops = reference.stepping.log.slice(reference.start).map((e) => e.op);
  t.true(ops.includes('link') && ops.includes('fsync') && ops.includes('write'), ops.join(','));
  reference.hopper.destroy();
  for (let k = 0; k < steps; k++) {
    const { c, stepping, hopper, start } = await setup();
    stepping.stopAfter(start + k);
    const fired: number[] = [];
    await crash(
      stepping,
      start,
      k,
      hopper,
      produce(hopper, fired).catch(() => {}),
    );
    const rest = await reopenAndRead(c);
    t.is(rest[0], 0, `crash before step ${k} (${ops[k]})`);
    t.deepEqual(rest, ids(0, rest.length), `crash before step ${k} (${ops[k]}): in order, no hole`);
    const last = fired.length === 0 ? 9 : Math.max(...fired);
    t.true(rest.length > last, `crash before step ${k} (${ops[k]}): record ${last} was called back, ${rest.length} came back`);
  }
});

test('createHopperStreams() durable - a torn tail cut at every byte of the last block: the channel opens, the cut is reported, nothing earlier is lost', async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual', fsync: 'never' }));
  for (let i = 0; i < 6; i++) first.writable.write(rec(i));
  await first.flush();
  for (let i = 6; i < 10; i++) first.writable.write(rec(i));
  await first.flush();
  first.destroy();
  const [name] = c.segments();
  const file = path.join(c.channelDir, name!);
  const whole = fs.readFileSync(file);
  const ledger = fs.readFileSync(path.join(c.channelDir, LEDGER_FILE));
  // The last block: the six records' block ends where the 'never' ledger (synced 0) cannot tell.
  const scan = (await import('../lib/segments/durable-scan.js')).scanSegment(withDurableOps(fs), file);
  t.is(scan.kind, 'durable');
  const ends = scan.kind === 'durable' ? scan.blockEnds : [];
  t.is(ends.length, 2);
  for (let cut = ends[0]! + 1; cut < whole.length; cut++) {
    fs.writeFileSync(file, whole.subarray(0, cut));
    fs.writeFileSync(path.join(c.channelDir, LEDGER_FILE), ledger);
    const hopper = createHopperStreams<Rec>(c.options({ ack: 'manual', fsync: 'never' }));
    const torn: TornEvent[] = [];
    hopper.on('torn', (event) => torn.push(event));
    hopper.writable.end();
    const got: number[] = [];
    for await (const r of hopper.readable) got.push(r.id);
    t.deepEqual(got, ids(0, 6), `cut at ${cut}`);
    t.is(torn.length, 1, `cut at ${cut}`);
    t.true(torn[0]!.records === undefined || torn[0]!.records === 4, `cut at ${cut}`);
    t.is(fs.statSync(file).size, ends[0]!, `cut at ${cut}: truncated to the last whole block`);
    // Delivered, not acknowledged: the files stay with the hopper until it is destroyed.
    hopper.destroy();
  }
});

test('createHopperStreams() durable - maxMemoryBytes 0: a backlog of many blocks and segments is read back from the files, in order, across a reopen', async (t) => {
  const c = channel(t);
  const options = c.options({ ack: 'manual', maxMemoryBytes: 0, maxSegmentBytes: 8192, fsync: 'never' });
  const first = createHopperStreams<Rec>(options);
  for (let i = 0; i < 3000; i++) {
    first.writable.write(rec(i));
    if (i % 100 === 99) await nextTurn();
  }
  await first.flush();
  t.true(c.segments().length > 5);
  const some = await drain<Rec>(first, 1000);
  t.deepEqual(
    some.slice(0, 1000).map((r) => r.id),
    ids(0, 1000),
  );
  first.ack(1000);
  first.destroy();
  const second = createHopperStreams<Rec>(options);
  second.writable.end();
  const rest: Rec[] = [];
  for await (const r of second.readable) rest.push(r);
  t.deepEqual(
    rest.map((r) => r.id),
    ids(1000, 3000),
  );
  t.deepEqual(rest.at(-1), rec(2999));
});

for (const onCorrupt of ['skip', 'error'] as const) {
  test(`createHopperStreams() durable - damage in the backlog (not a torn tail) is kept at reopen and reported when the reader gets there (onCorrupt '${onCorrupt}')`, async (t) => {
    const c = channel(t);
    const options = c.options({ ack: 'manual', maxMemoryBytes: 0, onCorrupt });
    const first = createHopperStreams<Rec>(options);
    for (let i = 0; i < 30; i++) {
      first.writable.write(rec(i));
      if (i % 10 === 9) await first.flush();
    }
    first.destroy();
    const [name] = c.segments();
    const file = path.join(c.channelDir, name!);
    const scan = (await import('../lib/segments/durable-scan.js')).scanSegment(withDurableOps(fs), file);
    const ends = scan.kind === 'durable' ? scan.blockEnds : [];
    t.is(ends.length, 3);
    // The second block's sync marker: the file goes on after it, so it is damage, not a torn tail.
    const bytes = fs.readFileSync(file);
    bytes[ends[1]! - 1] = 0xff ^ bytes[ends[1]! - 1]!;
    fs.writeFileSync(file, bytes);
    const second = createHopperStreams<Rec>(options);
    const recovered = once(second, 'recovered') as Promise<[RecoveredEvent]>;
    const corrupt: Array<{ offset: number; count: number }> = [];
    second.on('corrupt', (event) => corrupt.push(event));
    second.writable.end();
    const got: number[] = [];
    let failure: unknown;
    try {
      for await (const r of second.readable) got.push(r.id);
    } catch (err) {
      failure = err;
    }
    const [event] = await recovered;
    t.like(event.damage, [{ file, offset: ends[0] }]);
    t.deepEqual(got, ids(0, 10), 'every record before the damage');
    if (onCorrupt === 'skip') {
      t.is(failure, undefined);
      t.like(corrupt, [{ offset: ends[0], count: 1 }]);
    } else {
      t.like(failure, { code: 'ERR_HOPPER_CORRUPT_SEGMENT', offset: ends[0] });
    }
    t.true(fs.existsSync(file), 'the damaged file is kept');
  });
}

test("hopper.readable - durable: blocks read ahead are checked as any other; a block damaged on disk after it was written is reported when the reader gets there (onCorrupt 'skip')", async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ maxMemoryBytes: 0, onCorrupt: 'skip' }));
  t.teardown(() => hopper.destroy());
  for (let i = 0; i < 40; i++) {
    hopper.writable.write(rec(i));
    if (i % 10 === 9) await hopper.flush();
  }
  const [name] = c.segments();
  const file = path.join(c.channelDir, name!);
  const scan = (await import('../lib/segments/durable-scan.js')).scanSegment(withDurableOps(fs), file);
  const ends = scan.kind === 'durable' ? scan.blockEnds : [];
  t.is(ends.length, 4);
  // The third block's sync marker, changed under the open channel.
  const fd = fs.openSync(file, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, ends[2]! - 1);
  byte[0] = 0xff ^ byte[0]!;
  fs.writeSync(fd, byte, 0, 1, ends[2]! - 1);
  fs.closeSync(fd);
  const corrupt: Array<{ offset: number; count: number }> = [];
  hopper.on('corrupt', (event) => corrupt.push(event));
  hopper.writable.end();
  const got: number[] = [];
  for await (const r of hopper.readable) got.push(r.id);
  t.deepEqual(got, [...ids(0, 20), ...ids(30, 40)]);
  t.like(corrupt, [{ offset: ends[1], count: 10 }]);
});

test("hopper.readable - durable: a segment file replaced or removed under the running channel is reported as the plain log reports it, from its descriptor's identity: its records lost (onCorrupt 'skip'), the others delivered", async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ maxMemoryBytes: 0, maxSegmentBytes: 600, onCorrupt: 'skip' }));
  t.teardown(() => hopper.destroy());
  for (let i = 0; i < 60; i++) {
    hopper.writable.write(rec(i));
    if (i % 10 === 9) await hopper.flush();
  }
  const names = c.segments().sort();
  t.true(names.length >= 3, `${names.length} segments`);
  const scan = (await import('../lib/segments/durable-scan.js')).scanSegment;
  const records = (name: string): { first: number; count: number } => {
    const found = scan(withDurableOps(fs), path.join(c.channelDir, name));
    return found.kind === 'durable' ? { first: found.first, count: found.records } : { first: -1, count: 0 };
  };
  // The second segment's file replaced by a copy of itself (same bytes, another file), the third's removed.
  const replaced = records(names[1]!);
  const removed = records(names[2]!);
  const copy = path.join(c.dir.dataDir, 'copy');
  fs.copyFileSync(path.join(c.channelDir, names[1]!), copy);
  fs.renameSync(copy, path.join(c.channelDir, names[1]!));
  fs.unlinkSync(path.join(c.channelDir, names[2]!));
  const corrupt: Array<{ file: string; count: number; problem: string }> = [];
  hopper.on('corrupt', (event) => corrupt.push(event));
  hopper.writable.end();
  const got: number[] = [];
  for await (const r of hopper.readable) got.push(r.id);
  const lost = new Set([...ids(replaced.first, replaced.first + replaced.count), ...ids(removed.first, removed.first + removed.count)]);
  t.deepEqual(
    got,
    ids(0, 60).filter((id) => !lost.has(id)),
  );
  t.like(corrupt, [
    { file: path.join(c.channelDir, names[1]!), count: replaced.count, problem: 'the segment file was replaced (by another file)' },
    { file: path.join(c.channelDir, names[2]!), count: removed.count, problem: 'the segment file is gone' },
  ]);
});

test('hopper.readable - durable: a backlog on disk is read several blocks at a time, each block checked and every record delivered in order', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  // No read cache: every record comes from the files.
  const hopper = new HopperStreams<Rec>(c.options({ maxMemoryBytes: 0 }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  const big = (id: number): Rec => ({ id, pad: `${id}-${'y'.repeat(1000)}` });
  for (let i = 0; i < 1500; i++) hopper.writable.write(big(i));
  await hopper.flush();
  const [name] = c.segments();
  const scan = (await import('../lib/segments/durable-scan.js')).scanSegment(withDurableOps(fs), path.join(c.channelDir, name!));
  const blocks = scan.kind === 'durable' ? scan.blockEnds.length : 0;
  t.true(blocks >= 20, `${blocks} blocks of about 64 KiB`);
  const readsBefore = faulty.calls.read;
  hopper.writable.end();
  const got: number[] = [];
  for await (const r of hopper.readable) {
    if (r.pad !== big(r.id).pad) t.fail(`record ${r.id} came back changed`);
    got.push(r.id);
  }
  t.deepEqual(got, ids(0, 1500));
  // The first block alone, then reads of up to 1 MiB: one read per block was the old way.
  const reads = faulty.calls.read - readsBefore;
  t.true(reads <= 4, `${reads} reads for ${blocks} blocks`);
});

test('createHopperStreams() durable - the read cache holds records within maxMemoryBytes as the memory tier sizes them, not by their encoding', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  const budget = 4096;
  const hopper = new HopperStreams<Rec>(c.options({ maxMemoryBytes: budget }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  // The cache takes records once the reader has asked for one.
  hopper.writable.write(rec(0));
  t.deepEqual(
    (await drain<Rec>(hopper, 1)).map((r) => r.id),
    [0],
  );
  for (let i = 1; i < 300; i++) hopper.writable.write(rec(i));
  await hopper.flush();
  // Reads from the files stall: what is delivered meanwhile came from the cache (or from the
  // readable's own buffer, up to its highWaterMark, which the cache filled and made room for).
  faulty.hold('read');
  const got: number[] = [];
  hopper.readable.on('data', (r: Rec) => got.push(r.id));
  hopper.readable.resume();
  await faulty.whenHeld('read');
  for (let i = 0; i < 5; i++) await nextTurn();
  const cached = got.length;
  const sized = (await import('../lib/codec.js')).createCodec(undefined);
  const size = (from: number, to: number): number => ids(from, to).reduce((n, i) => n + sized.validateAndSize(rec(i)), 0);
  const buffered = hopper.readable.readableHighWaterMark;
  t.true(cached > buffered, 'records came from the cache');
  t.true(size(1 + buffered, 1 + cached) <= budget, `${cached} records, ${buffered} of them in the readable's buffer, within ${budget} bytes`);
  t.true(size(1, 1 + cached) > budget / 2, 'the cache filled its budget');
  faulty.release('read');
  await until(() => got.length === 299, 'the rest from the files');
  t.deepEqual(got, ids(1, 300));
});

test('createHopperStreams() durable - records written before the reader asked for any are not copied into the read cache', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ maxMemoryBytes: 1024 * 1024 }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  for (let i = 0; i < 300; i++) hopper.writable.write(rec(i));
  await hopper.flush();
  // Every record is read from the files: with reads stalled, none is delivered.
  faulty.hold('read');
  const got: number[] = [];
  hopper.readable.on('data', (r: Rec) => got.push(r.id));
  for (let i = 0; i < 10; i++) await nextTurn();
  t.deepEqual(got, []);
  faulty.release('read');
  await until(() => got.length === 300, 'every record from the files');
  t.deepEqual(got, ids(0, 300));
});

test('createHopperStreams() durable - a record larger than maxDiskBytes allows is refused with ERR_HOPPER_RECORD_TOO_LARGE', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ maxDiskBytes: 4096 }));
  t.teardown(() => hopper.destroy());
  t.throws(() => hopper.send({ id: 1, pad: 'x'.repeat(10_000) }), { code: 'ERR_HOPPER_RECORD_TOO_LARGE' });
  hopper.send(rec(2));
  t.is(hopper.stats().recordsIn, 1);
});

test('createHopperStreams() durable - a ledger draft a crash left in the lock directory goes with the lock', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options());
  fs.writeFileSync(path.join(c.channelDir, 'hopper.lock', 'ledger.draft'), '{"format":"hopper-streams-ledger","ver');
  hopper.destroy();
  t.false(fs.existsSync(path.join(c.channelDir, 'hopper.lock')));
  t.deepEqual(fs.readdirSync(c.channelDir), [LEDGER_FILE]);
});

test('createHopperStreams() durable - a backlog written with another schema refuses the open with ERR_HOPPER_SCHEMA_MISMATCH, and leaves it for the right one', async (t) => {
  const c = channel(t);
  const schemaA = REC_SCHEMA;
  const schemaB = { type: 'record', name: 'Rec', fields: [{ name: 'id', type: 'int' }] } as const;
  const first = createHopperStreams<Rec>(c.options({ schema: schemaA, ack: 'manual' }));
  for (let i = 0; i < 5; i++) first.writable.write(rec(i));
  await first.flush();
  first.destroy();
  t.throws(() => createHopperStreams(c.options({ schema: schemaB })), { code: 'ERR_HOPPER_SCHEMA_MISMATCH', message: /another schema/ });
  t.deepEqual(await reopenAndRead(c, { schema: schemaA }), ids(0, 5));
});

test('hopper.writable - blocks waiting for the disk go in one write; one that fails or is cut short is written again whole, nothing lost', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'never', maxMemoryBytes: 0 }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  const faults: unknown[] = [];
  hopper.on('fault', (event) => faults.push(event));
  faulty.hold('write');
  let called = 0;
  for (let i = 0; i < 400; i++) {
    hopper.writable.write(rec(i), () => called++);
    // A block per turn: the first one's write is held, the others wait behind it.
    if (i % 20 === 19) await nextTurn();
  }
  await faulty.whenHeld('write');
  t.is(called, 0);
  const before = faulty.calls.write;
  faulty.fail('write', 'EIO', 1);
  faulty.shortenWrites(2);
  faulty.release('write');
  await hopper.flush();
  t.is(called, 400);
  t.is(faults.length, 1, 'the failed write was reported, then written again');
  const calls = faulty.calls.write - before;
  t.true(calls < 10, `20 blocks in a few writes (${calls})`);
  t.deepEqual(
    (await drain<Rec>(hopper, 400)).map((r) => r.id),
    ids(0, 400),
  );
});

test('hopper.writable - durable: a block buffer is filled again only once the blocks in it are written; what waits for the disk and what was written come back as accepted', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  // No cache, and writes stall: blocks wait in memory while the builder fills buffer after buffer.
  const hopper = new HopperStreams<Rec>(c.options({ maxMemoryBytes: 0, fsync: 'never' }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  const big = (id: number): Rec => ({ id, pad: `${id}:${String(id % 10).repeat(900 + (id % 200))}` });
  faulty.hold('write');
  for (let round = 0; round < 3; round++) {
    for (let i = round * 1000; i < (round + 1) * 1000; i++) hopper.writable.write(big(i));
    // Each round fills several 256 KiB buffers; the first background write (in the first round,
    // the header of the segment the background task creates) is stalled meanwhile.
    await faulty.whenHeld('write');
    faulty.release('write');
    await hopper.flush();
    faulty.hold('write');
  }
  faulty.release('write');
  await hopper.flush();
  hopper.writable.end();
  const got: Rec[] = [];
  for await (const r of hopper.readable) got.push(r);
  t.is(got.length, 3000);
  const changed = got.filter((r, i) => r.id !== i || r.pad !== big(i).pad).map((r) => r.id);
  t.deepEqual(changed, [], 'every record as written');
});

test('hopper.writable - a disk slower than the producer: past maxPendingDiskBytes the waiting blocks are written synchronously, memory stays bounded, nothing is lost', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ ack: 'manual', maxPendingDiskBytes: 4096, maxMemoryBytes: 0, fsync: 'never' }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  const behind: unknown[] = [];
  hopper.on('diskBehind', (event) => behind.push(event));
  let called = 0;
  // The first record makes the segment file (in the background); then every write stalls.
  hopper.writable.write(rec(0), () => called++);
  await hopper.flush();
  faulty.hold('write');
  let most = 0;
  for (let i = 1; i < 600; i++) {
    hopper.writable.write(rec(i), () => called++);
    if (i % 20 === 19) {
      await nextTurn();
      most = Math.max(most, hopper.stats().pendingDiskBytes);
    }
  }
  t.true(faulty.heldCount('write') > 0, 'the background write is stalled');
  t.true(most <= 4096 + 2048, `at most the bound and a block waited (${most})`);
  t.true(hopper.stats().syncWrites > 0);
  t.is(behind.length, 1, 'announced once');
  faulty.release('write');
  await hopper.flush();
  t.is(called, 600);
  t.deepEqual(
    (await drain<Rec>(hopper, 600)).map((r) => r.id),
    ids(0, 600),
  );
});

test('hopper.writable - durable: a segment creation stalled on the disk is taken over by the last resort: the file made synchronously, memory stays bounded, nothing is lost, no draft left', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  const bound = 4096;
  const hopper = new HopperStreams<Rec>(c.options({ ack: 'manual', maxPendingDiskBytes: bound, maxMemoryBytes: 0, maxSegmentBytes: 8192, fsync: 'never' }), {
    fileSystem: faulty.fs,
  });
  t.teardown(() => hopper.destroy());
  // Creating a file on the thread pool stalls: the background task's segment creation waits at
  // its draft.
  faulty.hold('create');
  let called = 0;
  let most = 0;
  hopper.writable.write(rec(0), () => called++);
  await faulty.whenHeld('create');
  for (let i = 1; i < 600; i++) {
    hopper.writable.write(rec(i), () => called++);
    if (i % 20 === 19) {
      await nextTurn();
      most = Math.max(most, hopper.stats().pendingDiskBytes);
    }
  }
  t.true(faulty.heldCount('create') > 0, 'a segment creation is stalled');
  t.true(most <= bound + 2048, `at most the bound and a block waited (${most})`);
  t.true(hopper.stats().syncWrites > 0);
  t.true(c.segments().length > 1, 'the last resort made the files');
  faulty.release('create');
  await hopper.flush();
  t.is(called, 600);
  t.deepEqual(
    (await drain<Rec>(hopper, 600)).map((r) => r.id),
    ids(0, 600),
  );
  await hopper.close();
  t.deepEqual(
    fs.readdirSync(c.channelDir).filter((name) => !name.endsWith('.avro')),
    [LEDGER_FILE],
    'what the stalled creations made is gone, and the lock with its drafts',
  );
});

test('hopper.writable - durable: a foreign file under the name planned for a segment: the segment and those planned after it take later numbers, the foreign file stays, and a reopen delivers every record in order', async (t) => {
  const c = channel(t);
  const first = createHopperStreams<Rec>(c.options({ ack: 'manual', maxSegmentBytes: 600, maxMemoryBytes: 0 }));
  first.readable.on('error', () => {});
  for (let i = 0; i < 10; i++) first.writable.write(rec(i));
  await first.flush();
  const highest = Math.max(...c.segments().map((name) => Number.parseInt(name, 10)));
  // Someone else's files under the next three names: the next segments' planned names.
  const foreign = [1, 2, 3].map((n) => `${String(highest + n).padStart(12, '0')}.avro`);
  for (const name of foreign) fs.writeFileSync(path.join(c.channelDir, name), `not ours ${name}`);
  for (let i = 10; i < 200; i++) {
    first.writable.write(rec(i));
    if (i % 10 === 9) await nextTurn();
  }
  await first.flush();
  first.destroy();
  for (const name of foreign) t.is(fs.readFileSync(path.join(c.channelDir, name), 'utf8'), `not ours ${name}`, `${name} untouched`);
  t.true(c.segments().length > foreign.length + 2, 'several segments made past the foreign files');
  t.deepEqual(await reopenAndRead(c), ids(0, 200));
});

test('hopper.destroy() durable - during the link of a background segment creation: close() makes the file under the planned name; the link, when it lands, leaves nothing; the next open delivers every record', async (t) => {
  const c = channel(t);
  // The background task's link is held on its way to the thread pool, and let go after close().
  const held: Array<{ to: string; run: () => void }> = [];
  const seam = {
    ...withDurableOps(fs),
    link: ((from: string, to: string, callback: (err: Error | null) => void) => {
      held.push({ to, run: () => fs.link(from, to, callback) });
    }) as typeof fs.link,
  };
  const hopper = new HopperStreams<Rec>(c.options({ ack: 'manual', fsync: 'never' }), { fileSystem: seam });
  for (let i = 0; i < 10; i++) hopper.writable.write(rec(i));
  await until(() => held.length > 0, 'the background creation reaching its link');
  t.deepEqual(c.segments(), [], 'not linked yet');
  const planned = path.basename(held[0]!.to);
  hopper.destroy();
  const made = c.segments();
  t.deepEqual(made, [planned], 'close() made the file, under the planned name');
  for (const link of held.splice(0)) link.run();
  await hopper.close().catch(() => undefined);
  t.deepEqual(c.segments(), made, 'the link landed after close() left nothing');
  t.deepEqual(
    fs.readdirSync(c.channelDir).filter((name) => !made.includes(name)),
    [LEDGER_FILE],
    'no draft, no lock',
  );
  t.deepEqual(await reopenAndRead(c), ids(0, 10));
});

test('hopper.writable - durable: a segment creation that fails in the background (EMFILE) is reported with ERR_HOPPER_IO and retried; nothing is lost', async (t) => {
  const c = channel(t);
  const faulty = new FaultyFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ ack: 'manual', maxMemoryBytes: 0 }), { fileSystem: faulty.fs });
  t.teardown(() => hopper.destroy());
  const faults: Array<{ operation: string; code: string | undefined }> = [];
  hopper.on('fault', (event) => faults.push({ operation: event.operation, code: (event.error as NodeJS.ErrnoException).code }));
  // The next two creations of a file (the segment's draft, on the thread pool) fail.
  faulty.fail('create', 'EMFILE', 2);
  let called = 0;
  for (let i = 0; i < 50; i++) hopper.writable.write(rec(i), () => called++);
  await hopper.flush();
  t.is(faulty.failures.create, 2);
  t.true(faults.length >= 1, 'the failed creation was reported');
  t.like(faults[0], { operation: 'write', code: 'ERR_HOPPER_IO' });
  t.is(called, 50);
  t.deepEqual(
    (await drain<Rec>(hopper, 50)).map((r) => r.id),
    ids(0, 50),
  );
});

test('hopper.stats() durable - once every record is delivered and the channel ended, segments and diskBytes say what is on disk: nothing', async (t) => {
  const c = channel(t);
  const hopper = createHopperStreams<Rec>(c.options({ maxMemoryBytes: 0, maxSegmentBytes: 1_000 }));
  const out: Rec[] = [];
  await Promise.all([
    pipeline(Readable.from(ids(0, 100).map(rec)), hopper.writable),
    pipeline(
      hopper.readable,
      new Writable({
        objectMode: true,
        write(record: Rec, _encoding, callback) {
          out.push(record);
          callback();
        },
      }),
    ),
  ]);
  t.is(out.length, 100);
  // A segment read through may still be on its way out: close() resolves once it is gone.
  await hopper.close();
  t.deepEqual(c.segments(), []);
  t.is(hopper.stats().segments, 0);
  t.is(hopper.stats().diskBytes, 0);
});

test('hopper.close() durable - resolves only once a file operation still under way has ended and its fd is closed (the file system can then be unmounted)', async (t) => {
  const c = channel(t);
  const held = new HeldSyncFileSystem();
  const hopper = new HopperStreams<Rec>(c.options({ fsync: 'always' }), { fileSystem: held.fs });
  t.teardown(() => {
    held.release();
    hopper.destroy();
  });
  const openInChannel = (): string[] =>
    fs.readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        const target = fs.readlinkSync(`/proc/self/fd/${fd}`);
        return target.startsWith(c.channelDir) ? [target] : [];
      } catch {
        return [];
      }
    });
  held.hold();
  for (let i = 0; i < 50; i++) hopper.writable.write(rec(i));
  await until(() => held.held > 0, 'an fsync waits on the thread pool');
  let closed = false;
  const closing = hopper.close().then(() => {
    closed = true;
  });
  hopper.readable.resume();
  for (let i = 0; i < 20; i++) await nextTurn();
  t.false(closed, 'close() waits for the fsync under way');
  held.release();
  await closing;
  t.deepEqual(openInChannel(), [], 'no fd left open in the channel directory');
});
