import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import avsc from 'avsc';
import { encodeHeader, OWNER_KEY } from '../lib/ocf.js';
import { withDurableOps } from '../lib/segments/durable-io.js';
import { LEDGER_FILE, readLedgerFile, writeLedgerFileSync, type LedgerState } from '../lib/segments/ledger-file.js';
import { segmentFileName } from '../lib/segments/ledger.js';
import { refuseDurableLeftovers, scanSegment } from '../lib/segments/durable-scan.js';
import { recover, type Recovered } from '../lib/segments/recovery.js';
import { LONG_SCHEMA_JSON, SteppingFileSystem, writeDurableSegment } from './helpers/durable-dir.js';
import { collect, tempDataDir } from './helpers/index.js';

const seam = withDurableOps(fs);

function channel(t: { teardown(fn: () => void): void }) {
  const temp = tempDataDir();
  t.teardown(temp.remove);
  const dir = path.join(temp.dataDir, 'events');
  const lock = path.join(dir, 'hopper.lock');
  fs.mkdirSync(lock, { recursive: true });
  const place = { path: dir, draftDir: lock, verify: () => undefined };
  const ledger = (acked: number, extra: Partial<LedgerState> = {}): void =>
    writeLedgerFileSync(
      seam,
      place,
      { channel: 'events', acked, delivered: acked, synced: 0, nextSeq: 1, writtenAt: new Date(0).toISOString(), ...extra },
      true,
    );
  const run = (fileSystem = seam): Recovered => recover(fileSystem, dir, { channel: 'events', schema: LONG_SCHEMA_JSON, sync: true, place });
  const segments = (): string[] =>
    fs
      .readdirSync(dir)
      .filter((n) => n.endsWith('.avro'))
      .sort();
  return { dir, lock, place, ledger, run, segments, temp };
}

/** The RNs the recovered segments hold from the cursor on, read with avsc (values are RNs). */
async function deliverable(result: Recovered): Promise<number[]> {
  const out: number[] = [];
  for (const segment of result.segments) {
    const values = (await collect(avsc.createFileDecoder(segment.file))) as number[];
    for (const v of values) if (v >= result.cursor) out.push(v);
  }
  return out;
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

test('recover() - an empty directory: a fresh channel at record 0, and a ledger file written', (t) => {
  const c = channel(t);
  const result = c.run();
  t.like(result, { acked: 0, cursor: 0, nextRn: 0, records: 0, torn: [], missing: 0 });
  t.is(readLedgerFile(seam, c.dir, 'events').status, 'ok');
});

test('recover() - resumes at the acknowledged record: segments wholly acknowledged go, the rest is delivered from acked', async (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 1, 0, [5, 5]);
  writeDurableSegment(c.dir, 2, 10, [5, 5]);
  writeDurableSegment(c.dir, 3, 20, [4]);
  c.ledger(13, { delivered: 18, synced: 24, nextSeq: 4 });
  const result = c.run();
  t.deepEqual(c.segments(), [segmentFileName(2), segmentFileName(3)]);
  t.like(result, { acked: 13, delivered: 18, cursor: 13, nextRn: 24, nextSeq: 4, records: 11, missing: 0 });
  t.deepEqual(await deliverable(result), range(13, 24));
  const again = c.run();
  t.like(again, { acked: 13, cursor: 13, nextRn: 24, records: 11, removed: [] });
  t.false(again.rewrite);
});

test('recover() - a torn tail cut at every byte of its last block: opens, the cut is reported, nothing earlier is lost', async (t) => {
  const c = channel(t);
  const { file, blockEnds, size } = writeDurableSegment(c.dir, 1, 0, [3, 3, 4]);
  const whole = fs.readFileSync(file);
  const lastStart = blockEnds[1]!;
  for (let cut = lastStart; cut < size; cut++) {
    fs.writeFileSync(file, whole.subarray(0, cut));
    c.ledger(0, { synced: 0, nextSeq: 2 });
    const result = c.run();
    if (cut === lastStart) {
      t.deepEqual(result.torn, [], 'cut exactly at a block boundary: nothing torn');
    } else {
      t.is(result.torn.length, 1, `cut at ${cut}`);
      t.like(result.torn[0], { file, offset: lastStart, bytes: cut - lastStart });
      const known = result.torn[0]!.records;
      t.true(known === undefined || known === 4, `cut at ${cut}: records ${known}`);
    }
    t.is(fs.statSync(file).size, lastStart, `cut at ${cut}: truncated to the last whole block`);
    t.deepEqual(await deliverable(result), range(0, 6), `cut at ${cut}`);
    t.is(result.nextRn, 6);
    t.like(c.run(), { torn: [], records: 6 }, 'a second recovery finds nothing to do');
  }
});

