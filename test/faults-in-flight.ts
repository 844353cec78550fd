import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { HopperError, type FaultEvent } from '../lib/index.js';
import { HopperStreams } from '../lib/streams.js';
import { ManualClock } from './helpers/clock.js';
import { FaultyFileSystem, type FaultOperation } from './helpers/faulty-fs.js';
import { nextTurn, tempDataDir, until } from './helpers/index.js';
import { within } from './helpers/wait.js';

// Faults and destroy() while the segment log's background calls are in flight: a segment being
// created, opened for reading, written, read ahead or removed is held on the fault seam, a fault
// is armed for it to meet when it lands, and the hopper may be destroyed at any point. Serial:
// each test counts the descriptors of the whole process (ava runs each file in a process of its own).

const OPERATIONS: FaultOperation[] = ['create', 'open', 'write', 'read', 'unlink'];

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

const record = (i: number): string => `record ${i} ${'r'.repeat(i % 97)}`;

interface Run {
  hopper: HopperStreams<string>;
  faulty: FaultyFileSystem;
  clock: ManualClock;
  dir: ReturnType<typeof tempDataDir>;
  channelDir: string;
  faults: FaultEvent[];
  /** Records whose send() returned: accepted. */
  accepted: string[];
  /** Records the readable gave, in order. */
  delivered: string[];
  /** What the readable failed with, if it did. */
  readError: unknown;
  sent: number;
}

function start(maxPendingDiskBytes: number, maxSegmentBytes = 2_000): Run {
  const dir = tempDataDir();
  const clock = new ManualClock();
  const faulty = new FaultyFileSystem(clock);
  const hopper = new HopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 0, maxSegmentBytes, maxPendingDiskBytes }, { fileSystem: faulty.fs });
  const run: Run = { hopper, faulty, clock, dir, channelDir: hopper.path, faults: [], accepted: [], delivered: [], readError: undefined, sent: 0 };
  hopper.on('fault', (event) => run.faults.push(event));
  hopper.readable.on('error', (err) => {
    run.readError = err;
  });
  return run;
}

