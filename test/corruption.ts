import fs from 'node:fs';
import { once } from 'node:events';
import test from 'ava';
import avsc from 'avsc';
import { createHopperStreams, type HopperError, type CorruptEvent, type HopperOptions, type SegmentEvent } from '../lib/index.js';
import { decodeHeader, isProblem, parseBlockHeader, type BlockFrame } from '../lib/ocf.js';
import { collect, diskSettled, nextTurn, point, pointSchema, tempDataDir, type Point } from './helpers/index.js';

// Segment files damaged while the channel runs: the reader must notice, from the framing and the
// block index it kept while writing, and either fail or skip exactly what was lost.

interface Block extends BlockFrame {
  /** Absolute offset of the block in the file. */
  start: number;
}

function blocksOf(file: string): { headerLength: number; blocks: Block[] } {
  const bytes = fs.readFileSync(file);
  const header = decodeHeader(bytes)!;
  const blocks: Block[] = [];
  for (let offset = header.length; offset < bytes.length; ) {
    const frame = parseBlockHeader(bytes, offset, bytes.length - offset);
    if (isProblem(frame)) throw new Error(frame.problem);
    blocks.push({ ...frame, start: offset });
    offset = frame.end;
  }
  return { headerLength: header.length, blocks };
}

type Damage = (file: string) => { offset: number; lostBlock: number | 'segment' | 'none' };

const damages: Record<string, Damage> = {
  'flipped bytes in a block': (file) => {
    const block = blocksOf(file).blocks[1]!;
    const fd = fs.openSync(file, 'r+');
    const at = block.dataStart + 5;
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0xff;
    fs.writeSync(fd, byte, 0, 1, at);
    fs.closeSync(fd);
    return { offset: block.dataStart, lostBlock: 1 };
  },
  'a wrong sync marker': (file) => {
    const block = blocksOf(file).blocks[1]!;
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(16, 7), 0, 16, block.dataEnd);
    fs.closeSync(fd);
    return { offset: block.dataEnd, lostBlock: 1 };
  },
  'a wrong record count': (file) => {
    const block = blocksOf(file).blocks[1]!;
    const fd = fs.openSync(file, 'r+');
    const count = Buffer.alloc(1);
    fs.readSync(fd, count, 0, 1, block.start);
    count[0] = count[0]! + 2; // zig-zag: one more record
    fs.writeSync(fd, count, 0, 1, block.start);
    fs.closeSync(fd);
    return { offset: block.start, lostBlock: 1 };
  },
  'a truncated block': (file) => {
    const block = blocksOf(file).blocks[1]!;
    fs.truncateSync(file, block.dataStart + 10);
    return { offset: block.dataStart + 10, lostBlock: 'segment' };
  },
  'garbage appended': (file) => {
    const size = fs.statSync(file).size;
    fs.appendFileSync(file, Buffer.from('not part of any block'));
    return { offset: size, lostBlock: 'none' };
  },
  'a segment cut to 0 bytes': (file) => {
    fs.truncateSync(file, 0);
    return { offset: 0, lostBlock: 'segment' };
  },
  'a segment cut into its header': (file) => {
    fs.truncateSync(file, 20);
    return { offset: 20, lostBlock: 'segment' };
  },
  'a header that is not Avro': (file) => {
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from('JUNK'), 0, 4, 0);
    fs.closeSync(fd);
    return { offset: 0, lostBlock: 'segment' };
  },
};

/** Spills records into several sealed segments, with small blocks, and returns the hopper and the first sealed segment. */
async function spilled(dataDir: string, onCorrupt: HopperOptions['onCorrupt']) {
  const hopper = createHopperStreams<Point>({ dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 3_000, onCorrupt });
  const sealed: SegmentEvent[] = [];
  hopper.on('segment', (event) => event.action === 'sealed' && sealed.push(event));
  const total = 400;
  // A block is handed to the writer when the event loop turns: small bursts make several per segment.
  for (let i = 0; i < total; i++) {
    hopper.send(point(i));
    if (i % 10 === 9) await nextTurn();
  }
  await diskSettled(hopper);
  return { hopper, total, first: sealed[0]!, blocks: blocksOf(sealed[0]!.file).blocks };
}