test('recover() - zeros where the last block should be (a file system that extended the file) are a torn tail', (t) => {
  const c = channel(t);
  const { file, blockEnds, size } = writeDurableSegment(c.dir, 1, 0, [3, 3]);
  const bytes = fs.readFileSync(file);
  bytes.fill(0, blockEnds[0]!);
  fs.writeFileSync(file, bytes);
  c.ledger(0, { synced: 0, nextSeq: 2 });
  const result = c.run();
  t.like(result.torn, [{ file, offset: blockEnds[0], bytes: size - blockEnds[0]!, records: undefined }]);
  t.is(result.records, 3);
});

test('recover() - a bad frame inside the file, or below the synced mark, is damage: kept for the reader, never cut', (t) => {
  const c = channel(t);
  const { file, blockEnds, size } = writeDurableSegment(c.dir, 1, 0, [3, 3, 3]);
  const bytes = fs.readFileSync(file);
  // The second block's sync marker: the file goes on after it.
  bytes[blockEnds[1]! - 1]! ^= 0xff;
  fs.writeFileSync(file, bytes);
  c.ledger(0, { synced: 0, nextSeq: 2 });
  const middle = c.run();
  t.deepEqual(middle.torn, []);
  t.like(middle.damage, [{ file, offset: blockEnds[0] }]);
  t.is(middle.segments[0]!.damagedAt, blockEnds[0]);
  t.is(fs.statSync(file).size, size);
  // A tail cut short, but the ledger says it was synced: not a crash's doing.
  fs.writeFileSync(file, fs.readFileSync(file).subarray(0, size - 5));
  writeDurableSegment(c.dir, 1, 0, [3, 3, 3]);
  fs.truncateSync(file, size - 5);
  c.ledger(0, { synced: 9, nextSeq: 2 });
  const synced = c.run();
  t.deepEqual(synced.torn, []);
  t.like(synced.damage, [{ file, offset: blockEnds[1] }]);
  t.is(fs.statSync(file).size, size - 5);
});

test('recover() - no ledger file, or a damaged one, with durable segments: everything on disk is delivered', async (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 4, 30, [2]);
  writeDurableSegment(c.dir, 5, 32, [2]);
  const missing = c.run();
  t.like(missing, { acked: 30, cursor: 30, nextRn: 34, nextSeq: 6, records: 4 });
  t.is(missing.ledger.status, 'missing');
  t.deepEqual(await deliverable(missing), range(30, 34));
  fs.writeFileSync(path.join(c.dir, LEDGER_FILE), '{"format":"hopper-streams-ledger","vers');
  const damaged = c.run();
  t.is(damaged.ledger.status, 'damaged');
  t.like(damaged, { acked: 30, records: 4 });
  t.is(readLedgerFile(seam, c.dir, 'events').status, 'ok', 'rewritten');
});

test('recover() - a foreign ledger file or a backlog of another schema refuses the open and changes nothing', (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 1, 0, [2]);
  const ledgerFile = path.join(c.dir, LEDGER_FILE);
  fs.writeFileSync(ledgerFile, 'not ours\n');
  t.throws(() => c.run(), { code: 'ERR_HOPPER_IO', message: /not a hopper-streams ledger file/ });
  t.is(fs.readFileSync(ledgerFile, 'utf8'), 'not ours\n');
  fs.rmSync(ledgerFile);
  t.throws(() => recover(seam, c.dir, { channel: 'events', schema: '"string"', sync: true, place: c.place }), { code: 'ERR_HOPPER_SCHEMA_MISMATCH' });
  t.deepEqual(c.segments(), [segmentFileName(1)]);
  t.false(fs.existsSync(ledgerFile));
});

test("recover() - Vector's #25570 state (the ledger's acked inside a deleted segment): opens, delivers from the next segment, reports missing", async (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 2, 10, [5]);
  writeDurableSegment(c.dir, 3, 15, [5]);
  c.ledger(7, { synced: 20, nextSeq: 4 });
  const result = c.run();
  t.like(result, { acked: 10, cursor: 10, missing: 3, records: 10 });
  t.deepEqual(await deliverable(result), range(10, 20));
});

test('recover() - a missing middle segment is a gap, reported as missing; recovery goes on', async (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 1, 0, [5]);
  writeDurableSegment(c.dir, 3, 10, [5]);
  c.ledger(0, { synced: 15, nextSeq: 4 });
  const result = c.run();
  t.like(result, { missing: 5, records: 10, gaps: [{ start: 5, end: 10 }] });
  t.deepEqual(await deliverable(result), [...range(0, 5), ...range(10, 15)]);
});