/** Sends `count` records; those refused (disk writes failing) are handed back with ERR_HOPPER_IO and are not accepted. */
function send(run: Run, count: number): void {
  for (let k = 0; k < count; k++) {
    const value = record(run.sent++);
    try {
      run.hopper.send(value);
      run.accepted.push(value);
    } catch (err) {
      if (!HopperError.is(err)) throw err;
      if (err.code !== 'ERR_HOPPER_IO' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
      if (err.code === 'ERR_HOPPER_IO' && err.record !== value) throw new Error('a refused record is handed back');
    }
  }
}

/** Reads up to `count` records that can be read now (a paused readable: read() gives null when none is ready). */
function read(run: Run, count: number): void {
  for (let k = 0; k < count; k++) {
    const value = run.hopper.readable.read() as string | null;
    if (value === null) return;
    run.delivered.push(value);
  }
}

function releaseAll(run: Run): void {
  run.faulty.clear();
  for (const operation of OPERATIONS) run.faulty.release(operation);
}

/**
 * The checks after every run: the records, the faults, the descriptors and the files. They throw
 * (node:assert), so that fast-check sees a failing run, shrinks it and reports it with its seed.
 */
async function settle(run: Run, fdsBefore: number, destroyed: boolean): Promise<void> {
  if (!destroyed && run.readError === undefined) {
    // Everything let go: the retries go through, and everything accepted is delivered.
    releaseAll(run);
    run.hopper.readable.on('data', (value: string) => run.delivered.push(value));
    await run.clock.runUntil(
      run.hopper.close().catch((err: unknown) => {
        run.readError = err;
      }),
      'the hopper closing',
      () => releaseAll(run),
    );
  } else {
    run.hopper.destroy();
    releaseAll(run);
  }
  // Delivered once, in order: all accepted records, or (destroyed, or reading failed for good with a
  // coded error) the first of them.
  const expected = destroyed || run.readError !== undefined ? run.accepted.slice(0, run.delivered.length) : run.accepted;
  assert.deepStrictEqual(run.delivered, expected, 'every accepted record delivered once, in order');
  if (run.readError !== undefined) assert.ok(HopperError.is(run.readError), `a coded error: ${String(run.readError)}`);
  for (const fault of run.faults) assert.ok(HopperError.is(fault.error, 'ERR_HOPPER_IO'), `a coded fault: ${fault.error.message}`);
  // Nothing in flight holds a descriptor or leaves a file once it lands.
  await until(() => openFds() === fdsBefore && run.dir.files().length === 0, 'the descriptors closed and the files removed');
  assert.equal(openFds(), fdsBefore, 'no descriptor leaked');
  assert.deepStrictEqual(run.dir.files(), [], 'no file left');
  if (!destroyed && run.readError === undefined) assert.ok(!fs.existsSync(run.channelDir), 'close() removed the channel directory and its lock');
}

type Command =
  | { kind: 'send'; count: number }
  | { kind: 'read'; count: number }
  | { kind: 'hold'; operation: FaultOperation }
  | { kind: 'release'; operation: FaultOperation }
  | { kind: 'fault'; operation: FaultOperation; code: string; times: number }
  | { kind: 'turns'; count: number }
  | { kind: 'retry' }
  /** Holds `operation`, sends and reads until a call of it is in flight (or a while has passed), arms `fault` for it, maybe destroys the hopper then, and lets it go. */
  | { kind: 'inFlight'; operation: FaultOperation; fault: string | undefined; destroy: boolean };

const operation = fc.constantFrom(...OPERATIONS);
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('send' as const), count: fc.integer({ min: 1, max: 150 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('read' as const), count: fc.integer({ min: 1, max: 150 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('hold' as const), operation }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), operation }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('fault' as const),
      operation,
      code: fc.constantFrom('EIO', 'ENOSPC', 'EMFILE'),
      // At most twice: close() tries three times to remove each file, so a close always can.
      times: fc.integer({ min: 1, max: 2 }),
    }),
  },
  // A few turns, or enough for a segment to be created or opened (each is several calls in turn).
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('turns' as const), count: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 10, max: 60 })) }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'retry' as const }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('inFlight' as const),
      operation,
      fault: fc.option(fc.constantFrom('EIO', 'ENOSPC', 'EMFILE'), { nil: undefined }),
      destroy: fc.constantFrom(false, false, false, false, false, true),
    }),
  },
);

/** See the 'inFlight' command: true when it destroyed the hopper. */
async function inFlight(run: Run, step: Extract<Command, { kind: 'inFlight' }>, seen: { heldWhileInFlight: number }): Promise<boolean> {
  const { faulty } = run;
  faulty.hold(step.operation);
  for (let turn = 0; turn < 200 && faulty.heldCount(step.operation) === 0 && run.readError === undefined; turn++) {
    if (turn % 20 === 0) send(run, 20);
    read(run, 50);
    await nextTurn();
  }
  seen.heldWhileInFlight += faulty.heldCount(step.operation);
  if (step.fault !== undefined) faulty.fail(step.operation, step.fault, 1);
  if (step.destroy) {
    run.hopper.destroy();
    return true;
  }
  faulty.release(step.operation);
  return false;
}

