import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { tempDataDir } from './helpers/index.js';
import { PAGE_BYTES, PowerCutFileSystem, type PowerCutReport } from './helpers/power-cut-fs.js';

// The power-cut model of test/helpers/power-cut-fs.ts, tested on its own: what it keeps is what
// was synced, and what it may throw away is what was not, over many seeds. The durable channel's
// power-loss tests rest on it.

const CREATE = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
const DIRECTORY = fs.constants.O_RDONLY | fs.constants.O_DIRECTORY;
const SEEDS = 64;

function model(t: { teardown(fn: () => void): void }, seed: number, entries?: 'independent' | 'ordered') {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  return { dir, model: new PowerCutFileSystem({ root: dir.dataDir, seed, ...(entries ? { entries } : {}) }) };
}

function write(model: PowerCutFileSystem, fd: number, text: string, position: number): void {
  model.fs.writevSync(fd, [Buffer.from(text)], position);
}

function syncDir(model: PowerCutFileSystem, dir: string): void {
  const fd = model.fs.openSync(dir, DIRECTORY);
  (model.fs as unknown as typeof fs).fsyncSync(fd);
  model.fs.closeSync(fd);
}

const read = (file: string): string | undefined => (fs.existsSync(file) ? fs.readFileSync(file, 'latin1') : undefined);

test('PowerCutFileSystem - a synced file keeps its synced bytes and at most a prefix of the rest, cut at any byte or zero-filled', async (t) => {
  const outcomes = new Set<string>();
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const file = path.join(dir.dataDir, 'a');
    const fd = m.fs.openSync(file, CREATE);
    syncDir(m, dir.dataDir);
    write(m, fd, 'synced:', 0);
    (m.fs as unknown as typeof fs).fdatasyncSync(fd);
    write(m, fd, 'later-bytes', 7);
    m.fs.closeSync(fd);
    const report = await m.powerCut();
    const after = read(file);
    t.not(after, undefined, `seed ${seed}: a file whose entry was synced stays`);
    t.true(after!.startsWith('synced:'), `seed ${seed}: synced bytes stay (${JSON.stringify(after)})`);
    const rest = after!.slice(7);
    const written = 'later-bytes';
    const zeroFrom = rest.search(/\0/);
    const prefix = zeroFrom === -1 ? rest : rest.slice(0, zeroFrom);
    t.true(written.startsWith(prefix), `seed ${seed}: what follows is a prefix of what was written (${JSON.stringify(rest)})`);
    if (zeroFrom !== -1) t.regex(rest.slice(zeroFrom), /^\0+$/, `seed ${seed}: then only zeros`);
    t.true(rest.length <= written.length, `seed ${seed}: never longer than what was written`);
    t.is(report.files[0]!.kept + report.files[0]!.lost, written.length);
    outcomes.add(rest === written ? 'all' : rest === '' ? 'none' : zeroFrom !== -1 ? 'zeros' : 'cut');
  }
  t.deepEqual([...outcomes].sort(), ['all', 'cut', 'none', 'zeros'], 'every kind of loss is drawn over the seeds');
});

test('PowerCutFileSystem - zeros start where the synced bytes end or at a page boundary, never after data that landed mid-page', async (t) => {
  const starts = new Set<number>();
  for (let seed = 1; seed <= SEEDS * 2; seed++) {
    const { dir, model: m } = model(t, seed);
    const file = path.join(dir.dataDir, 'a');
    const fd = m.fs.openSync(file, CREATE);
    syncDir(m, dir.dataDir);
    write(m, fd, 'synced:', 0);
    (m.fs as unknown as typeof fs).fdatasyncSync(fd);
    write(m, fd, 'x'.repeat(3 * PAGE_BYTES), 7);
    m.fs.closeSync(fd);
    await m.powerCut();
    const after = fs.readFileSync(file);
    const zeroAt = after.indexOf(0);
    if (zeroAt === -1) continue;
    t.true(
      after.subarray(zeroAt).every((b) => b === 0),
      `seed ${seed}: only zeros after the first`,
    );
    t.true(zeroAt === 7 || zeroAt % PAGE_BYTES === 0, `seed ${seed}: zeros from ${zeroAt}`);
    starts.add(zeroAt === 7 ? 7 : PAGE_BYTES);
  }
  t.deepEqual(
    [...starts].sort((a, b) => a - b),
    [7, PAGE_BYTES],
    'both kinds of start are drawn',
  );
});

