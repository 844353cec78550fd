import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import util from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import avsc from 'avsc';
import type { Schema } from 'avsc';
import { createHopperStreams } from '../lib/index.js';
import { stringifyRecord } from '../lib/cli/json-lines.js';
import { decodeHeader, encodeBlockHeader, encodeHeader, isProblem, parseBlockHeader } from '../lib/ocf.js';
import { formatReport, readSegment, segmentFiles, verifySegment, type SegmentReport } from '../lib/cli/verify.js';
import { diskSettled, plain, point, tempDataDir } from './helpers/index.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/segments/${name}`, import.meta.url));
const valid = fs.readFileSync(fixture('valid.avro'));
const header = decodeHeader(valid)!;
const firstBlock = parseBlockHeader(valid, header.length, valid.length - header.length);
if (isProblem(firstBlock)) throw new Error(firstBlock.problem);

/** Records and report of a file. */
function read(file: string): { records: unknown[]; report: SegmentReport } {
  const records: unknown[] = [];
  const reading = readSegment(file);
  for (;;) {
    const step = reading.next();
    if (step.done) return { records, report: step.value };
    records.push(step.value);
  }
}

/** Writes `bytes` to a file in a fresh directory and returns its path. */
function fileWith(t: { teardown: (fn: () => void) => void }, bytes: Buffer): string {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const file = path.join(dir.dataDir, 'segment.avro');
  fs.writeFileSync(file, bytes);
  return file;
}

function problemOf(report: SegmentReport): { problem: string; offset: number } {
  if (report.ok) throw new Error(`expected a problem, got ${formatReport(report)}`);
  return { problem: report.problem, offset: report.offset };
}

test('readSegment() - yields the records of a sound segment in order and reports their count and blocks', (t) => {
  const { records, report } = read(fixture('valid.avro'));
  t.deepEqual(
    records.map(plain),
    Array.from({ length: 86 }, (_, i) => point(i)),
  );
  t.deepEqual(report, { file: fixture('valid.avro'), ok: true, records: 86, blocks: 1, codec: 'null', channel: 'hopper' });
});

test('readSegment() - a schemaless segment of 0.2.0 (JSON envelope) gives back strings, Buffers and JSON values, as that channel delivered them', (t) => {
  const { records } = read(fixture('schemaless.avro'));
  t.deepEqual(records, [
    'a line of text',
    Buffer.from([0x00, 0xff, 0x10, 0x80, 0x0a]),
    { id: 7, tags: ['x', 'y'], nested: { ok: true, none: null } },
    42,
    'café ✓',
  ]);
});

test('readSegment() - a schemaless segment gives back values of every kind as the channel delivers them, and stringifyRecord() prints each on one line', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<unknown>({ dataDir: dir.dataDir, maxMemoryBytes: 0 });
  t.teardown(() => hopper.destroy());
  const circular: Record<string, unknown> = { name: 'loop' };
  circular.self = circular;
  const values: unknown[] = [
    'text',
    Buffer.from([1, 2]),
    { plain: [1, 'two', null] },
    Number.NaN,
    2n ** 70n,
    new Map([['k', { b: Buffer.from('hi') }]]),
    new Date(0),
    circular,
    new Uint16Array([7]),
  ];
  for (const value of values) hopper.send(value);
  await diskSettled(hopper); // the segment is written in the background
  const [file] = dir.files().filter((name) => name.endsWith('.avro'));
  const { records, report } = read(path.join(dir.dataDir, file!));
  t.true(report.ok);
  t.true(util.isDeepStrictEqual(records, values));
  const lines = records.map((record) => stringifyRecord(record, true));
  t.deepEqual(lines.slice(0, 7), [
    '"text"',
    '{"$base64":"AQI="}',
    '{"plain":[1,"two",null]}',
    'null',
    '"1180591620717411303424"',
    '{}',
    '"1970-01-01T00:00:00.000Z"',
  ]);
  t.regex(lines[7]!, /^"<ref \*1> \{ name: 'loop', self: \[Circular \*1\] \}"$/);
  t.is(lines[8], '{"0":7}', 'other typed arrays as JSON.stringify shows them');
});

test('readSegment() - deflate blocks, and Avro files that are not hopper segments', (t) => {
  const deflated = read(fixture('deflate.avro'));
  t.deepEqual(
    deflated.records.map(plain),
    Array.from({ length: 50 }, (_, i) => point(i)),
  );
  t.like(deflated.report, { ok: true, blocks: 2, codec: 'deflate' });
  const foreign = read(fixture('foreign.avro'));
  t.is(foreign.records.length, 5);
  t.like(foreign.report, { ok: true, channel: undefined });
});

