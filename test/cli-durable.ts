import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { parseCommand, UsageError } from '../lib/cli/args.js';
import { channelStatus, formatStatus, StatusError } from '../lib/cli/status.js';
import { createHopperStreams } from '../lib/index.js';
import { decodeHeader } from '../lib/ocf.js';
import { encodeLedger, LEDGER_FILE } from '../lib/segments/ledger-file.js';
import { segmentFileName } from '../lib/segments/ledger.js';
import { writeDurableSegment } from './helpers/durable-dir.js';
import { tempDataDir } from './helpers/index.js';

// The command line on durable channels: `status` shows the backlog; `verify` and `cat` read a
// durable channel's directory as its next open would (acknowledged records, torn tails). The
// directories are built by hand (test/helpers/durable-dir.ts): segments of `long` records whose
// values are their record numbers, and a ledger file. The commands run from source through tsx.

const root = fileURLToPath(new URL('..', import.meta.url));
const cliSource = path.join(root, 'lib', 'cli', 'index.ts');

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx/esm', cliSource, ...args], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const { code, stdout, stderr } = err as { code: number; stdout: string; stderr: string };
    return { code, stdout, stderr };
  }
}

/**
 * A durable channel `events` in a fresh dataDir: segment 1 holds records 0..9 (blocks of 5),
 * segment 2 records 10..29 (blocks of 8, 8, 4), segment 3 records 30..39 (one block); acked 14,
 * delivered 20, synced 40.
 */
function channel(t: { teardown(fn: () => void): void }, ledger: Partial<{ acked: number; delivered: number; synced: number }> = {}) {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'events');
  fs.mkdirSync(channelDir);
  const segments = [
    writeDurableSegment(channelDir, 1, 0, [5, 5]),
    writeDurableSegment(channelDir, 2, 10, [8, 8, 4]),
    writeDurableSegment(channelDir, 3, 30, [10]),
  ];
  const state = { channel: 'events', acked: 14, delivered: 20, synced: 40, nextSeq: 4, writtenAt: '2026-12-03T14:25:40.113Z', ...ledger };
  fs.writeFileSync(path.join(channelDir, LEDGER_FILE), encodeLedger(state));
  return { dataDir: dir.dataDir, channelDir, segments, state };
}

test('status - the backlog of a durable channel: records from the oldest unacknowledged, bytes, files, where delivery starts', (t) => {
  const { dataDir, channelDir, segments } = channel(t);
  const status = channelStatus(dataDir, 'events');
  t.true(status.durable);
  t.is(status.ledger.status, 'ok');
  t.deepEqual(status.owner, { state: 'free' });
  t.is(status.backlog.records, 40 - 14);
  t.is(status.backlog.bytes, segments[1]!.size + segments[2]!.size, 'segment 1 is acknowledged: not part of the backlog');
  t.is(status.backlog.segments, 2);
  t.deepEqual(status.removable, [`${segmentFileName(1)} (acknowledged)`]);
  const headerLength = decodeHeader(fs.readFileSync(segments[1]!.file))!.length;
  t.deepEqual(
    status.oldest,
    { record: 14, file: segmentFileName(2), blockOffset: headerLength, index: 4, blockRecords: 8 },
    'record 14 is the 5th of the block of 10..17',
  );
  t.deepEqual(status.delivered, { upTo: 20, unacknowledged: 6 });
  t.deepEqual(status.lastFsync, { before: '2026-12-03T14:25:40.113Z', syncedBelow: 40 });
  t.deepEqual(status.torn, []);
  const text = formatStatus(status);
  t.regex(text, new RegExp(`^channel +${channelDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(durable\\), ledger ok, written 2026-12-03T14:25:40.113Z$`, 'm'));
  t.regex(text, /^backlog +26 records, [\d.]+ (B|KiB) in 2 segments \(000000000002\.avro \.\. 000000000003\.avro\)$/m);
  t.regex(text, new RegExp(`^oldest +record 14: 000000000002\\.avro, block at byte ${headerLength}, record 5 of 8; unacknowledged$`, 'm'));
  t.regex(text, /^delivered +up to record 20 when the ledger was written \(6 delivered, not acknowledged\)$/m);
  t.regex(text, /^last fsync +before 2026-12-03T14:25:40\.113Z: records below 40 synced$/m);
  t.regex(text, /^torn tail +none$/m);
  t.regex(text, /^next open +removes 000000000001\.avro \(acknowledged\)$/m);
});

