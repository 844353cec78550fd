import fs from 'node:fs';
import { PassThrough, type Readable, Writable } from 'node:stream';
import test from 'ava';
import { createHopperStream, createHopperStreams, HopperError, type SegmentEvent } from '../lib/index.js';
import { decodeHeader, isProblem, parseBlockHeader } from '../lib/ocf.js';
import { nextTurn, point, pointSchema, tempDataDir, until, type Point } from './helpers/index.js';

// Where a hopper does not differ from a PassThrough by design, it behaves as one. Each test runs
// the same steps on a PassThrough and on the hopper's adapters, and compares.

interface Pair {
  writable: Writable;
  readable: Readable;
  send?: (record: unknown) => void;
}

const subjects: Array<[string, () => Pair]> = [
  [
    'createHopperStreams()',
    () => {
      const hopper = createHopperStreams<unknown>();
      return { writable: hopper.writable, readable: hopper.readable, send: (record) => hopper.send(record) };
    },
  ],
  [
    'createHopperStreams() with maxMemoryBytes 0',
    () => {
      const hopper = createHopperStreams<unknown>({ maxMemoryBytes: 0 });
      return { writable: hopper.writable, readable: hopper.readable, send: (record) => hopper.send(record) };
    },
  ],
  [
    'createHopperStream()',
    () => {
      const duplex = createHopperStream<unknown>();
      return { writable: duplex, readable: duplex, send: (record) => duplex.send(record) };
    },
  ],
];

function passThrough(): Pair {
  const stream = new PassThrough({ objectMode: true });
  return { writable: stream, readable: stream };
}

/** Lets every pending tick and immediate run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await nextTurn();
}

type Step = ((writable: Writable) => void) | 'turn';

const readableScenarios: Array<[string, Step[]]> = [
  ['write(x); end()', [(w) => w.write(1), (w) => w.end()]],
  ['write(x), a turn, end()', [(w) => w.write(1), 'turn', (w) => w.end()]],
  ['end() alone', [(w) => w.end()]],
  ['two writes and end() in one turn', [(w) => w.write(1), (w) => w.write(2), (w) => w.end()]],
  ['write, turn, write, turn, end()', [(w) => w.write(1), 'turn', (w) => w.write(2), 'turn', (w) => w.end()]],
];

/** Runs `steps` with a 'readable' listener attached before them (or, `late`, after them), and counts its events. */
async function readableEvents(make: () => Pair, steps: Step[], reading: boolean, late = false): Promise<{ events: number; records: unknown[] }> {
  const { writable, readable } = make();
  let events = 0;
  const records: unknown[] = [];
  const listen = (): void => {
    readable.on('readable', () => {
      events++;
      if (!reading) return;
      for (let record = readable.read(); record !== null; record = readable.read()) records.push(record);
    });
  };
  if (!late) listen();
  for (const step of steps) {
    if (step === 'turn') await nextTurn();
    else step(writable);
  }
  if (late) listen();
  await settle();
  readable.destroy();
  return { events, records };
}

/**
 * Writes `count` records (and ends), then pipes into a destination whose buffer is full, and
 * lets it drain one write per turn: the 'pause', 'resume' and 'end' events, and what arrived.
 */
async function pipedIntoFullDestination(make: () => Pair, count: number, end: boolean): Promise<{ events: string[]; written: unknown[] }> {
  const { writable, readable } = make();
  const events: string[] = [];
  for (const event of ['pause', 'resume', 'end']) readable.on(event, () => events.push(event));
  const pending: Array<() => void> = [];
  const written: unknown[] = [];
  const destination = new Writable({
    objectMode: true,
    highWaterMark: 16,
    write(record: unknown, _encoding, callback) {
      written.push(record);
      pending.push(callback);
    },
  });
  // With the end, the pipe's last event (a 'pause') comes when the destination has finished and
  // unpipes the source: waited for as an event, not as a number of turns.
  let unpiped = false;
  destination.on('unpipe', () => {
    unpiped = true;
  });
  for (let i = 0; i <= 16; i++) destination.write('earlier');
  for (let i = 0; i < count; i++) writable.write(i);
  if (end) writable.end();
  readable.pipe(destination);
  // Turns until every record reached the destination (and, with the end, the pipe came apart):
  // records that spilled come back through reads on the thread pool, which a loaded machine may
  // take many turns for.
  const done = (): boolean => written.length >= 17 + count && (!end || unpiped);
  for (let turn = 0; turn < count + 40 || (!done() && turn < 1_000_000); turn++) {
    await nextTurn();
    for (const callback of pending.splice(0)) callback();
  }
  // Events due after the last record (the 'resume' of a drain) come on later ticks.
  for (let i = 0; i < 10; i++) {
    await nextTurn();
    for (const callback of pending.splice(0)) callback();
  }
  readable.destroy();
  return { events, written };
}