test('verifySegment() - each corrupted fixture is reported with its first problem and the byte offset where it is', (t) => {
  const { dataStart, dataEnd, end } = firstBlock;
  // bad-count.avro says 85 records where there are 86: the problem is where the 86th starts.
  const type = avsc.Type.forSchema(header.schema as Schema);
  let used85 = 0;
  for (let i = 0; i < 85; i++) used85 = type.decode(valid.subarray(dataStart, dataEnd), used85).offset;
  const cases: Array<[string, string, number]> = [
    ['truncated.avro', `the block size ${dataEnd - dataStart} runs past the end of the data (${valid.length - 100 - dataStart} bytes left)`, header.length],
    ['flipped-bytes.avro', `record 1 of the block's ${firstBlock.count} does not decode with the file's schema`, dataStart],
    ['bad-sync.avro', 'the sync marker does not match the header', dataEnd],
    ['bad-count.avro', `the block's 85 records use ${used85} of its ${dataEnd - dataStart} bytes`, dataStart + used85],
    ['trailing-garbage.avro', 'the block record count is -52', end],
    ['not-avro.avro', 'not an Avro object container file (the magic bytes "Obj\\x01" are missing)', 0],
  ];
  for (const [name, problem, offset] of cases) {
    t.deepEqual(problemOf(verifySegment(fixture(name))), { problem, offset }, name);
  }
});

test('readSegment() - stops at the first problem: the records before it are yielded, none after', (t) => {
  const { records, report } = read(fixture('bad-count.avro'));
  t.deepEqual(
    records.map(plain),
    Array.from({ length: 85 }, (_, i) => point(i)),
  );
  t.like(report, { ok: false, records: 85 });
});

test('verifySegment() - a header cut short, an unknown codec, a schema that is not Avro, a deflate block that does not inflate', (t) => {
  t.deepEqual(problemOf(verifySegment(fileWith(t, valid.subarray(0, 100)))), {
    problem: 'the header is cut short or lacks the avro.schema metadata',
    offset: 0,
  });

  const sync = Buffer.alloc(16, 7);
  const snappy = Buffer.concat([encodeHeader(Buffer.from('"string"'), 'snappy', sync), encodeBlockHeader(1, 2), Buffer.from([2, 0x61]), sync]);
  t.deepEqual(problemOf(verifySegment(fileWith(t, snappy))), { problem: 'the codec "snappy" is not supported', offset: 0 });

  const notSchema = encodeHeader(Buffer.from('{"type":"nothing"}'), 'null', sync);
  t.regex(problemOf(verifySegment(fileWith(t, notSchema))).problem, /^the header's avro.schema is not a valid Avro schema \(/);

  const deflate = Buffer.from(fs.readFileSync(fixture('deflate.avro')));
  const deflateHeader = decodeHeader(deflate)!;
  const block = parseBlockHeader(deflate, deflateHeader.length, deflate.length - deflateHeader.length);
  if (isProblem(block)) throw new Error(block.problem);
  deflate.fill(0xff, block.dataStart, block.dataStart + 4);
  t.deepEqual(problemOf(verifySegment(fileWith(t, deflate))), { problem: 'the block does not inflate (invalid block type)', offset: block.dataStart });
});

test('verifySegment() - a header with no blocks is a sound, empty file; a missing file is reported, not thrown', (t) => {
  t.like(verifySegment(fileWith(t, valid.subarray(0, header.length))), { ok: true, records: 0, blocks: 0 });
  t.like(verifySegment('/nonexistent/segment.avro'), { ok: false, problem: 'cannot read the file (ENOENT on open)', offset: 0 });
});

test('verifySegment() - a FIFO named like a segment is reported as not a regular file, without waiting for a writer', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const fifo = path.join(dir.dataDir, '000000000001.avro');
  execFileSync('mkfifo', [fifo]);
  t.deepEqual(segmentFiles(dir.dataDir), [fifo]);
  t.like(verifySegment(fifo), { ok: false, records: 0, offset: 0, problem: 'not a regular file (a FIFO, socket, device or directory)' });
});

test('segmentFiles() - a directory gives its .avro files, sorted; a file is itself', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  for (const name of ['000000000002.avro', '000000000001.avro', 'hopper.lock', 'notes.txt']) fs.writeFileSync(path.join(dir.dataDir, name), '');
  t.deepEqual(
    segmentFiles(dir.dataDir),
    ['000000000001.avro', '000000000002.avro'].map((name) => path.join(dir.dataDir, name)),
  );
  t.deepEqual(segmentFiles(fixture('valid.avro')), [fixture('valid.avro')]);
});

test('formatReport() - one line: the record and block counts with the codec and channel, or the offset and the problem', (t) => {
  t.is(
    formatReport({ file: 'a.avro', ok: true, records: 1, blocks: 1, codec: 'null', channel: 'jobs' }),
    'a.avro: ok, 1 record in 1 block (null, channel "jobs")',
  );
  t.is(
    formatReport({ file: 'b.avro', ok: true, records: 0, blocks: 0, codec: 'deflate', channel: undefined }),
    'b.avro: ok, 0 records in 0 blocks (deflate, not a hopper segment)',
  );
  t.is(
    formatReport({ file: 'c.avro', ok: false, records: 3, problem: 'the sync marker does not match the header', offset: 99 }),
    'c.avro: bad at byte 99: the sync marker does not match the header',
  );
});