test('PowerCutFileSystem - a file never synced keeps at most a prefix of what was written', async (t) => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const file = path.join(dir.dataDir, 'a');
    const fd = m.fs.openSync(file, CREATE);
    syncDir(m, dir.dataDir);
    write(m, fd, 'abcdefgh', 0);
    m.fs.closeSync(fd);
    await m.powerCut();
    const after = read(file)!;
    t.true('abcdefgh'.startsWith(after.replace(/\0+$/, '')), `seed ${seed}: ${JSON.stringify(after)}`);
  }
});

test('PowerCutFileSystem - what was synced, data and entries, survives every seed exactly', async (t) => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const sub = path.join(dir.dataDir, 'sub');
    fs.mkdirSync(sub);
    const a = path.join(sub, 'a');
    const b = path.join(sub, 'b');
    let fd = m.fs.openSync(a, CREATE);
    write(m, fd, 'first', 0);
    (m.fs as unknown as typeof fs).fsyncSync(fd);
    m.fs.closeSync(fd);
    fd = m.fs.openSync(b, CREATE);
    write(m, fd, 'second', 0);
    (m.fs as unknown as typeof fs).fsyncSync(fd);
    m.fs.closeSync(fd);
    m.fs.unlinkSync(a);
    syncDir(m, sub);
    await m.powerCut();
    t.is(read(a), undefined, `seed ${seed}: a synced unlink stays done`);
    t.is(read(b), 'second', `seed ${seed}`);
  }
});

test('PowerCutFileSystem - an entry not covered by a directory fsync may vanish, and a synced one never does', async (t) => {
  let vanished = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const synced = path.join(dir.dataDir, 'synced');
    const unsynced = path.join(dir.dataDir, 'unsynced');
    let fd = m.fs.openSync(synced, CREATE);
    write(m, fd, 'x', 0);
    (m.fs as unknown as typeof fs).fsyncSync(fd);
    m.fs.closeSync(fd);
    syncDir(m, dir.dataDir);
    fd = m.fs.openSync(unsynced, CREATE);
    write(m, fd, 'y', 0);
    (m.fs as unknown as typeof fs).fsyncSync(fd); // the data is synced, its name is not
    m.fs.closeSync(fd);
    await m.powerCut();
    t.is(read(synced), 'x', `seed ${seed}`);
    const after = read(unsynced);
    if (after === undefined) vanished++;
    else t.is(after, 'y', `seed ${seed}: a kept entry brings its synced data`);
  }
  t.true(vanished > 0 && vanished < SEEDS, `the unsynced entry vanished in ${vanished} of ${SEEDS} seeds`);
});

test('PowerCutFileSystem - a rename not covered by a directory fsync is kept or reverted, never both names nor neither', async (t) => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const old = path.join(dir.dataDir, 'ledger');
    const draft = path.join(dir.dataDir, 'draft');
    for (const [file, text] of [
      [old, 'old'],
      [draft, 'new'],
    ] as const) {
      const fd = m.fs.openSync(file, CREATE);
      write(m, fd, text, 0);
      (m.fs as unknown as typeof fs).fsyncSync(fd);
      m.fs.closeSync(fd);
    }
    syncDir(m, dir.dataDir);
    (m.fs as unknown as typeof fs).renameSync(draft, old);
    await m.powerCut();
    const state = `${read(old)}|${read(draft)}`;
    t.true(state === 'new|undefined' || state === 'old|new', `seed ${seed}: ${state}`);
    seen.add(state);
  }
  t.is(seen.size, 2, 'both outcomes are drawn');
});

test('PowerCutFileSystem - a directory fsync that started earlier and ends later does not undo what a later one covered', async (t) => {
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const seam = m.fs as unknown as typeof fs;
    const old = path.join(dir.dataDir, 'ledger');
    const draft = path.join(dir.dataDir, 'draft');
    for (const [file, text] of [
      [old, 'old'],
      [draft, 'new'],
    ] as const) {
      const fd = m.fs.openSync(file, CREATE);
      write(m, fd, text, 0);
      seam.fsyncSync(fd);
      m.fs.closeSync(fd);
    }
    const dirFd = m.fs.openSync(dir.dataDir, DIRECTORY);
    const early = new Promise<Error | null>((resolve) => seam.fsync(dirFd, resolve)); // snapshot before the rename
    seam.renameSync(draft, old);
    syncDir(m, dir.dataDir); // covers the rename, and ends first
    t.is(await early, null);
    m.fs.closeSync(dirFd);
    await m.powerCut();
    t.is(read(old), 'new', `seed ${seed}: the rename was covered by a directory fsync`);
    t.is(read(draft), undefined, `seed ${seed}`);
  }
});