test('recover() - stale non-durable segments of ours go; foreign files, symlinks and a headless file before the last segment stay', (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 2, 0, [2]);
  writeDurableSegment(c.dir, 4, 2, [2]);
  const stale = path.join(c.dir, segmentFileName(1));
  fs.writeFileSync(stale, encodeHeader(Buffer.from(LONG_SCHEMA_JSON), 'null', Buffer.alloc(16, 1), { [OWNER_KEY]: 'events' }));
  const foreign = path.join(c.dir, segmentFileName(5));
  fs.writeFileSync(foreign, 'someone else');
  const link = path.join(c.dir, segmentFileName(6));
  fs.symlinkSync(path.join(c.dir, segmentFileName(2)), link);
  const headless = path.join(c.dir, segmentFileName(3));
  fs.writeFileSync(headless, 'Obj');
  c.ledger(0, { synced: 4, nextSeq: 5 });
  const result = c.run();
  t.deepEqual(c.segments(), [segmentFileName(2), segmentFileName(3), segmentFileName(4), segmentFileName(5), segmentFileName(6)]);
  t.like(result, { nextSeq: 7, records: 4 });
  t.like(result.damage, [{ file: headless, offset: 0 }]);
  t.is(fs.readFileSync(foreign, 'utf8'), 'someone else');
});

test('recover() - a headless or empty segment after the last one (a crash at its creation) is removed as torn', (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 1, 0, [2]);
  fs.writeFileSync(path.join(c.dir, segmentFileName(2)), '');
  fs.writeFileSync(path.join(c.dir, segmentFileName(3)), Buffer.from('Obj\x01\x04'));
  c.ledger(0, { synced: 0, nextSeq: 4 });
  const result = c.run();
  t.deepEqual(c.segments(), [segmentFileName(1)]);
  t.is(result.torn.length, 2);
  t.like(result, { records: 2, nextSeq: 4 });
});

test('recover() - a segment with its header and no block before the last one (a stopped background creation whose file could not be removed at once, made again under a later number) is removed as torn; nothing is lost', async (t) => {
  const c = channel(t);
  writeDurableSegment(c.dir, 1, 0, [3]);
  // The stopped creation's file: the header of the segment starting at record 3, no block.
  writeDurableSegment(c.dir, 2, 3, []);
  writeDurableSegment(c.dir, 3, 3, [2, 2]);
  c.ledger(0, { synced: 7, nextSeq: 4 });
  const result = c.run();
  t.deepEqual(c.segments(), [segmentFileName(1), segmentFileName(3)]);
  t.deepEqual(result.damage, []);
  t.like(result, { records: 7, missing: 0 });
  t.deepEqual(await deliverable(result), range(0, 7));
});

test('recover() - a crash before any of its own steps, then recovery again, gives the same result', async (t) => {
  const build = (c: ReturnType<typeof channel>): void => {
    writeDurableSegment(c.dir, 1, 0, [5]);
    const { file, size } = writeDurableSegment(c.dir, 2, 5, [5, 5]);
    fs.truncateSync(file, size - 3);
    writeDurableSegment(c.dir, 3, 15, [3]);
    fs.writeFileSync(path.join(c.dir, segmentFileName(4)), 'Ob');
    c.ledger(7, { synced: 5, nextSeq: 1 });
  };
  const reference = channel(t);
  build(reference);
  const stepping = new SteppingFileSystem();
  const expected = reference.run(stepping.fs);
  const steps = stepping.log.length;
  t.true(steps >= 5, `recovery takes ${steps} steps`);
  const expectedRecords = await deliverable(expected);
  for (let k = 0; k < steps; k++) {
    const c = channel(t);
    build(c);
    const crashing = new SteppingFileSystem();
    crashing.stopAfter(k);
    t.throws(() => c.run(crashing.fs), undefined, `crash before step ${k}`);
    const result = c.run();
    t.like(result, { acked: expected.acked, cursor: expected.cursor, nextRn: expected.nextRn, records: expected.records }, `crash before step ${k}`);
    t.true(result.nextSeq >= expected.nextSeq);
    t.deepEqual(await deliverable(result), expectedRecords, `crash before step ${k}`);
    t.deepEqual(c.segments(), reference.segments(), `crash before step ${k}`);
  }
});

test('scanSegment() - reads framing only: blocks, counts and the first record number', (t) => {
  const c = channel(t);
  const { file, blockEnds } = writeDurableSegment(c.dir, 1, 42, [2, 7]);
  const scan = scanSegment(seam, file);
  t.like(scan, { kind: 'durable', first: 42, records: 9, blockEnds, blockCounts: [2, 7], problem: undefined });
});

test('refuseDurableLeftovers() - a ledger file or a durable segment refuses a non-durable open', (t) => {
  const c = channel(t);
  t.notThrows(() => refuseDurableLeftovers(seam, c.dir));
  writeDurableSegment(c.dir, 1, 0, [2]);
  t.throws(() => refuseDurableLeftovers(seam, c.dir), { code: 'ERR_HOPPER_DURABLE_CHANNEL', message: /1 segments/ });
  fs.rmSync(path.join(c.dir, segmentFileName(1)));
  c.ledger(0);
  t.throws(() => refuseDurableLeftovers(seam, c.dir), { code: 'ERR_HOPPER_DURABLE_CHANNEL' });
});