test.serial(
  'faults - appends, reads, calls held in flight, faults they meet when they land, and destroy() at any point: every accepted record is delivered once in order (or lost to the destroy), no descriptor leaks, no file is left (property)',
  async (t) => {
    // What the runs did, summed: the property must have exercised what it claims to.
    const seen = { runs: 0, destroyed: 0, delivered: 0, faults: 0, heldWhileInFlight: 0, readErrors: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(command, { minLength: 1, maxLength: 30, size: 'medium' }),
        // Destroyed at a command (half of the runs), or closed once every command ran.
        fc.option(fc.nat({ max: 30 }), { nil: undefined, freq: 1 }),
        fc.constantFrom(8 * 1024, 4 * 1024 * 1024),
        async (commands, destroyAt, maxPendingDiskBytes) => {
          const fdsBefore = openFds();
          const run = start(maxPendingDiskBytes);
          try {
            let destroyed = false;
            for (const [index, step] of commands.entries()) {
              if (index === destroyAt) {
                run.hopper.destroy();
                destroyed = true;
                break;
              }
              if (run.readError !== undefined) break;
              switch (step.kind) {
                case 'send':
                  send(run, step.count);
                  break;
                case 'read':
                  read(run, step.count);
                  break;
                case 'hold':
                  run.faulty.hold(step.operation);
                  break;
                case 'release':
                  seen.heldWhileInFlight += run.faulty.heldCount(step.operation);
                  run.faulty.release(step.operation);
                  break;
                case 'fault':
                  run.faulty.fail(step.operation, step.code, step.times);
                  break;
                case 'turns':
                  for (let turn = 0; turn < step.count; turn++) await nextTurn();
                  break;
                case 'retry':
                  run.clock.runNext();
                  break;
                case 'inFlight':
                  destroyed = await inFlight(run, step, seen);
                  break;
              }
              if (destroyed) break;
            }
            for (const held of OPERATIONS) seen.heldWhileInFlight += run.faulty.heldCount(held);
            await settle(run, fdsBefore, destroyed);
            seen.runs++;
            if (destroyed) seen.destroyed++;
            if (run.readError !== undefined) seen.readErrors++;
            seen.delivered += run.delivered.length;
            seen.faults += run.faults.length;
          } finally {
            run.hopper.destroy();
            releaseAll(run);
            run.dir.remove();
          }
        },
      ),
      { numRuns: 150 },
    );
    t.log(seen);
    t.true(seen.destroyed > 0 && seen.destroyed < seen.runs, 'some runs destroyed the hopper, some closed it');
    t.true(seen.heldWhileInFlight > 0, 'calls were held in flight');
    t.true(seen.faults > 0, 'faults were met');
    t.true(seen.delivered > 0, 'records were delivered');
  },
);

/** A hopper with records on disk in several segments, nothing read yet. */
async function spilled(): Promise<{ run: Run; fdsBefore: number }> {
  const fdsBefore = openFds();
  const run = start(4 * 1024 * 1024);
  send(run, 300);
  await until(() => run.hopper.stats().pendingDiskBytes === 0 && run.hopper.stats().segments > 2, 'the records on disk');
  return { run, fdsBefore };
}

for (const held of ['open', 'read'] as const) {
  test.serial(
    `destroy() - while a segment is being ${held === 'open' ? 'opened for reading' : 'read ahead'} in the background: its descriptor is closed when the call lands, and no file is left`,
    async (t) => {
      const { run, fdsBefore } = await spilled();
      t.teardown(run.dir.remove);
      run.faulty.hold(held);
      t.is(run.hopper.readable.read(), null, 'the first block is on its way');
      await within(run.faulty.whenHeld(held), `the ${held} held`);
      run.hopper.destroy();
      t.deepEqual(run.dir.files(), [], 'every file removed at destroy');
      run.faulty.release(held);
      await until(() => openFds() === fdsBefore, 'the descriptors closed');
      t.is(openFds(), fdsBefore);
      t.deepEqual(run.dir.files(), []);
    },
  );
}

for (const held of ['create', 'write'] as const) {
  test.serial(
    `destroy() - while a segment file is being ${held === 'create' ? 'created (its draft opened)' : 'created (its header written)'} in the background: nothing is linked into place after, no descriptor leaks`,
    async (t) => {
      const fdsBefore = openFds();
      const run = start(4 * 1024 * 1024);
      t.teardown(run.dir.remove);
      run.faulty.hold(held);
      send(run, 50);
      await within(run.faulty.whenHeld(held), `the ${held} held`);
      const draftDir = path.join(run.channelDir, 'hopper.lock');
      if (held === 'write') t.true(fs.readdirSync(draftDir).includes('segment.draft'), 'the draft exists');
      run.hopper.destroy();
      t.deepEqual(run.dir.files(), [], 'the draft removed at destroy');
      run.faulty.release(held);
      await until(() => openFds() === fdsBefore, 'the descriptors closed');
      // A few turns more: a link would have landed by now.
      for (let turn = 0; turn < 10; turn++) await nextTurn();
      t.is(openFds(), fdsBefore);
      t.deepEqual(run.dir.files(), []);
    },
  );
}