test('PowerCutFileSystem - an unlink not covered by a directory fsync may come back, with its last content', async (t) => {
  let back = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const file = path.join(dir.dataDir, 'segment');
    const fd = m.fs.openSync(file, CREATE);
    write(m, fd, 'records', 0);
    (m.fs as unknown as typeof fs).fsyncSync(fd);
    m.fs.closeSync(fd);
    syncDir(m, dir.dataDir);
    m.fs.unlinkSync(file);
    await m.powerCut();
    const after = read(file);
    if (after !== undefined) {
      back++;
      t.is(after, 'records', `seed ${seed}`);
    }
  }
  t.true(back > 0 && back < SEEDS, `the unlinked file came back in ${back} of ${SEEDS} seeds`);
});

test('PowerCutFileSystem - a truncation after the last sync is kept or undone', async (t) => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { dir, model: m } = model(t, seed);
    const file = path.join(dir.dataDir, 'segment');
    const fd = m.fs.openSync(file, CREATE);
    write(m, fd, 'good-torn', 0);
    (m.fs as unknown as typeof fs).fsyncSync(fd);
    syncDir(m, dir.dataDir);
    (m.fs as unknown as typeof fs).ftruncateSync(fd, 4);
    m.fs.closeSync(fd);
    await m.powerCut();
    const after = read(file)!;
    t.true(after === 'good' || after === 'good-torn', `seed ${seed}: ${after}`);
    seen.add(after);
  }
  t.is(seen.size, 2);
});

/** A model over a fresh directory with a lock directory in it: where a segment's draft and the segment go. */
function draftAndSegment(t: Parameters<typeof model>[0], seed: number): { m: ReturnType<typeof model>['model']; draft: string; segment: string } {
  const { dir, model: m } = model(t, seed);
  const lockDir = path.join(dir.dataDir, 'hopper.lock');
  fs.mkdirSync(lockDir);
  return { m, draft: path.join(lockDir, 'draft'), segment: path.join(dir.dataDir, '000001.avro') };
}

test('PowerCutFileSystem - a hard link into place (the segment draft) is modelled per name', async (t) => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { m, draft, segment } = draftAndSegment(t, seed);
    const fd = m.fs.openSync(draft, CREATE);
    write(m, fd, 'header', 0);
    m.fs.linkSync(draft, segment);
    m.fs.unlinkSync(draft);
    write(m, fd, '+block', 6);
    (m.fs as unknown as typeof fs).fdatasyncSync(fd);
    m.fs.closeSync(fd);
    await m.powerCut();
    const after = read(segment);
    t.true(after === undefined || after === 'header+block', `seed ${seed}: the data was synced (${after})`);
    const draftAfter = read(draft);
    if (draftAfter !== undefined && after !== undefined) t.is(fs.lstatSync(draft).ino, fs.lstatSync(segment).ino, 'one file under both names');
    seen.add(`${after !== undefined}/${draftAfter !== undefined}`);
  }
  t.true(seen.size >= 3, [...seen].join(', '));
});

test('PowerCutFileSystem - an asynchronous segment creation (draft, header, link, unlink on the thread pool) is modelled as the synchronous one, and logged as asynchronous', async (t) => {
  const seen = new Set<string>();
  for (let seed = 1; seed <= SEEDS; seed++) {
    const { m, draft, segment } = draftAndSegment(t, seed);
    const seam = m.fs as unknown as typeof fs;
    const fd = await promisify(seam.open)(draft, CREATE, 0o644);
    await promisify(seam.writev)(fd, [Buffer.from('header')], 0);
    await promisify(seam.link)(draft, segment);
    await promisify(seam.unlink)(draft);
    await promisify(seam.writev)(fd, [Buffer.from('+block')], 6);
    await promisify(seam.fdatasync)(fd);
    m.fs.closeSync(fd);
    t.deepEqual(
      m.log.map((entry) => `${entry.op}${entry.sync ? ' sync' : ''}`),
      ['create', 'write', 'link', 'unlink', 'write', 'fsync'],
    );
    await m.powerCut();
    const after = read(segment);
    t.true(after === undefined || after === 'header+block', `seed ${seed}: the data was synced (${after})`);
    seen.add(`${after !== undefined}/${read(draft) !== undefined}`);
  }
  t.true(seen.size >= 3, [...seen].join(', '));
});