test('status - a torn tail is reported with the records its block held; a missing ledger means everything on disk is backlog', (t) => {
  const { dataDir, channelDir, segments } = channel(t, { synced: 30 });
  const last = segments[2]!;
  fs.truncateSync(last.file, last.size - 7); // the one block of segment 3 cut short by a crash
  const status = channelStatus(dataDir, 'events');
  t.is(status.torn.length, 1);
  t.like(status.torn[0], { file: segmentFileName(3), records: 10 });
  t.is(status.backlog.records, 30 - 14, 'the torn block is not backlog: the next open cuts it off');
  t.regex(
    formatStatus(status),
    /^torn tail +000000000003\.avro at byte \d+: the last block \(10 records\) was cut short by a crash; the next open cuts it off$/m,
  );

  fs.unlinkSync(path.join(channelDir, LEDGER_FILE));
  const noLedger = channelStatus(dataDir, 'events');
  t.is(noLedger.ledger.status, 'missing');
  t.is(noLedger.backlog.records, 30, 'every record on disk');
  t.is(noLedger.oldest?.record, 0);
  t.regex(formatStatus(noLedger), /^last fsync +unknown \(no readable ledger\)$/m);
});

test('status - a channel of a non-durable hopper, and no channel at all', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  t.throws(() => channelStatus(dir.dataDir, 'none'), { instanceOf: StatusError, message: /none: no channel here \(ENOENT\)/ });
  fs.mkdirSync(path.join(dir.dataDir, 'plain'));
  const status = channelStatus(dir.dataDir, 'plain');
  t.false(status.durable);
  t.regex(formatStatus(status), /\(not durable\)/);
});

test('status - the command: exit 0 with the report, --json for machines, 1 without a channel, 2 for bad flags', async (t) => {
  const { dataDir } = channel(t);
  const shown = await run(['status', '--dir', dataDir, '--name', 'events']);
  t.is(shown.code, 0, shown.stderr);
  t.regex(shown.stdout, /^backlog +26 records/m);
  const json = await run(['status', '--dir', dataDir, '--name', 'events', '--json']);
  t.is(json.code, 0, json.stderr);
  t.like(JSON.parse(json.stdout), { durable: true, backlog: { records: 26, segments: 2 }, delivered: { upTo: 20, unacknowledged: 6 } });
  const missing = await run(['status', '--dir', dataDir, '--name', 'nothing']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /no channel here/);
  const usage = await run(['status', '--name', 'events']);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /status needs --dir/);
});

test('parseCommand() - status takes --dir, --name (default hopper) and --json; cat takes --all; verify refuses it', (t) => {
  t.deepEqual(parseCommand(['status', '--dir', '/d']), { command: 'status', dir: '/d', name: 'hopper', json: false });
  t.deepEqual(parseCommand(['status', '--dir', '/d', '--name', 'n', '--json']), { command: 'status', dir: '/d', name: 'n', json: true });
  t.throws(() => parseCommand(['status', '--dir', '/d', '--name', 'a/b']), { instanceOf: UsageError, message: /not a single directory name/ });
  t.throws(() => parseCommand(['status', '--dir', '/d', 'extra']), { instanceOf: UsageError });
  t.deepEqual(parseCommand(['cat', '--all', 'DIR']), { command: 'cat', files: ['DIR'], json: false, all: true });
  t.throws(() => parseCommand(['verify', '--all', 'DIR']), { instanceOf: UsageError, message: /--all is an option of cat/ });
});

test('verify - a durable channel directory: its ledger judged, acknowledged segments said, a torn tail not counted as damage', async (t) => {
  const { channelDir, segments } = channel(t, { synced: 30 });
  const sound = await run(['verify', channelDir]);
  t.is(sound.code, 0, sound.stderr);
  const lines = sound.stdout.trim().split('\n');
  t.is(lines[0], `${path.join(channelDir, LEDGER_FILE)}: ok, acknowledged below record 14, next segment 4`);
  t.regex(lines[1]!, /000000000001\.avro: ok, 10 records in 2 blocks .*, all acknowledged \(removed at next open\)$/);
  t.regex(lines[2]!, /000000000002\.avro: ok, 20 records in 3 blocks .*, 4 records of them acknowledged$/);
  t.regex(lines[3]!, /000000000003\.avro: ok, 10 records in 1 block /);

  fs.truncateSync(segments[2]!.file, segments[2]!.size - 7);
  const torn = await run(['verify', channelDir]);
  t.is(torn.code, 0, 'a torn tail is what a crash leaves: not damage');
  t.regex(
    torn.stdout,
    /000000000003\.avro: ok, 0 records, then torn at byte \d+: the last block \(10 records\) was cut short by a crash; the next open cuts it off/,
  );

  // Damage: a sync marker changed inside segment 2 (below the synced mark).
  const bytes = fs.readFileSync(segments[1]!.file);
  bytes[segments[1]!.blockEnds[0]! - 1]! ^= 0xff;
  fs.writeFileSync(segments[1]!.file, bytes);
  const damaged = await run(['verify', channelDir]);
  t.is(damaged.code, 1);
  t.regex(damaged.stdout, /000000000002\.avro: bad at byte/);
});

