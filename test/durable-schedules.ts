import test from 'ava';
import fc from 'fast-check';
import { HopperStreams, type HopperError, type HopperOptions } from '../lib/index.js';
import { SteppingFileSystem } from './helpers/durable-dir.js';
import { nextTurn, tempDataDir } from './helpers/index.js';

// Schedules of writes, reads, acknowledgements, flushes and process crashes against a plain
// model (docs/durable-design.md §5.4, process crashes only: the power-cut model is another test's).
// A crash stops the file seam after a few more steps (what was under way meets a dead disk), the
// hopper is abandoned, and the channel is opened again. After each reopen, every record the
// consumer takes is checked against what the model knows: no resurrection below an acknowledgement
// that was flushed, never ahead of a record whose callback fired and that was not acknowledged,
// in order, no hole over a record whose callback fired, and what came out is what went in.

interface Rec {
  id: number;
  pad: string;
}

const rec = (id: number): Rec => ({ id, pad: `p${id}`.repeat(1 + (id % 5)) });

type Op =
  | { kind: 'write'; n: number; yield: boolean }
  | { kind: 'read'; k: number }
  | { kind: 'ack'; k: number }
  | { kind: 'ackTooMany' }
  | { kind: 'flush' }
  | { kind: 'crash'; after: number; turns: number };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), n: fc.integer({ min: 1, max: 40 }), yield: fc.boolean() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('read' as const), k: fc.integer({ min: 1, max: 30 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('ack' as const), k: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'ackTooMany' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'flush' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('crash' as const), after: fc.integer({ min: 0, max: 6 }), turns: fc.integer({ min: 0, max: 10 }) }),
  },
);

/** Takes up to `k` records the readable has or gets within a few turns of the event loop (never waits for more). */
async function readUpTo(readable: { read(): unknown }, k: number): Promise<Rec[]> {
  const out: Rec[] = [];
  let idle = 0;
  while (out.length < k && idle < 30) {
    const record = readable.read() as Rec | null;
    if (record === null) {
      idle++;
      await nextTurn();
      continue;
    }
    idle = 0;
    out.push(record);
  }
  return out;
}

