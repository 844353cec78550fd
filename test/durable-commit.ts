import test from 'ava';
import { Committer, type FsyncPolicy } from '../lib/segments/commit.js';
import { ManualClock } from './helpers/clock.js';
import { nextTurn } from './helpers/index.js';

/** A sync the test completes by hand: each call waits until `finish()` (or `fail()`). */
function heldSync(): { sync: () => Promise<void>; calls: number; running: number; finish(): void; fail(err: Error): void } {
  const waiting: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];
  const handle = {
    calls: 0,
    get running() {
      return waiting.length;
    },
    sync: () => {
      handle.calls++;
      return new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }));
    },
    finish: () => waiting.shift()?.resolve(),
    fail: (err: Error) => waiting.shift()?.reject(err),
  };
  return handle;
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await nextTurn();
};

function committer(policy: FsyncPolicy, clock = new ManualClock()) {
  const sync = heldSync();
  const durable: number[] = [];
  const failures: Error[] = [];
  const c = new Committer({ policy, intervalMs: 100, clock, sync: sync.sync, onDurable: (rn) => durable.push(rn), onFailed: (err) => failures.push(err) });
  return { c, sync, clock, durable, failures };
}

test("Committer - 'always': no callback before its fsync; records written during a commit go in the next one", async (t) => {
  const { c, sync } = committer('always');
  const called: number[] = [];
  c.append(3);
  for (let rn = 0; rn < 3; rn++) c.whenDurable(rn + 1, () => called.push(rn));
  c.wrote(2);
  await settle();
  t.is(sync.calls, 1);
  t.deepEqual(called, []);
  c.wrote(3);
  t.is(sync.calls, 1, 'one commit at a time');
  sync.finish();
  await settle();
  t.deepEqual(called, [0, 1]);
  t.is(c.durable, 2);
  t.is(sync.calls, 2, 'the next commit starts at once for what was written meanwhile');
  sync.finish();
  await settle();
  t.deepEqual(called, [0, 1, 2]);
  t.is(c.fsyncs, 2);
});

test("Committer - 'batch': one commit per interval on the clock, started when bytes became written", async (t) => {
  const { c, sync, clock } = committer('batch');
  let done = 0;
  c.append(10);
  c.whenDurable(10, () => done++);
  c.wrote(5);
  c.wrote(10);
  await settle();
  t.is(sync.calls, 0);
  t.is(clock.pending, 1);
  t.is(clock.nextDelay, 100);
  clock.runNext();
  t.is(sync.calls, 1);
  sync.finish();
  await settle();
  t.is(done, 1);
  t.is(c.durable, 10);
  t.is(clock.pending, 0, 'no timer while nothing waits');
  t.is(c.lastFsyncAt, 100);
});

test("Committer.flush() - 'batch': commits at once what was accepted, once it is written", async (t) => {
  const { c, sync, clock } = committer('batch');
  c.append(4);
  c.wrote(2);
  const flushed = c.flush();
  let resolved = false;
  void flushed.then(() => {
    resolved = true;
  });
  await settle();
  t.is(sync.calls, 0, 'records 2 and 3 are not written yet');
  c.wrote(4);
  t.is(sync.calls, 1);
  t.is(clock.pending, 0);
  sync.finish();
  await flushed;
  t.true(resolved);
  t.is(c.durable, 4);
});

test("Committer - 'never': durable once written, never a sync, and callbacks on a later tick", async (t) => {
  const { c, sync } = committer('never');
  const called: number[] = [];
  c.append(2);
  c.whenDurable(1, () => called.push(0));
  c.whenDurable(2, () => called.push(1));
  c.wrote(2);
  t.deepEqual(called, [], 'never inside the call that moved the watermark');
  await settle();
  t.deepEqual(called, [0, 1]);
  await c.flush();
  t.is(sync.calls, 0);
});

test('Committer - a failed fsync fails every waiting callback and is never retried', async (t) => {
  const { c, sync, clock, failures } = committer('batch');
  const errors: unknown[] = [];
  c.append(3);
  c.whenDurable(1, (err) => errors.push(err));
  c.whenDurable(3, (err) => errors.push(err));
  c.wrote(3);
  clock.runNext();
  const eio = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
  sync.fail(eio);
  await settle();
  t.deepEqual(errors, [eio, eio]);
  t.deepEqual(failures, [eio]);
  t.is(c.failed, eio);
  c.append(4);
  c.wrote(4);
  await settle();
  t.is(clock.pending, 0);
  t.is(sync.calls, 1, 'never retried');
  await t.throwsAsync(c.flush(), { is: eio });
  t.is(c.durable, 0);
});

test('Committer.whenDurable() - a callback for records already durable runs on a later tick; failAll() calls every waiting one', async (t) => {
  const { c, sync } = committer('always');
  c.append(1);
  c.wrote(1);
  sync.finish();
  await settle();
  let early = false;
  c.whenDurable(1, () => {
    early = true;
  });
  t.false(early);
  await settle();
  t.true(early);
  const destroyed = new Error('destroyed');
  const got: unknown[] = [];
  c.append(2);
  c.whenDurable(2, (err) => got.push(err));
  c.stop();
  c.failAll(destroyed);
  t.deepEqual(got, [destroyed]);
});

test('Committer.settle() - a synchronous commit at close calls back what it covered', async (t) => {
  const { c } = committer('batch');
  const called: number[] = [];
  c.append(2);
  c.whenDurable(2, () => called.push(2));
  c.stop();
  c.settle(2);
  await settle();
  t.deepEqual(called, [2]);
  t.is(c.undurable, 0);
});
