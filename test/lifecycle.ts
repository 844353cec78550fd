import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { createHopperStream, createHopperStreams, HopperError } from '../lib/index.js';
import { spawnChild } from './helpers/children.js';
import { collect, diskSettled, nextTurn, point, pointSchema, readToFailure, tempDataDir, until, type Point } from './helpers/index.js';
import { within } from './helpers/wait.js';

const childScript = fileURLToPath(new URL('helpers/child.ts', import.meta.url));
const exitFaultChild = fileURLToPath(new URL('helpers/exit-fault-child.ts', import.meta.url));
const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/segments/${name}`, import.meta.url));
const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Starts a child process that `t.teardown` ends whatever the outcome, and waits for its first line. */
async function startChild(
  t: Parameters<typeof spawnChild>[0],
  mode: 'hold' | 'exit',
  dataDir: string,
  name: string,
): Promise<{ child: ChildProcess; info: { pid: number; path: string; segments: number } }> {
  const child = spawnChild(t, process.execPath, ['--import', 'tsx/esm', childScript, mode, dataDir, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  for await (const chunk of child.stdout!) {
    output += String(chunk);
    if (output.includes('\n')) break;
  }
  return { child, info: JSON.parse(output) };
}

test('.close() - ends the writable, resolves once everything is read, and removes the default temp directory', async (t) => {
  const hopper = createHopperStreams<Point>({ schema: pointSchema, maxMemoryBytes: 1_000, maxSegmentBytes: 2_000 });
  const channelDir = hopper.path;
  const tempDir = path.dirname(channelDir);
  for (let i = 0; i < 500; i++) hopper.send(point(i));
  t.true(fs.existsSync(channelDir));
  t.true(hopper.stats().segments > 0);
  let closed = false;
  const closing = hopper.close().then(() => {
    closed = true;
  });
  t.true(hopper.writable.writableEnded);
  t.throws(() => hopper.send(point(500)), { code: 'ERR_STREAM_WRITE_AFTER_END' } as never);
  const out = await collect<Point>(hopper.readable);
  await closing;
  t.true(closed);
  t.is(out.length, 500);
  t.false(fs.existsSync(channelDir));
  t.false(fs.existsSync(tempDir), 'the default temp dataDir is removed');
});

test('.close() - on a hopper with nothing left to deliver resolves without a reader, and removes the files', async (t) => {
  const hopper = createHopperStreams<Point>({ schema: pointSchema });
  const tempDir = path.dirname(hopper.path);
  t.false(hopper.readerAttached);
  await hopper.close();
  t.true(hopper.readable.readableEnded);
  t.false(fs.existsSync(tempDir));
  t.throws(() => hopper.send(point(1)), { code: 'ERR_STREAM_WRITE_AFTER_END' } as never);
});

test('.close() - with a sender still open, resolves without a reader once the sender ends', async (t) => {
  const hopper = createHopperStreams<Point>();
  const sender = hopper.sender();
  let closed = false;
  const closing = hopper.close().then(() => {
    closed = true;
  });
  await nextTurn();
  t.false(closed, 'the input has not ended while a sender is open');
  sender.end();
  await closing;
  t.false(fs.existsSync(hopper.path));
});

test('.close() - records nobody reads keep it waiting, and readerAttached says so; a reader then gets them all', async (t) => {
  const hopper = createHopperStreams<Point>({ maxMemoryBytes: 200 });
  for (let i = 0; i < 20; i++) hopper.send(point(i));
  let closed = false;
  const closing = hopper.close().then(() => {
    closed = true;
  });
  for (let turn = 0; turn < 5; turn++) await nextTurn();
  t.false(closed);
  t.false(hopper.readerAttached);
  t.true(fs.existsSync(hopper.path), 'the records wait, on disk too');
  const out = await collect<Point>(hopper.readable);
  await closing;
  t.true(hopper.readerAttached);
  t.deepEqual(
    out.map((p) => p.seq),
    Array.from({ length: 20 }, (_, i) => i),
  );
});

test('.readerAttached - turns true when a consumer starts reading (a data listener)', async (t) => {
  const hopper = createHopperStreams<Point>();
  t.false(hopper.readerAttached);
  const out: Point[] = [];
  hopper.readable.on('data', (p: Point) => out.push(p));
  hopper.send(point(1));
  await nextTurn();
  t.true(hopper.readerAttached);
  await hopper.close();
  t.is(out.length, 1);
});

test('createHopperStream() .close() - resolves without a reader when nothing is left to deliver, and after the records when read', async (t) => {
  const empty = createHopperStream<Point>();
  await empty.close();
  t.true(empty.destroyed);
  t.false(fs.existsSync(empty.path));
  const duplex = createHopperStream<Point>();
  duplex.write(point(1));
  duplex.write(point(2));
  let closed = false;
  const closing = duplex.close().then(() => {
    closed = true;
  });
  for (let turn = 0; turn < 5; turn++) await nextTurn();
  t.false(closed);
  t.false(duplex.readerAttached);
  const out = await collect<Point>(duplex);
  await closing;
  t.is(out.length, 2);
});

test('.destroy() - tears down both sides at once and removes the files, records on disk included', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 100, maxSegmentBytes: 1_000 });
  for (let i = 0; i < 300; i++) hopper.send(point(i));
  await diskSettled(hopper);
  t.true(dir.files().length > 2);
  const failure = new Error('operator abort');
  const readableError = once(hopper.readable, 'error');
  let writableErrors = 0;
  hopper.writable.on('error', () => writableErrors++);
  hopper.destroy(failure);
  t.is((await readableError)[0], failure);
  if (!hopper.writable.closed) await once(hopper.writable, 'close');
  t.is(writableErrors, 0, 'the error is reported once, by the readable');
  const writeError = await new Promise<Error | null | undefined>((resolve) => hopper.writable.write(point(1), resolve));
  t.is((writeError as HopperError | undefined)?.code, 'ERR_STREAM_DESTROYED');
  await t.throwsAsync(hopper.close(), { is: failure });
  t.true(hopper.readable.destroyed && hopper.writable.destroyed);
  t.deepEqual(dir.files(), []);
  t.throws(() => hopper.send(point(1)), { code: 'ERR_STREAM_DESTROYED' } as never);
});

test('.readable - a consumer that stops early (break) tears the channel down and removes its files', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 100, maxSegmentBytes: 1_000 });
  for (let i = 0; i < 300; i++) hopper.send(point(i));
  let seen = 0;
  for await (const record of hopper.readable) {
    t.is(record.seq, seen++);
    if (seen === 10) break;
  }
  await once(hopper.writable, 'close');
  t.true(hopper.writable.destroyed);
  t.deepEqual(dir.files(), []);
});

test('.readable - ends after the writable ends and every record has been delivered', async (t) => {
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 10 });
  const ended = once(hopper.readable, 'end');
  const received: string[] = [];
  hopper.readable.on('data', (record: string) => received.push(record));
  hopper.writable.write('first');
  hopper.writable.write('second, from disk');
  hopper.writable.end('third');
  await ended;
  t.deepEqual(received, ['first', 'second, from disk', 'third']);
});

for (const [name, make] of [
  [
    'createHopperStreams() .readable',
    () => {
      const h = createHopperStreams<Point>({ schema: pointSchema, maxMemoryBytes: 2048 });
      return { writable: h.writable, readable: h.readable, path: h.path };
    },
  ],
  [
    'createHopperStream()',
    () => {
      const d = createHopperStream<Point>({ schema: pointSchema, maxMemoryBytes: 2048 });
      return { writable: d, readable: d, path: d.path };
    },
  ],
] as const) {
  test(`${name} - a 'data' listener that throws while a backlog drains destroys the readable with its error; nothing is thrown out of a tick`, async (t) => {
    const { writable, readable } = make();
    // A backlog in memory and on disk, drained once a listener makes the readable flow.
    for (let i = 0; i < 500; i++) writable.write(point(i));
    const seen: number[] = [];
    readable.on('data', (record: Point) => {
      seen.push(record.seq);
      if (record.seq === 300) throw new Error('listener');
    });
    const [err] = (await once(readable, 'error')) as [Error];
    t.is(err.message, 'listener');
    t.deepEqual(
      seen,
      Array.from({ length: 301 }, (_, i) => i),
    );
    t.true(readable.destroyed);
  });

  test(`${name} - a 'data' listener that destroys the readable while a backlog drains stops delivery there and removes the files, without an error`, async (t) => {
    const { writable, readable, path: channelDir } = make();
    for (let i = 0; i < 3_000; i++) writable.write(point(i));
    // Written behind the producer's back: part of the backlog reaches the disk.
    await until(() => fs.readdirSync(channelDir).some((file) => file.endsWith('.avro')), 'part of the backlog reaching the disk');
    const seen: number[] = [];
    let errors = 0;
    readable.on('error', () => errors++);
    readable.on('data', (record: Point) => {
      seen.push(record.seq);
      if (record.seq === 2_000) readable.destroy();
    });
    await once(readable, 'close');
    await nextTurn();
    t.deepEqual(
      seen,
      Array.from({ length: 2_001 }, (_, i) => i),
    );
    t.is(errors, 0);
    t.false(fs.existsSync(channelDir));
  });
}

test('channel directory - a second open channel on the same directory fails with ERR_HOPPER_LOCKED until the first closes', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const first = createHopperStreams({ dataDir: dir.dataDir, name: 'jobs' });
  const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'jobs' }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_LOCKED');
  t.regex(err!.message, new RegExp(`locked by another channel of this thread \\(pid ${process.pid} on `));
  const other = createHopperStreams({ dataDir: dir.dataDir, name: 'other-jobs' });
  other.destroy();
  const closing = first.close();
  first.readable.resume();
  await closing;
  const again = createHopperStreams({ dataDir: dir.dataDir, name: 'jobs' });
  again.destroy();
  t.deepEqual(dir.files(), []);
});

test.serial(
  'channel directory - locked by another process, then taken over once that process is dead; stale segments removed, foreign files kept',
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const { child, info } = await startChild(t, 'hold', dir.dataDir, 'shared');
    t.true(info.segments > 1);
    const channelDir = path.join(dir.dataDir, 'shared');
    // Files that are not ours: a plain Avro file under a segment-like name, and a note.
    fs.copyFileSync(fixture('foreign.avro'), path.join(channelDir, '000000009000.avro'));
    fs.writeFileSync(path.join(channelDir, 'notes.txt'), 'keep me');
    const foreignHash = sha256(path.join(channelDir, '000000009000.avro'));

    const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'shared' }), { instanceOf: HopperError });
    t.is(err!.code, 'ERR_HOPPER_LOCKED');
    t.regex(err!.message, new RegExp(`process ${info.pid} on `));

    child.kill('SIGKILL');
    await once(child, 'exit');
    const stale = dir.files().filter((file) => /\d{12}\.avro$/.test(file) && !file.endsWith('000000009000.avro'));
    t.true(stale.length > 1, 'the dead process left its segments behind');

    const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'shared', maxMemoryBytes: 0, maxSegmentBytes: 100 });
    for (const file of stale) t.false(fs.existsSync(path.join(dir.dataDir, file)), `${file} was removed`);
    for (let i = 0; i < 20; i++) hopper.send(`new ${i}`);
    await diskSettled(hopper);
    const segments = fs.readdirSync(channelDir).filter((name) => name.endsWith('.avro') && name !== '000000009000.avro');
    t.true(
      segments.every((name) => Number(name.slice(0, 12)) > 9000),
      'new segments are numbered past every existing name',
    );
    const closing = hopper.close();
    t.deepEqual(
      await collect(hopper.readable),
      Array.from({ length: 20 }, (_, i) => `new ${i}`),
    );
    await closing;
    t.deepEqual(dir.files(), [path.join('shared', '000000009000.avro'), path.join('shared', 'notes.txt')]);
    t.is(sha256(path.join(channelDir, '000000009000.avro')), foreignHash);
    t.is(fs.readFileSync(path.join(channelDir, 'notes.txt'), 'utf8'), 'keep me');
  },
);

test('channel directory - segment-named files that are not ours are never overwritten', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'hopper');
  fs.mkdirSync(channelDir);
  fs.copyFileSync(fixture('foreign.avro'), path.join(channelDir, '000000000001.avro'));
  fs.copyFileSync(fixture('foreign.avro'), path.join(channelDir, '000000000002.avro'));
  const hashes = [sha256(path.join(channelDir, '000000000001.avro')), sha256(path.join(channelDir, '000000000002.avro'))];
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 500 });
  for (let i = 0; i < 100; i++) hopper.send(point(i));
  const closing = hopper.close();
  t.is((await collect(hopper.readable)).length, 100);
  await closing;
  t.deepEqual(dir.files(), [path.join('hopper', '000000000001.avro'), path.join('hopper', '000000000002.avro')]);
  t.deepEqual([sha256(path.join(channelDir, '000000000001.avro')), sha256(path.join(channelDir, '000000000002.avro'))], hashes);
});

test.serial('channel directory - a process that exits with a channel open leaves no files behind', async (t) => {
  const { child, info } = await startChild(t, 'exit', '-', 'hopper');
  // It may have exited already, while its line was being read.
  const code = child.exitCode ?? (await once(child, 'exit'))[0];
  t.is(code, 0);
  t.true(info.segments > 0);
  t.false(fs.existsSync(info.path));
  t.false(fs.existsSync(path.dirname(info.path)));
});

test('channel directory - a dataDir that is a file is refused at creation, and nothing is written', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const file = path.join(dir.dataDir, 'plain-file');
  fs.writeFileSync(file, 'x');
  const err = t.throws(() => createHopperStreams({ dataDir: file }), { instanceOf: HopperError });
  t.regex(err!.message, /is not a directory/);
  t.deepEqual(dir.files(), ['plain-file']);
});

test('channel directory - a missing dataDir is created, and the channel directory removed at close', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const dataDir = path.join(dir.dataDir, 'a', 'b');
  const hopper = createHopperStreams<string>({ dataDir, name: 'c' });
  t.true(fs.existsSync(path.join(dataDir, 'c', 'hopper.lock')));
  hopper.send('x');
  const closing = hopper.close();
  hopper.readable.resume();
  await closing;
  t.false(fs.existsSync(path.join(dataDir, 'c')));
  t.true(fs.existsSync(dataDir), 'the given dataDir itself is left in place');
});

test.serial('channel directory - without dataDir, a temp directory that cannot be made is an ERR_HOPPER_IO naming it, not a raw fs error', (t) => {
  const missing = path.join(tempDataDir().dataDir, 'gone');
  fs.rmdirSync(path.dirname(missing));
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = missing; // os.tmpdir() reads it on each call; serial tests run alone
  try {
    const err = t.throws(() => createHopperStreams(), { instanceOf: HopperError });
    t.is(err!.code, 'ERR_HOPPER_IO');
    t.is(err!.message.split(':')[0], `cannot create a temporary directory in ${missing} (no dataDir given)`);
    t.is((err!.cause as NodeJS.ErrnoException).code, 'ENOENT');
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  t.false(fs.existsSync(path.dirname(missing)));
});

test('channel directory - a dataDir that cannot be created is refused at creation with ERR_HOPPER_IO naming it', (t) => {
  // /proc refuses new directories even to root.
  const err = t.throws(() => createHopperStreams({ dataDir: '/proc/hopper-streams-test/data' }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_IO');
  t.regex(err!.message, /cannot create dataDir \/proc\/hopper-streams-test\/data/);
  t.false(fs.existsSync('/proc/hopper-streams-test'));
});

test("exit hook - a 'fault' listener that throws at exit does not keep any channel's lock or files; its exception is printed", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const child = spawnChild(t, process.execPath, ['--import', 'tsx/esm', exitFaultChild, dir.dataDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
  });
  await once(child, 'close');
  t.regex(stderr, /a fault listener that throws at exit \(remove\)/);
  // Both channels were released: every lock is gone; only the segment that could not be removed is left.
  const files = dir.files();
  t.deepEqual(
    files.filter((file) => !file.endsWith('.avro')),
    [],
  );
  t.true(files.length >= 1 && files.every((file) => file.startsWith(`first${path.sep}`)), files.join(', '));
});

for (const [tier, maxMemoryBytes] of [
  ['in memory', 1024 ** 2],
  ['on disk', 1_000],
] as const) {
  for (const withError of [true, false]) {
    test(`.writable.destroy(${withError ? 'err' : ''}) - ends the input: every record accepted is delivered ${tier}, then the readable fails with ERR_HOPPER_PRODUCER_FAILED`, async (t) => {
      const dir = tempDataDir();
      t.teardown(dir.remove);
      const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes, maxSegmentBytes: 2_000 });
      for (let i = 0; i < 300; i++) hopper.writable.write(point(i));
      if (tier === 'on disk') t.true(hopper.stats().diskRecords > 0, 'the backlog is on disk');
      else t.is(hopper.stats().memoryRecords, 300, 'the backlog is in memory');
      const failure = new Error('producer gave up');
      let writableErrors = 0;
      hopper.writable.on('error', () => writableErrors++);
      if (withError) hopper.writable.destroy(failure);
      else hopper.writable.destroy();
      await nextTurn();
      t.true(fs.existsSync(hopper.path), 'the backlog is kept');
      t.throws(() => hopper.send(point(300)), { code: 'ERR_STREAM_WRITE_AFTER_END' } as never);
      const { records, error } = await readToFailure(hopper.readable);
      t.deepEqual(
        records.map((p) => p.seq),
        Array.from({ length: 300 }, (_, i) => i),
      );
      t.true(HopperError.is(error, 'ERR_HOPPER_PRODUCER_FAILED'), String(error));
      t.is((error as Error).cause, withError ? failure : undefined);
      t.is(writableErrors, withError ? 1 : 0, "the writable's own error is its own");
      await t.throwsAsync(hopper.close(), { is: error as Error });
      t.deepEqual(dir.files(), []);
    });
  }
}

test('.writable.destroy(err) - with a sender still open, the readable fails only after the sender ends and its records too are delivered', async (t) => {
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 20 });
  const sender = hopper.sender();
  hopper.writable.write('a');
  sender.write('b');
  hopper.writable.on('error', () => {});
  hopper.writable.destroy(new Error('gone'));
  sender.write('c');
  sender.end();
  const { records, error } = await readToFailure(hopper.readable);
  t.deepEqual(records, ['a', 'b', 'c']);
  t.true(HopperError.is(error, 'ERR_HOPPER_PRODUCER_FAILED'));
});

test('.destroy(err) - the whole hopper still discards: destroying the hopper after its writable failed delivers nothing more', async (t) => {
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 20 });
  for (let i = 0; i < 10; i++) hopper.writable.write(`record ${i}`);
  hopper.writable.on('error', () => {});
  hopper.writable.destroy(new Error('source failed'));
  const failure = new Error('operator abort');
  hopper.destroy(failure);
  const { records, error } = await readToFailure(hopper.readable);
  t.deepEqual(records, []);
  t.is(error, failure);
  t.false(fs.existsSync(hopper.path));
});

const closeChildScript = fileURLToPath(new URL('helpers/close-child.ts', import.meta.url));

/** Runs helpers/close-child.ts to its exit: its exit code and stderr. */
async function runCloseChild(
  t: Parameters<typeof spawnChild>[0],
  mode: 'read' | 'nobody' | 'paused',
  dataDir: string,
): Promise<{ code: number | null; stderr: string }> {
  const child = spawnChild(t, process.execPath, ['--import', 'tsx/esm', closeChildScript, mode, dataDir, 'orders'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
  });
  const [code] = (await within(once(child, 'close'), 'the child exiting')) as [number | null];
  return { code, stderr };
}

test('.close() - pending at exit with records held and nothing reading: one warning names the hopper, the records held and the readable', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { code, stderr } = await runCloseChild(t, 'nobody', dir.dataDir);
  t.is(code, 13, 'an unsettled top-level await');
  const warnings = stderr.split('\n').filter((line) => line.includes('HopperWarning'));
  t.is(warnings.length, 1, stderr);
  t.regex(warnings[0]!, /hopper "orders"/);
  t.true(warnings[0]!.includes(path.join(dir.dataDir, 'orders')));
  t.regex(warnings[0]!, /50 records held/);
  t.regex(warnings[0]!, /nothing reading hopper\.readable/);
  t.deepEqual(dir.files(), [], 'the exit hook removed the files');
});

test('.close() - pending at exit with records pushed into a paused readable: they count as held in the warning', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { code, stderr } = await runCloseChild(t, 'paused', dir.dataDir);
  t.is(code, 13, 'an unsettled top-level await');
  const warnings = stderr.split('\n').filter((line) => line.includes('HopperWarning'));
  t.is(warnings.length, 1, stderr);
  t.regex(warnings[0]!, /40 records held/);
});

test('.close() - read to the end: no warning at exit', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { code, stderr } = await runCloseChild(t, 'read', dir.dataDir);
  t.is(code, 0);
  t.false(stderr.includes('HopperWarning'), stderr);
  t.deepEqual(dir.files(), []);
});

for (const onFull of ['block', 'error', 'drop-newest'] as const) {
  test(`hopper events - a 'full' listener that throws inside write() (onFull '${onFull}'): write() does not throw it, the record goes as onFull says, and the hopper is destroyed with the exception (the readable's 'error'), nothing left waiting`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 1_000, maxSegments: 1, onFull });
    const boom = new Error('a listener failed');
    let fulls = 0;
    hopper.on('full', () => {
      fulls++;
      throw boom;
    });
    hopper.writable.on('error', () => {});
    const failed = once(hopper.readable, 'error');
    const writableClosed = once(hopper.writable, 'close');
    let i = 0;
    // write() never throws the listener's exception into the producer's loop.
    while (fulls === 0 && i < 1_000) t.notThrows(() => hopper.writable.write(point(i++)));
    t.is(fulls, 1);
    if (onFull === 'drop-newest') t.is(hopper.stats().dropped, 1);
    const [err] = await failed;
    t.is(err, boom);
    // Nothing waits for ever: the writable is torn down with the hopper.
    await writableClosed;
    t.true(hopper.writable.destroyed);
  });
}

test("hopper events - a 'segment' listener that throws on a file operation's callback does not crash the process: the readable emits its exception", async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 1_000 });
  const boom = new Error('a segment listener failed');
  const actions: string[] = [];
  hopper.on('segment', (event) => {
    actions.push(event.action);
    // 'removed' is announced when a read segment's unlink ends on the thread pool.
    if (event.action === 'removed') throw boom;
  });
  for (let i = 0; i < 200; i++) hopper.send(point(i));
  const [err] = await once(hopper.readable.resume(), 'error');
  t.is(err, boom);
  t.true(actions.includes('removed'));
});