async function runSchedule(ops: Op[]): Promise<string | undefined> {
  const dir = tempDataDir();
  const stepping = new SteppingFileSystem();
  const options: HopperOptions = {
    dataDir: dir.dataDir,
    name: 'events',
    durable: true,
    ack: 'manual',
    fsync: 'always',
    maxSegmentBytes: 512,
    maxMemoryBytes: 600,
  };
  const open = (): HopperStreams<Rec> => {
    const hopper = new HopperStreams<Rec>(options, { fileSystem: stepping.fs });
    hopper.readable.on('error', () => {});
    hopper.writable.on('error', () => {});
    return hopper;
  };
  let hopper = open();
  let nextId = 0;
  const fired = new Set<number>();
  /** Consumed and not acknowledged (in memory), in order. */
  let unacked: number[] = [];
  /** Every id below it was acknowledged in memory, in some run. */
  let ackedBelow = 0;
  /** Every id below it is acknowledged in this run's hopper (after a restart: at least what was on disk). */
  let runAckedBelow = 0;
  /** Every id below it is acknowledged on disk (a flush() after the acknowledgement resolved). */
  let durableAckedBelow = 0;
  /** The last id taken in this run of the channel; -1 at the start of a run. */
  let last = -1;
  /** What was acknowledged in memory when the channel last crashed: below it, records may come again or not. */
  let floor = 0;
  /** The first id written in this run of the channel. */
  let runStart = 0;
  const check = (record: Rec): string | undefined => {
    const x = record.id;
    if (record.pad !== rec(x).pad) return `record ${x} came back as ${JSON.stringify(record)}`;
    if (x >= nextId) return `record ${x} was never written`;
    if (x <= last) return `record ${x} came after ${last}: out of order or twice in one run`;
    if (last === -1 && x < durableAckedBelow)
      return `record ${x} came back after a restart though every record below ${durableAckedBelow} was acknowledged and flushed`;
    for (const y of fired) {
      if (y > last && y < x && y >= floor && y >= ackedBelow)
        return `record ${y} was called back and not acknowledged, yet ${x} came after ${last === -1 ? 'the restart' : last} without it`;
    }
    return undefined;
  };
  try {
    for (const op of ops) {
      if (op.kind === 'write') {
        for (let i = 0; i < op.n; i++) {
          const id = nextId++;
          hopper.writable.write(rec(id), (err) => {
            if (!err) fired.add(id);
          });
        }
        if (op.yield) await nextTurn();
      } else if (op.kind === 'read') {
        for (const record of await readUpTo(hopper.readable, op.k)) {
          const problem = check(record);
          if (problem !== undefined) return problem;
          last = record.id;
          // Delivered again after a restart or not, the hopper counts it unacknowledged until ack().
          unacked.push(record.id);
        }
      } else if (op.kind === 'ack') {
        const k = Math.min(op.k, unacked.length);
        // A channel whose fsync failed (a crash met a sync) is closed: ack() does nothing there.
        if (hopper.readable.destroyed) {
          hopper.ack(k);
          continue;
        }
        hopper.ack(k);
        const done = unacked.splice(0, k);
        if (done.length > 0) {
          ackedBelow = Math.max(ackedBelow, done[done.length - 1]! + 1);
          runAckedBelow = Math.max(runAckedBelow, done[done.length - 1]! + 1);
        }
      } else if (op.kind === 'ackTooMany') {
        let stats: { unacknowledged: number };
        try {
          stats = hopper.stats();
        } catch {
          continue;
        }
        const before = stats.unacknowledged;
        try {
          hopper.ack(before + 1);
          // A closed channel (its fsync failed) takes no acknowledgement and refuses none.
          if (!hopper.readable.destroyed) return `ack(${before + 1}) with ${before} unacknowledged was accepted`;
        } catch (err) {
          const code = (err as HopperError).code;
          if (code !== 'ERR_HOPPER_ACK_BEYOND_DELIVERED') return `ack() beyond threw ${code}`;
        }
        if (hopper.stats().unacknowledged !== before) return 'a refused ack() changed the count';
      } else if (op.kind === 'flush') {
        const acked = runAckedBelow;
        const written = nextId;
        try {
          await hopper.flush();
        } catch {
          continue;
        }
        durableAckedBelow = Math.max(durableAckedBelow, acked);
        for (let id = runStart; id < written; id++) {
          if (!fired.has(id)) {
            // flush() resolved: every record accepted before it is durable, so its callback fired first.
            await nextTurn();
            if (!fired.has(id) && id >= durableAckedBelow) return `flush() resolved before record ${id}'s callback fired`;
          }
        }
      } else {
        stepping.stopAfter(stepping.log.length + op.after);
        for (let i = 0; i < op.turns; i++) await nextTurn();
        hopper.destroy();
        // What the dead run had handed to the thread pool lands before the reopen, as a killed
        // process's syscalls do; from the restart on, nothing of it reaches the disk.
        await stepping.quiet();
        stepping.restart();
        floor = ackedBelow;
        unacked = [];
        last = -1;
        runStart = nextId;
        runAckedBelow = durableAckedBelow;
        hopper = open();
      }
    }
    // The end: no crash; everything still owed comes out.
    stepping.stopAfter(Number.POSITIVE_INFINITY);
    await hopper.flush().catch(() => {});
    hopper.destroy();
    await stepping.quiet();
    stepping.restart();
    floor = ackedBelow;
    last = -1;
    hopper = open();
    hopper.writable.end();
    for await (const record of hopper.readable as AsyncIterable<Rec>) {
      const problem = check(record);
      if (problem !== undefined) return problem;
      last = record.id;
    }
    for (const id of fired) if (id > last && id >= ackedBelow) return `record ${id} was called back, not acknowledged, and never came back`;
    return undefined;
  } finally {
    hopper.destroy();
    dir.remove();
  }
}

test('durable channel - schedules of writes, reads, acks, flushes and process crashes keep every promise (fast-check model)', async (t) => {
  let lastProblem = '';
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(opArbitrary, { minLength: 5, maxLength: 30 }), async (ops) => {
        let problem: string | undefined;
        try {
          problem = await runSchedule(ops);
        } catch (err) {
          problem = `threw ${(err as Error).stack ?? String(err)}`;
        }
        if (problem !== undefined) {
          lastProblem = problem;
          throw new Error(problem);
        }
      }),
      { numRuns: 100 },
    );
  } catch (err) {
    t.fail(`${lastProblem}\n${(err as Error).message}`);
    return;
  }
  t.pass();
});

test('durable channel - a schedule that crashes in the middle of removals and redelivers acknowledged records (regression shape)', async (t) => {
  const problem = await runSchedule([
    { kind: 'write', n: 40, yield: true },
    { kind: 'flush' },
    { kind: 'read', k: 30 },
    { kind: 'ack', k: 25 },
    { kind: 'crash', after: 3, turns: 10 },
    { kind: 'read', k: 30 },
    { kind: 'ack', k: 5 },
    { kind: 'flush' },
    { kind: 'crash', after: 0, turns: 10 },
    { kind: 'write', n: 10, yield: false },
    { kind: 'crash', after: 0, turns: 0 },
    { kind: 'read', k: 30 },
  ]);
  t.is(problem, undefined);
  // Found by the model: a crash, with a write still queued on the thread pool when the fd was closed.
  const reused = await runSchedule([
    { kind: 'crash', after: 0, turns: 10 },
    { kind: 'write', n: 11, yield: true },
    { kind: 'crash', after: 1, turns: 2 },
    { kind: 'flush' },
    { kind: 'ack', k: 9 },
    { kind: 'write', n: 3, yield: true },
    { kind: 'read', k: 7 },
    { kind: 'write', n: 22, yield: false },
  ]);
  t.is(reused, undefined);
});