test('PowerCutFileSystem - the same seed and the same calls leave the same directory', async (t) => {
  const run = async (seed: number): Promise<{ report: PowerCutReport; files: Record<string, string | undefined> }> => {
    const { dir, model: m } = model(t, seed);
    const files: Record<string, string | undefined> = {};
    for (let i = 0; i < 6; i++) {
      const file = path.join(dir.dataDir, `f${i}`);
      const fd = m.fs.openSync(file, CREATE);
      write(m, fd, `content-${i}-`.repeat(i + 1), 0);
      if (i % 2 === 0) (m.fs as unknown as typeof fs).fsyncSync(fd);
      m.fs.closeSync(fd);
      if (i === 2) syncDir(m, dir.dataDir);
    }
    const report = await m.powerCut();
    for (let i = 0; i < 6; i++) files[`f${i}`] = read(path.join(dir.dataDir, `f${i}`));
    return { report, files };
  };
  for (const seed of [7, 99, 12345]) t.deepEqual(await run(seed), await run(seed));
  t.notDeepEqual((await run(1)).files, (await run(2)).files, 'another seed draws another outcome');
});

test('PowerCutFileSystem - after kill() or a power cut the old seam fails with EIO and changes nothing; the new one works', async (t) => {
  const { dir, model: m } = model(t, 3);
  const file = path.join(dir.dataDir, 'a');
  const old = m.fs;
  const fd = old.openSync(file, CREATE);
  m.kill();
  t.throws(() => old.writevSync(fd, [Buffer.from('late')], 0), { code: 'EIO' });
  t.throws(() => old.openSync(path.join(dir.dataDir, 'b'), CREATE), { code: 'EIO' });
  const late = await new Promise<Error | null>((resolve) => old.writev(fd, [Buffer.from('late')], 0, (err) => resolve(err)));
  t.is((late as NodeJS.ErrnoException).code, 'EIO');
  t.is(fs.statSync(file).size, 0, 'no late write reached the disk');
  t.false(fs.existsSync(path.join(dir.dataDir, 'b')));
  old.closeSync(fd);
  await m.powerCut();
  t.throws(() => old.readdirSync(dir.dataDir), { code: 'EIO' }, 'the old process stays dead');
  t.not(m.fs, old);
  const fd2 = m.fs.openSync(path.join(dir.dataDir, 'c'), CREATE);
  write(m, fd2, 'alive', 0);
  m.fs.closeSync(fd2);
  t.is(read(path.join(dir.dataDir, 'c')), 'alive');
});

test('PowerCutFileSystem - an asynchronous write in flight at the cut lands or not, but its fsync is not promised', async (t) => {
  for (let seed = 1; seed <= 16; seed++) {
    const { dir, model: m } = model(t, seed);
    const file = path.join(dir.dataDir, 'a');
    const fd = m.fs.openSync(file, CREATE);
    syncDir(m, dir.dataDir);
    const seam = m.fs as unknown as typeof fs;
    const done = new Promise<Error | null>((resolve) => seam.writev(fd, [Buffer.from('inflight')], 0, () => seam.fdatasync(fd, resolve)));
    const report = await m.powerCut();
    t.is(((await done) as NodeJS.ErrnoException | null)?.code, 'EIO', 'the dead process hears of no completed fsync');
    const after = read(file)!;
    t.true('inflight'.startsWith(after.replace(/\0+$/, '')), `seed ${seed}: ${after} (${JSON.stringify(report.files)})`);
    fs.closeSync(fd);
  }
});

test('PowerCutFileSystem - stopBefore() kills the process just before the k-th call of an operation', async (t) => {
  const { dir, model: m } = model(t, 5);
  m.stopBefore('fsync', 2);
  const fd = m.fs.openSync(path.join(dir.dataDir, 'a'), CREATE);
  write(m, fd, 'one', 0);
  (m.fs as unknown as typeof fs).fsyncSync(fd);
  write(m, fd, 'two', 3);
  t.throws(() => (m.fs as unknown as typeof fs).fsyncSync(fd), { code: 'EIO' });
  t.true(m.killed);
  t.throws(() => write(m, fd, 'three', 6), { code: 'EIO' });
  t.deepEqual(
    m.log.map((entry) => entry.op),
    ['create', 'write', 'fsync', 'write'],
  );
  t.true(
    m.log.every((entry) => entry.sync),
    'each logged as a synchronous call',
  );
  m.fs.closeSync(fd);
  await m.restart();
  t.is(read(path.join(dir.dataDir, 'a')), 'onetwo', 'a process crash keeps the page cache');
});

test('PowerCutFileSystem - files changed outside the seam are left as the disk has them', async (t) => {
  const { dir, model: m } = model(t, 11);
  fs.writeFileSync(path.join(dir.dataDir, 'before'), 'baseline');
  const outside = path.join(dir.dataDir, 'outside');
  fs.writeFileSync(outside, 'not modelled');
  fs.unlinkSync(path.join(dir.dataDir, 'before'));
  const report = await m.powerCut();
  t.is(read(outside), 'not modelled');
  t.is(read(path.join(dir.dataDir, 'before')), undefined);
  t.deepEqual(report.entries, []);
});