for (const operation of ['create', 'write', 'open', 'read', 'unlink'] as const) {
  test.serial(
    `faults - EIO arriving while a ${operation} is in flight: the call fails when it lands, is retried, and every accepted record is delivered once, in order`,
    async (t) => {
      const fdsBefore = openFds();
      const run = start(4 * 1024 * 1024);
      t.teardown(run.dir.remove);
      if (operation === 'create' || operation === 'write') {
        run.faulty.hold(operation);
        send(run, 200);
      } else {
        send(run, 300);
        await until(() => run.hopper.stats().pendingDiskBytes === 0 && run.hopper.stats().segments > 2, 'the records on disk');
        run.faulty.hold(operation);
        // Reading on until the call is held (an unlink: once a segment has been read through).
        await until(() => {
          read(run, 300);
          return run.faulty.heldCount(operation) > 0;
        }, `the ${operation} held`);
      }
      await within(run.faulty.whenHeld(operation), `the ${operation} held`);
      run.faulty.fail(operation, 'EIO', 1);
      run.faulty.release(operation);
      await until(() => run.faults.length > 0, 'the fault met');
      t.is(run.faults[0]!.operation, operation === 'create' ? 'write' : operation === 'open' ? 'read' : operation === 'unlink' ? 'remove' : operation);
      t.regex(run.faults[0]!.error.message, /EIO/);
      await settle(run, fdsBefore, false);
      t.is(run.delivered.length, run.accepted.length);
    },
  );
}

test.serial(
  ".send() - while a segment file's creation stalls, what waits for the disk stays bounded: the next blocks go to a segment of their own, written synchronously (the last resort)",
  async (t) => {
    const fdsBefore = openFds();
    const maxPendingDiskBytes = 16 * 1024;
    const run = start(maxPendingDiskBytes, 1024 * 1024);
    t.teardown(run.dir.remove);
    run.faulty.hold('create');
    send(run, 10);
    await within(run.faulty.whenHeld('create'), 'the creation held');
    let peak = 0;
    for (let i = 0; i < 60; i++) {
      send(run, 50);
      peak = Math.max(peak, run.hopper.stats().pendingDiskBytes);
      await nextTurn();
    }
    const { syncWrites, segments } = run.hopper.stats();
    t.true(syncWrites > 0, 'the last resort wrote');
    t.true(segments >= 2, 'a segment of their own');
    // The bound, and the blocks handed over before the last resort found it passed (a turn's worth each).
    t.true(peak <= 2 * maxPendingDiskBytes, `${peak} bytes waited for the disk at most`);
    await settle(run, fdsBefore, false);
  },
);

test.serial(
  'faults - a segment whose first blocks were read from memory, then whose file fails to open (EIO): reading goes on where it was, no record comes twice',
  async (t) => {
    const fdsBefore = openFds();
    const run = start(4 * 1024 * 1024, 1024 * 1024);
    t.teardown(run.dir.remove);
    run.faulty.hold('create');
    send(run, 50);
    await within(run.faulty.whenHeld('create'), 'the creation held');
    send(run, 50);
    await nextTurn();
    // The first block, still waiting for its file: read from memory.
    await until(() => {
      read(run, 50 - run.delivered.length);
      return run.delivered.length === 50;
    }, 'the first block read from memory');
    run.faulty.fail('open', 'EIO', 1);
    run.faulty.release('create');
    await until(() => run.hopper.stats().pendingDiskBytes === 0, 'the blocks on disk');
    // The reader may have taken the second block from memory too: a third is read from the file,
    // whose open fails once.
    send(run, 50);
    // Handed to the writer when the event loop turns; then written.
    await nextTurn();
    await until(() => run.hopper.stats().pendingDiskBytes === 0, 'the third block on disk');
    await until(() => {
      read(run, 10);
      return run.faults.length > 0;
    }, 'the open failing');
    t.is(run.faults[0]!.operation, 'read');
    await settle(run, fdsBefore, false);
    t.is(run.delivered.length, 150);
  },
);