test('cat - a durable channel directory prints what its next open would deliver, up to a torn tail; --all the acknowledged records too', async (t) => {
  const { channelDir, segments } = channel(t, { synced: 30 });
  const numbers = (text: string): number[] => text.trim().split('\n').map(Number);
  const from = (start: number, end: number): number[] => Array.from({ length: end - start }, (_, i) => start + i);
  const backlog = await run(['cat', channelDir]);
  t.is(backlog.code, 0, backlog.stderr);
  t.deepEqual(numbers(backlog.stdout), from(14, 40));
  const all = await run(['cat', '--all', channelDir]);
  t.deepEqual(numbers(all.stdout), from(0, 40));

  const last = segments[2]!;
  fs.truncateSync(last.file, last.size - 7);
  const torn = await run(['cat', channelDir]);
  t.is(torn.code, 0, torn.stderr);
  t.deepEqual(numbers(torn.stdout), from(14, 30), 'the torn block is cut off, silently: the next open does the same');
  t.is(torn.stderr, '');
  // A segment file named on the command line is read as before: to its end, the torn block reported.
  const file = await run(['cat', last.file]);
  t.is(file.code, 1);
  t.regex(file.stderr, /bad at byte/);
});

test('status, verify and cat - a channel written by the library: backlog from the acknowledged position, the live owner, the records in order', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const schema = {
    type: 'record',
    name: 'Entry',
    fields: [
      { name: 'id', type: 'long' },
      { name: 'pad', type: 'string' },
    ],
  } as const;
  const hopper = createHopperStreams<{ id: number; pad: string }>({
    dataDir: dir.dataDir,
    name: 'events',
    schema,
    durable: true,
    fsync: 'batch',
    ack: 'manual',
    maxMemoryBytes: 2048,
    maxSegmentBytes: 4096,
  });
  for (let i = 0; i < 400; i++) hopper.writable.write({ id: i, pad: `record ${i}` });
  const got: number[] = [];
  await new Promise<void>((resolve) => {
    const take = (entry: { id: number }): void => {
      got.push(entry.id);
      if (got.length < 400) return;
      hopper.readable.off('data', take);
      hopper.readable.pause();
      resolve();
    };
    hopper.readable.on('data', take);
  });
  t.is(got.length, 400);
  hopper.ack(150);
  await hopper.flush();

  const live = channelStatus(dir.dataDir, 'events');
  t.like(live, { durable: true, ledger: { status: 'ok' }, owner: { state: 'held', pid: process.pid, verdict: 'alive' } });
  t.is(live.backlog.records, 250);
  t.is(live.oldest?.record, 150);
  t.deepEqual(live.delivered, { upTo: 400, unacknowledged: 250 });
  t.true(live.lastFsync !== undefined, 'the ledger says how far records were synced (as fresh as the ledger file, which may lag a commit)');
  t.regex(formatStatus(live), new RegExp(`^owner +pid ${process.pid} on .+, alive, heartbeat \\d+ s ago$`, 'm'));
  const verified = await run(['verify', path.join(dir.dataDir, 'events')]);
  t.is(verified.code, 0, verified.stderr);
  t.regex(
    verified.stdout,
    /hopper\.ledger: ok, acknowledged below record 150, next segment \d+ \(open by pid \d+ on .+: the last block may still be being written\)/,
  );

  await hopper.close();
  const closed = channelStatus(dir.dataDir, 'events');
  t.deepEqual(closed.owner, { state: 'free' });
  t.is(closed.backlog.records, 250);
  const printed = await run(['cat', path.join(dir.dataDir, 'events')]);
  t.is(printed.code, 0, printed.stderr);
  const records = printed.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { id: number; pad: string });
  t.deepEqual(
    records.map((r) => r.id),
    Array.from({ length: 250 }, (_, i) => 150 + i),
  );
  t.deepEqual(records[0], { id: 150, pad: 'record 150' });
});
