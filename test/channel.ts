import assert from 'node:assert/strict';
import test from 'ava';
import fc from 'fast-check';
import { Channel, type ChannelWriter, type DiskTier, type HopperStats } from '../lib/channel.js';
import { createCodec } from '../lib/codec.js';
import { HopperError } from '../lib/errors.js';
import { resolveOptions, type HopperOptions } from '../lib/options.js';
import { LostRecords, WAIT, type AppendResult } from '../lib/segments/index.js';

// A model test of the Channel alone, against a scripted disk tier: records, writes held by
// `onFull: 'block'`, reads in bursts, a consumer that throws, disk reads that must wait, write
// faults, records lost to damage and recoveries come in random order, under each overflow
// policy. After every step the invariants of docs/design.md are checked: order, nothing
// accepted lost (every record delivered once, or counted as dropped or lost), bounded memory,
// no backpressure before the cap.

/** A disk tier whose answers the test scripts: segments of SEGMENT records, a cap, faults, waits and losses. */
class ScriptedDisk implements DiskTier {
  /** Records on disk, oldest first, in segments of SEGMENT records. */
  readonly segments: string[][] = [];
  fault: Error | undefined;
  /** Reads answer WAIT (a failed read being retried) until recovered. */
  readsWait = false;
  /** The next read finds this many records damaged (capped by what is there). */
  damaged = 0;
  /** Records the tier dropped or lost, so the test knows which accepted records never come out. */
  readonly gone: string[] = [];

  constructor(private readonly maxRecords: number) {}

  get records(): number {
    return this.segments.reduce((sum, segment) => sum + segment.length, 0);
  }