for (const [name, damage] of Object.entries(damages)) {
  test(`onCorrupt 'error' - ${name}: the readable fails with ERR_HOPPER_CORRUPT_SEGMENT naming the file and offset`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const { hopper, first } = await spilled(dir.dataDir, 'error');
    const { offset } = damage(first.file);
    const errored = once(hopper.readable, 'error');
    const seen: number[] = [];
    hopper.readable.on('data', (record: Point) => seen.push(record.seq));
    const [err] = (await errored) as [HopperError];
    t.is(err.code, 'ERR_HOPPER_CORRUPT_SEGMENT');
    t.is(err.file, first.file);
    t.is(err.offset, offset);
    t.true(err.message.includes(`${first.file} at byte ${offset}`));
    t.deepEqual(
      seen,
      seen.map((_, i) => i),
      'what came before the damage was delivered, in order',
    );
    await nextTurn();
    t.deepEqual(dir.files(), []);
  });

  test(`onCorrupt 'skip' - ${name}: the damage is skipped, the records lost are counted and announced, the rest arrives in order`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const { hopper, total, first, blocks } = await spilled(dir.dataDir, 'skip');
    const { offset, lostBlock } = damage(first.file);
    const events: CorruptEvent[] = [];
    hopper.on('corrupt', (event) => events.push(event));
    hopper.writable.end();
    const out = (await collect<Point>(hopper.readable)).map((record) => record.seq);
    const expectedLost =
      lostBlock === 'none' ? 0 : lostBlock === 'segment' ? first.records - (name === 'a truncated block' ? blocks[0]!.count : 0) : blocks[lostBlock]!.count;
    t.is(hopper.stats().corrupted, expectedLost);
    t.is(events.length, 1);
    t.like(events[0], { file: first.file, offset, count: expectedLost });
    t.is(out.length, total - expectedLost);
    t.true(
      out.every((seq, i) => i === 0 || seq > out[i - 1]!),
      'in order',
    );
    t.is(out.at(-1), total - 1, 'everything after the damage arrives');
    t.deepEqual(dir.files(), []);
  });
}

/** A logical type whose decoding has a bug: it throws a TypeError on the record `{ seq: 13 }`. */
class BuggyOnDecode extends avsc.types.LogicalType {
  override _fromValue(value: unknown): unknown {
    if (value === 13) return (undefined as unknown as { seq: number }).seq;
    return value;
  }
  override _toValue(value: unknown): unknown {
    return value;
  }
}

for (const onCorrupt of ['error', 'skip'] as const) {
  test(`onCorrupt '${onCorrupt}' - a decoder that throws a TypeError on sound bytes is a bug: the readable fails with it, nothing is counted or skipped as corruption`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const schema = avsc.Type.forSchema({ type: 'long', logicalType: 'buggy' }, { logicalTypes: { buggy: BuggyOnDecode } });
    const hopper = createHopperStreams<number>({ dataDir: dir.dataDir, schema, maxMemoryBytes: 0, onCorrupt });
    const events: CorruptEvent[] = [];
    hopper.on('corrupt', (event) => events.push(event));
    for (let i = 0; i < 20; i++) hopper.send(i);
    await diskSettled(hopper);
    const seen: number[] = [];
    hopper.readable.on('data', (record: number) => seen.push(record));
    const [err] = (await once(hopper.readable, 'error')) as [Error];
    t.is(err.name, 'DecoderBug');
    t.true(err.cause instanceof TypeError);
    t.false((err as HopperError).code === 'ERR_HOPPER_CORRUPT_SEGMENT');
    t.deepEqual(
      seen,
      Array.from({ length: 13 }, (_, i) => i),
      'the records before it were delivered',
    );
    t.deepEqual(events, []);
    t.is(hopper.stats().corrupted, 0);
    await nextTurn();
    t.deepEqual(dir.files(), []);
  });
}
