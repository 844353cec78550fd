import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { withDurableOps } from '../lib/segments/durable-io.js';
import {
  LEDGER_DRAFT,
  LEDGER_FILE,
  decodeLedger,
  encodeLedger,
  readLedgerFile,
  writeLedgerFile,
  writeLedgerFileSync,
  type LedgerState,
} from '../lib/segments/ledger-file.js';
import { SteppingFileSystem } from './helpers/durable-dir.js';
import { tempDataDir } from './helpers/index.js';

const state = (acked: number, extra: Partial<LedgerState> = {}): LedgerState => ({
  channel: 'events',
  acked,
  delivered: acked + 55,
  synced: acked + 600,
  nextSeq: 45,
  writtenAt: '2026-12-03T14:25:40.113Z',
  ...extra,
});

function channelDir(t: { teardown(fn: () => void): void }): { dir: string; lock: string } {
  const temp = tempDataDir();
  t.teardown(temp.remove);
  const dir = path.join(temp.dataDir, 'events');
  const lock = path.join(dir, 'hopper.lock');
  fs.mkdirSync(lock, { recursive: true });
  return { dir, lock };
}

const place = (dir: string, lock: string, verify: () => Error | undefined = () => undefined) => ({ path: dir, draftDir: lock, verify });

test('encodeLedger() - one line of JSON under 512 bytes, fields in a fixed order, crc32 last', (t) => {
  const bytes = encodeLedger(state(1200345));
  t.true(bytes.length < 512);
  const text = bytes.toString();
  t.true(text.endsWith('}\n'));
  t.is(text.split('\n').length, 2);
  t.deepEqual(Object.keys(JSON.parse(text) as object), ['format', 'version', 'channel', 'acked', 'delivered', 'synced', 'nextSeq', 'writtenAt', 'crc32']);
  t.deepEqual(decodeLedger(bytes, 'events'), { status: 'ok', state: state(1200345) });
});

test('decodeLedger() - a file cut short at any byte is damaged, never read as another state', (t) => {
  const bytes = encodeLedger(state(987654321));
  for (let cut = 0; cut < bytes.length - 1; cut++) {
    const read = decodeLedger(bytes.subarray(0, cut), 'events');
    t.is(read.status, 'damaged', `cut at ${cut}`);
  }
});

test('decodeLedger() - a changed digit fails the CRC; another channel, zeros and a wrong version are damaged', (t) => {
  const text = encodeLedger(state(1200345)).toString().replace('1200345', '1200346');
  t.like(decodeLedger(Buffer.from(text), 'events'), { status: 'damaged', reason: 'its CRC does not match' });
  t.like(decodeLedger(encodeLedger(state(1, { channel: 'other' })), 'events'), { status: 'damaged' });
  t.like(decodeLedger(Buffer.alloc(40), 'events'), { status: 'damaged' });
  t.like(decodeLedger(Buffer.from(encodeLedger(state(1)).toString().replace('"version":1', '"version":2')), 'events'), { status: 'damaged' });
});

test('decodeLedger() - a write torn by a power cut (any prefix of the file, then zeros to the end of a page) is damaged, never foreign', (t) => {
  const bytes = encodeLedger(state(987654321));
  for (let cut = 0; cut < bytes.length; cut++) {
    for (const zeros of [1, 4096 - cut]) {
      const torn = Buffer.concat([bytes.subarray(0, cut), Buffer.alloc(zeros)]);
      t.is(decodeLedger(torn, 'events').status, 'damaged', `${cut} bytes, then ${zeros} zeros`);
    }
  }
  t.like(decodeLedger(Buffer.concat([Buffer.from('my notes'), Buffer.alloc(100)]), 'events'), { status: 'foreign' }, 'zeros after foreign text');
  t.like(decodeLedger(Buffer.concat([Buffer.from('{"format":"x'), Buffer.alloc(100)]), 'events'), { status: 'foreign' }, 'zeros after text that is not ours');
});

test('decodeLedger() - text that is not a hopper-streams ledger is foreign', (t) => {
  t.like(decodeLedger(Buffer.from('{"acked": 5}\n'), 'events'), { status: 'foreign' });
  t.like(decodeLedger(Buffer.from('my notes\n'), 'events'), { status: 'foreign' });
});

test('readLedgerFile() - missing, ok, and foreign for a symlink, a directory or a large file (never read through)', (t) => {
  const { dir, lock } = channelDir(t);
  const seam = withDurableOps(fs);
  t.deepEqual(readLedgerFile(seam, dir, 'events'), { status: 'missing' });
  writeLedgerFileSync(seam, place(dir, lock), state(7), true);
  t.deepEqual(readLedgerFile(seam, dir, 'events'), { status: 'ok', state: state(7) });
  const file = path.join(dir, LEDGER_FILE);
  fs.rmSync(file);
  const target = path.join(dir, 'elsewhere');
  fs.writeFileSync(target, encodeLedger(state(7)));
  fs.symlinkSync(target, file);
  t.like(readLedgerFile(seam, dir, 'events'), { status: 'foreign', reason: 'it is a symlink' });
  fs.rmSync(file);
  fs.mkdirSync(file);
  t.like(readLedgerFile(seam, dir, 'events'), { status: 'foreign' });
  fs.rmdirSync(file);
  fs.writeFileSync(file, Buffer.alloc(5000, 'x'));
  t.like(readLedgerFile(seam, dir, 'events'), { status: 'foreign' });
});