  get bytes(): number {
    return this.records * 10;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  readonly bufferBytes = 0;
  readonly pendingBytes = 0;
  readonly syncWrites = 0;

  append(record: unknown): AppendResult {
    if (this.fault !== undefined) return 'fault';
    if (this.records >= this.maxRecords) return 'full';
    const last = this.segments.at(-1);
    if (last !== undefined && last.length < SEGMENT) last.push(record as string);
    else this.segments.push([record as string]);
    return 'ok';
  }

  next(): unknown {
    assert.ok(this.records > 0, 'next() is asked only when a record is on disk');
    if (this.readsWait) return WAIT;
    if (this.damaged > 0) {
      const first = this.segments[0]!;
      const count = Math.min(this.damaged, first.length);
      this.damaged = 0;
      this.gone.push(...first.splice(0, count));
      if (first.length === 0) this.segments.shift();
      return new LostRecords(count, 'scripted', 0, 'damaged on purpose');
    }
    const first = this.segments[0]!;
    const record = first.shift();
    if (first.length === 0) this.segments.shift();
    return record;
  }

  dropOldest(): { offset: number; count: number; file: string } | undefined {
    // The oldest sealed segment the reader is not in: the second, when one follows it.
    if (this.segments.length < 3) return undefined;
    const offset = this.segments[0]!.length;
    const [victim] = this.segments.splice(1, 1);
    this.gone.push(...victim!);
    return { offset, count: victim!.length, file: 'scripted' };
  }
}

const SEGMENT = 4;

interface Model {
  /** Records accepted, in the order accepted. */
  accepted: string[];
  /** Writes held by 'block', in the order made. */
  held: string[];
  nextSeq: number;
  ended: boolean;
}

interface Real {
  channel: Channel;
  disk: ScriptedDisk;
  writer: ChannelWriter;
  options: HopperOptions;
  /** What the reader was given, in order. */
  out: string[];
  /** Records the reader takes before its push() says "no more". */
  quota: number;
  /** The next push throws (a consumer's 'data' listener). */
  throwNext: boolean;
  ended: boolean;
  failed: Error | undefined;
  /** Records dropped as they came (a drop policy with no room): never accepted. */
  refused: Set<string>;
  /** The record being written was just dropped as it came (a 'drop' event without a file). */
  droppedNow: boolean;
}

function record(seq: number): string {
  return `r${String(seq).padStart(4, '0')}`;
}

/** The invariants, after every step. */
function check(model: Model, real: Real): void {
  const stats: HopperStats = real.channel.stats();
  const { out, disk } = real;
  // Bounded memory.
  assert.ok(stats.memoryBytes <= (real.options.maxMemoryBytes ?? Infinity), `memoryBytes ${stats.memoryBytes}`);
  // Order and exactly once: what came out is the accepted order with only dropped or lost records missing.
  const gone = new Set(disk.gone);
  const expected = model.accepted.filter((r) => !gone.has(r)).slice(0, out.length);
  assert.deepEqual(out, expected, 'records come out once each, in the order accepted');
  // Nothing accepted lost: every accepted record is out, waiting, or counted as dropped or lost.
  assert.equal(stats.recordsIn, model.accepted.length);
  assert.equal(stats.recordsOut, out.length);
  const droppedOldest = stats.dropped - real.refused.size;
  assert.equal(stats.recordsIn, stats.recordsOut + real.channel.waiting + droppedOldest + stats.corrupted);
  assert.equal(droppedOldest + stats.corrupted, disk.gone.length);
  assert.equal(real.channel.waiting, stats.memoryRecords + stats.diskRecords);
  // The end comes only after everything accepted has been delivered.
  if (real.ended) assert.equal(out.length + disk.gone.length, model.accepted.length);
  // 'spill' and 'caughtUp' alternate.
  assert.ok(stats.spills - stats.caughtUps === 0 || stats.spills - stats.caughtUps === 1);
}

type Command = fc.Command<Model, Real>;

/** A write through the writer; with room (memory, or disk without a fault), it is accepted at once. */
const writeCommand = (burst = 1): Command => ({
  check: (m) => !m.ended,
  run(m, r) {
    for (let i = 0; i < burst; i++) writeOne(m, r);
  },
  toString: () => (burst === 1 ? 'write' : `write x${burst}`),
});

function writeOne(m: Model, r: Real): void {
  {
    const value = record(m.nextSeq++);
    let result: Error | null | undefined | 'pending' = 'pending';
    const roomBefore = m.held.length === 0 && r.disk.fault === undefined && r.disk.records < MAX_DISK_RECORDS;
    try {
      r.droppedNow = false;
      r.writer.write(value, (err) => {
        if (err) {
          result = err;
          return;
        }
        result = null;
        const i = m.held.indexOf(value);
        // One producer's records come out in the order written: held writes go in the order made.
        if (i !== -1) assert.equal(m.held.shift(), value, 'held writes are admitted in the order made');
        if (r.droppedNow) r.refused.add(value);
        else m.accepted.push(value);
        r.droppedNow = false;
      });
    } catch (err) {
      // A consumer's exception during the hand-over: the record was accepted and delivered first.
      assert.equal((err as Error).message, 'consumer');
    }
    if (result === 'pending') {
      assert.equal(r.options.onFull, 'block', 'only a block policy holds a write');
      assert.ok(!roomBefore, 'no backpressure before the cap');
      m.held.push(value);
    } else if (result !== null) {
      if (r.options.onFull === 'drop-newest' || r.options.onFull === 'drop-oldest') assert.fail(`a drop policy drops, it does not fail: ${String(result)}`);
      assert.ok(HopperError.is(result, 'ERR_HOPPER_FULL') || HopperError.is(result, 'ERR_HOPPER_IO'), String(result));
    }
    // A write refused with 'error' ends a Node Writable; here the writer goes on, as a sender does.
  }
}

const sendCommand = (): Command => ({
  check: (m) => !m.ended,
  run(m, r) {
    const value = record(m.nextSeq++);
    r.droppedNow = false;
    try {
      r.channel.send(value);
    } catch (err) {
      if ((err as Error).message === 'consumer') {
        m.accepted.push(value);
        return;
      }
      assert.ok(HopperError.is(err, 'ERR_HOPPER_FULL') || HopperError.is(err, 'ERR_HOPPER_IO'), String(err));
      return;
    }
    if (r.droppedNow) r.refused.add(value);
    else m.accepted.push(value);
    r.droppedNow = false;
  },
  toString: () => 'send',
});

const readCommand = (n: number, throws: boolean): Command => ({
  check: () => true,
  run(_m, r) {
    r.quota = n;
    r.throwNext = throws;
    try {
      r.channel.deliver();
    } catch (err) {
      assert.equal((err as Error).message, 'consumer');
      seen.threw++;
      r.throwNext = false;
      return;
    }
    // A reader that still wants records gets every one that can be read: none is left waiting
    // unless the disk tier said to wait.
    if (r.quota > 0 && !r.disk.readsWait) assert.equal(r.channel.waiting, 0, 'a reader that wants records is not left waiting');
    // The consumer throws only while this read is served (on a later tick, its exception would
    // fail the channel: nobody called in to take it).
    r.throwNext = false;
  },
  toString: () => `read(${n}${throws ? ', consumer throws' : ''})`,
});

const diskCommand = (what: 'wait' | 'fault' | 'damage' | 'recover'): Command => ({
  check: () => true,
  run(_m, r) {
    if (what === 'wait') r.disk.readsWait = true;
    else if (what === 'fault') r.disk.fault = new Error('EIO');
    else if (what === 'damage') r.disk.damaged = 2;
    else {
      r.disk.readsWait = false;
      r.disk.fault = undefined;
      // As the segment log does: on a tick of its own, never from inside a call into it.
      r.channel.diskRecovered();
    }
  },
  toString: () => `disk ${what}`,
});

const endCommand = (): Command => ({
  check: (m) => !m.ended,
  run(m, r) {
    m.ended = true;
    r.writer.end();
  },
  toString: () => 'end',
});

const MAX_DISK_RECORDS = 10;

function setup(onFull: 'block' | 'error' | 'drop-newest' | 'drop-oldest'): () => { model: Model; real: Real } {
  return () => {
    const options: HopperOptions = { maxMemoryBytes: 40, onFull, onCorrupt: 'skip' };
    const disk = new ScriptedDisk(MAX_DISK_RECORDS);
    const real = {
      disk,
      options,
      out: [],
      quota: 0,
      throwNext: false,
      ended: false,
      failed: undefined,
      refused: new Set<string>(),
    } as unknown as Real;
    const channel = new Channel(
      resolveOptions(options),
      { codec: createCodec(undefined), disk, path: '/scripted', release: () => {}, idle: () => Promise.resolve() },
      (event, ...args) => {
        if (event === 'drop' && (args[0] as { file?: string }).file === undefined) real.droppedNow = true;
      },
    );
    channel.attachReader({
      push(value) {
        real.out.push(value as string);
        real.quota--;
        if (real.throwNext) {
          real.throwNext = false;
          throw new Error('consumer');
        }
        return real.quota > 0;
      },
      end() {
        real.ended = true;
      },
      fail(err) {
        real.failed = err;
      },
    });
    real.channel = channel;
    real.writer = channel.openWriter({ onChannelClose: () => {} });
    return { model: { accepted: [], held: [], nextSeq: 0, ended: false }, real };
  };
}

for (const onFull of ['block', 'error', 'drop-newest', 'drop-oldest'] as const) {
  test(`Channel - a model run against a scripted disk tier keeps every invariant after every step (onFull '${onFull}')`, (t) => {
    const commands = [
      fc.constant(writeCommand()),
      fc.integer({ min: 2, max: 10 }).map((n) => writeCommand(n)),
      fc.constant(sendCommand()),
      fc.tuple(fc.integer({ min: 1, max: 6 }), fc.boolean()).map(([n, throws]) => readCommand(n, throws && n > 1)),
      fc.constant(diskCommand('wait')),
      fc.constantFrom(diskCommand('fault'), diskCommand('damage')),
      fc.constant(diskCommand('recover')),
    ];
    seen = { runs: 0, held: 0, dropped: 0, corrupted: 0, threw: 0, waited: 0 };
    fc.assert(
      fc.property(fc.commands(commands, { maxCommands: 80, size: 'max' }), fc.nat(), (cmds, endAt) => {
        const start = setup(onFull);
        const list = [...cmds];
        // The input ends somewhere along the run (then the rest only reads and scripts the disk).
        list.splice(endAt % (list.length + 1), 0, endCommand());
        fc.modelRun(() => {
          const state = start();
          check(state.model, state.real);
          seen.runs++;
          return state;
        }, wrapChecked(list));
      }),
      { numRuns: 150 },
    );
    // The runs went where the invariants are at risk.
    t.true(seen.held > 0 || onFull !== 'block', 'writes were held');
    t.true(seen.dropped > 0 || !onFull.startsWith('drop'), 'records were dropped');
    t.true(seen.corrupted > 0, 'records were lost to damage');
    t.true(seen.threw > 0, 'a consumer threw');
    t.true(seen.waited > 0, 'reads had to wait');
  });
}

/** What the runs of the test running went through, added up (the tests of this file are synchronous: one runs at a time). */
let seen = { runs: 0, held: 0, dropped: 0, corrupted: 0, threw: 0, waited: 0 };

/** Each command, then the invariants; at the end, a full drain: everything accepted comes out or is counted. */
function wrapChecked(cmds: Iterable<Command>): Iterable<Command> {
  const list = [...cmds].map(
    (command): Command => ({
      check: (m) => command.check(m),
      run(m, r) {
        const waiting = r.disk.readsWait && r.channel.stats().diskRecords > 0;
        command.run(m, r);
        check(m, r);
        const stats = r.channel.stats();
        seen.held += m.held.length > 0 ? 1 : 0;
        seen.dropped += stats.dropped;
        seen.corrupted += stats.corrupted;
        seen.waited += waiting ? 1 : 0;
      },
      toString: () => command.toString(),
    }),
  );
  list.push({
    check: () => true,
    run(m, r) {
      r.disk.readsWait = false;
      r.disk.fault = undefined;
      r.channel.diskRecovered();
      if (!m.ended) {
        m.ended = true;
        r.writer.end();
      }
      for (let round = 0; round < 1_000 && !r.ended; round++) {
        r.quota = 1_000;
        r.channel.deliver();
      }
      check(m, r);
      seen.corrupted += r.channel.stats().corrupted;
      assert.ok(r.ended, 'the reader is ended once everything is delivered');
      assert.equal(m.held.length, 0, 'every held write was admitted');
      assert.equal(r.failed, undefined);
      assert.ok(r.channel.closed);
    },
    toString: () => 'drain',
  });
  return list;
}