for (const [name, make] of subjects) {
  test(`${name} - 'readable' fires as a PassThrough's does`, async (t) => {
    for (const [scenario, steps] of readableScenarios) {
      for (const reading of [false, true]) {
        const expected = await readableEvents(passThrough, steps, reading);
        const actual = await readableEvents(make, steps, reading);
        t.deepEqual(actual, expected, `${scenario}, ${reading ? 'reading in the listener' : 'not reading'}`);
      }
    }
  });

  test(`${name} - a 'readable' listener attached after records (and the end) are waiting gets the events a PassThrough's gets`, async (t) => {
    for (const count of [1, 2, 16, 17, 40]) {
      for (const end of [false, true]) {
        for (const reading of [false, true]) {
          const steps: Step[] = Array.from({ length: count }, (_, i) => (w: Writable) => w.write(i));
          if (end) steps.push((w) => w.end());
          const expected = await readableEvents(passThrough, steps, reading, true);
          const actual = await readableEvents(make, steps, reading, true);
          t.deepEqual(actual, expected, `${count} records${end ? ' and end()' : ''}, ${reading ? 'reading in the listener' : 'not reading'}`);
        }
      }
    }
  });

  test(`${name} - piped into a destination that already needs drain, pauses and ends as a PassThrough does`, async (t) => {
    for (const count of [0, 1, 16, 17, 40]) {
      for (const end of [false, true]) {
        const expected = await pipedIntoFullDestination(passThrough, count, end);
        const actual = await pipedIntoFullDestination(make, count, end);
        t.deepEqual(actual, expected, `${count} records${end ? ' and end()' : ''}`);
      }
    }
  });

  test(`${name} - a 'data' listener's exception during write() reaches the caller, as from a PassThrough, and the stream goes on`, async (t) => {
    // The reference: a PassThrough lets the exception out of write().
    const reference = passThrough();
    reference.readable.on('data', () => {
      throw new Error('listener');
    });
    t.throws(() => reference.writable.write(1), { message: 'listener' });

    const { writable, readable, send } = make();
    const seen: unknown[] = [];
    let errors = 0;
    readable.on('error', () => errors++);
    readable.on('data', (record: unknown) => {
      seen.push(record);
      if (record === 'throw') throw new Error('listener');
    });
    await nextTurn();
    writable.write(1);
    t.throws(() => writable.write('throw'), { message: 'listener' });
    writable.write(2);
    t.throws(() => send!('throw'), { message: 'listener' });
    await nextTurn();
    writable.write(3);
    writable.end();
    await settle();
    t.deepEqual(seen, [1, 'throw', 2, 'throw', 3]);
    t.is(errors, 0);
    t.true(readable.readableEnded);
  });
}

for (const [name, make] of subjects) {
  test(`${name} - readableLength counts every record waiting in the hopper, not only the readable's buffer`, async (t) => {
    const pair = make();
    const readable: number[] = [];
    const writable: number[] = [];
    const look = (): void => {
      readable.push(pair.readable.readableLength);
      writable.push(pair.writable.writableLength);
    };
    look();
    for (let i = 0; i < 40; i++) pair.writable.write({ seq: i, pad: 'x'.repeat(100) });
    look();
    await nextTurn();
    look();
    for (let i = 0; i < 15; i++) pair.readable.read();
    look();
    pair.writable.end();
    const rest: unknown[] = [];
    for await (const record of pair.readable) rest.push(record);
    look();
    t.is(rest.length, 25);
    // A PassThrough holds 16 of 40 records on its readable side, the rest on its writable side; a
    // hopper accepts every write at once, and what waits in it is readable.
    t.deepEqual(readable, [0, 40, 40, 25, 0]);
    t.deepEqual(writable, [0, 0, 0, 0, 0]);
  });
}

function blocksOf(file: string): Array<{ dataStart: number }> {
  const bytes = fs.readFileSync(file);
  const blocks = [];
  for (let offset = decodeHeader(bytes)!.length; offset < bytes.length; ) {
    const frame = parseBlockHeader(bytes, offset, bytes.length - offset);
    if (isProblem(frame)) throw new Error(frame.problem);
    blocks.push(frame);
    offset = frame.end;
  }
  return blocks;
}

for (const adapter of ['createHopperStreams()', 'createHopperStream()'] as const) {
  test(`onCorrupt 'error' - records read intact before a corrupt block reach the consumer before the error (${adapter})`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const options = { dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 8_000, onCorrupt: 'error' } as const;
    const pair = adapter === 'createHopperStreams()' ? createHopperStreams<Point>(options) : undefined;
    const duplex = pair === undefined ? createHopperStream<Point>(options) : undefined;
    const hopper = (pair ?? duplex)!;
    const readable: Readable = pair?.readable ?? duplex!;
    const sealed: SegmentEvent[] = [];
    const onSegment = (event: SegmentEvent): void => {
      if (event.action === 'sealed') sealed.push(event);
    };
    if (pair) pair.on('segment', onSegment);
    else duplex!.on('segment', onSegment);
    // Blocks are written when the event loop turns: bursts of 60 make blocks of 60 records, more
    // than the readable's buffer holds (16).
    for (let i = 0; i < 600; i++) {
      hopper.send(point(i));
      if (i % 60 === 59) await nextTurn();
    }
    // Segment files are created and sealed in the background.
    await until(() => sealed.length > 0, 'a segment sealed');
    const file = sealed[0]!.file;
    const damaged = blocksOf(file)[1]!;
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0xff]), 0, 1, damaged.dataStart + 3);
    fs.closeSync(fd);

    const seen: number[] = [];
    let failure: unknown;
    let refusedMeanwhile: unknown;
    try {
      for await (const record of readable) {
        seen.push((record as Point).seq);
        // Once the damage is found, the pair's writable is closed: nothing more is accepted while
        // the records already read out are delivered.
        if (pair?.writable.destroyed && refusedMeanwhile === undefined) {
          try {
            pair.send(point(1_000));
          } catch (err) {
            refusedMeanwhile = err;
          }
        }
      }
    } catch (err) {
      failure = err;
    }
    t.true(HopperError.is(failure, 'ERR_HOPPER_CORRUPT_SEGMENT'));
    t.deepEqual(
      seen,
      Array.from({ length: 60 }, (_, i) => i),
      'the first block, whole and in order',
    );
    t.is(hopper.stats().recordsOut, seen.length, 'every record counted as delivered was delivered');
    if (pair) t.true(HopperError.is(refusedMeanwhile, 'ERR_STREAM_DESTROYED'), 'send() between the damage and the error is refused');
  });
}