test('writeLedgerFileSync() - runs L1 to L6 in order: draft in the lock directory, write, fsync, rename, directory fsync', (t) => {
  const { dir, lock } = channelDir(t);
  const stepping = new SteppingFileSystem();
  writeLedgerFileSync(stepping.fs, place(dir, lock), state(3), true);
  const draft = path.join(lock, LEDGER_DRAFT);
  t.deepEqual(stepping.log, [
    { op: 'create', path: draft },
    { op: 'write', path: draft },
    { op: 'fsync', path: draft },
    { op: 'rename', path: path.join(dir, LEDGER_FILE) },
    { op: 'fsync', path: dir },
  ]);
  t.false(fs.existsSync(draft));
  t.deepEqual(readLedgerFile(stepping.fs, dir, 'events'), { status: 'ok', state: state(3) });
});

test("writeLedgerFileSync() - with fsync 'never' (sync false) no fsync at all", (t) => {
  const { dir, lock } = channelDir(t);
  const stepping = new SteppingFileSystem();
  writeLedgerFileSync(stepping.fs, place(dir, lock), state(3), false);
  t.deepEqual(
    stepping.log.map((e) => e.op),
    ['create', 'write', 'rename'],
  );
});

test('writeLedgerFileSync() - a draft left by a crash is replaced', (t) => {
  const { dir, lock } = channelDir(t);
  fs.writeFileSync(path.join(lock, LEDGER_DRAFT), 'half a led');
  writeLedgerFileSync(withDurableOps(fs), place(dir, lock), state(9), true);
  t.deepEqual(readLedgerFile(withDurableOps(fs), dir, 'events'), { status: 'ok', state: state(9) });
});

test('writeLedgerFileSync() - a lost lock before the rename: the error is thrown, the ledger file is unchanged, the lock directory left alone', (t) => {
  const { dir, lock } = channelDir(t);
  const seam = withDurableOps(fs);
  writeLedgerFileSync(seam, place(dir, lock), state(1), true);
  const lost = new Error('lock lost');
  t.is(
    t.throws(() =>
      writeLedgerFileSync(
        seam,
        place(dir, lock, () => lost),
        state(2),
        true,
      ),
    ),
    lost,
  );
  t.deepEqual(readLedgerFile(seam, dir, 'events'), { status: 'ok', state: state(1) });
  t.true(fs.existsSync(path.join(lock, LEDGER_DRAFT)), 'the draft is left: the lock directory is no longer ours to touch');
});

test('writeLedgerFileSync() - a crash before any step leaves the old or the new ledger, never a damaged one', (t) => {
  const { dir, lock } = channelDir(t);
  const stepping = new SteppingFileSystem();
  writeLedgerFileSync(stepping.fs, place(dir, lock), state(1), true);
  const steps = stepping.log.length;
  for (let k = 0; k <= steps; k++) {
    stepping.restart();
    writeLedgerFileSync(stepping.fs, place(dir, lock), state(1), true);
    stepping.restart();
    stepping.stopAfter(k);
    const run = (): void => writeLedgerFileSync(stepping.fs, place(dir, lock), state(2), true);
    if (k < steps) t.throws(run, { code: 'ECRASHED' } as never, `step ${k}`);
    else run();
    stepping.restart();
    const read = readLedgerFile(stepping.fs, dir, 'events');
    t.is(read.status, 'ok', `crash before step ${k}`);
    if (read.status === 'ok') t.is(read.state.acked, k >= 4 ? 2 : 1, `crash before step ${k}`);
  }
});

test('writeLedgerFile() - on the thread pool, the same steps in the same order', async (t) => {
  const { dir, lock } = channelDir(t);
  const sync = new SteppingFileSystem();
  writeLedgerFileSync(sync.fs, place(dir, lock), state(3), true);
  const stepping = new SteppingFileSystem();
  await writeLedgerFile(stepping.fs, place(dir, lock), state(4), true);
  t.deepEqual(stepping.log, sync.log);
  t.deepEqual(readLedgerFile(stepping.fs, dir, 'events'), { status: 'ok', state: state(4) });
  stepping.restart();
  stepping.stopAfter(2);
  await t.throwsAsync(writeLedgerFile(stepping.fs, place(dir, lock), state(5), true), { code: 'ECRASHED' } as never);
  stepping.restart();
  t.deepEqual(readLedgerFile(stepping.fs, dir, 'events'), { status: 'ok', state: state(4) });
});
