import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createHopperStreams, HopperError, type CorruptEvent, type SegmentEvent } from '../lib/index.js';
import { processStartTime } from '../lib/proc.js';
import { collect, diskSettled, nextTurn, point, pointSchema, tempDataDir, type Point } from './helpers/index.js';
import { END_WITH_PARENT } from './helpers/children.js';
import { mountSlowFs } from './helpers/fuse.js';
import { osThreadId, startWorker, workerMessage } from './helpers/threads.js';

// Ownership of a channel directory across processes and worker threads, and only our own files:
// real processes, real threads, real files. Serial, so several processes at once do not overload a
// small CI machine.

const childScript = fileURLToPath(new URL('helpers/owner-child.ts', import.meta.url));

/** Ends a child process whatever the outcome of the test. */
function endInTeardown(t: ExecutionContext, child: ChildProcess): void {
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
}

/** Waits for the next IPC message of `child` that `accept` takes. */
function message<T>(child: ChildProcess, accept: (m: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: T): void => {
      if (!accept(m)) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(m);
    };
    const onExit = (code: number | null): void => {
      child.off('message', onMessage);
      reject(new Error(`child ${child.pid} exited (${code}) before answering`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

async function raceChild(t: ExecutionContext, dataDir: string, name: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx/esm', childScript, 'race', dataDir, name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  endInTeardown(t, child);
  await message(child, (m: { ready?: boolean }) => m.ready === true);
  return child;
}

const linuxProcess = {
  bootId: fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
  pidNamespace: fs.readlinkSync('/proc/self/ns/pid'),
};

/** Writes a lock as hopper-streams would, for a holder that is not this process. */
function forgeLock(channelDir: string, holder: Record<string, unknown>, heartbeat?: Date): string {
  const lock = path.join(channelDir, 'hopper.lock');
  fs.mkdirSync(lock, { recursive: true });
  const owner = path.join(lock, 'owner.json');
  fs.writeFileSync(
    owner,
    JSON.stringify({ token: crypto.randomBytes(12).toString('hex'), hostname: os.hostname(), since: new Date(0).toISOString(), ...holder }),
  );
  if (heartbeat) fs.utimesSync(owner, heartbeat, heartbeat);
  return lock;
}

/** A pid that was alive a moment ago and is not any more. */
async function deadPid(): Promise<{ pid: number; startTime: string }> {
  const child = spawn('sleep', ['30']);
  const startTime = processStartTime(child.pid!)!;
  child.kill('SIGKILL');
  await once(child, 'exit');
  return { pid: child.pid!, startTime };
}

for (const k of [2, 8]) {
  test.serial(
    `createHopperStreams() - ${k} processes racing to open one channel: exactly one owner in each of 50 rounds, with and without a stale lock`,
    async (t) => {
      const dir = tempDataDir();
      t.teardown(dir.remove);
      const name = 'raced';
      const channelDir = path.join(dir.dataDir, name);
      const children = await Promise.all(Array.from({ length: k }, () => raceChild(t, dir.dataDir, name)));
      const dead = await deadPid();
      let lockedMessages = 0;
      for (const stale of [false, true]) {
        for (let round = 0; round < 50; round++) {
          if (stale) forgeLock(channelDir, { pid: dead.pid, startTime: dead.startTime, ...linuxProcess });
          const answers = await Promise.all(
            children.map((child) => {
              const answer = message<{ round: number; owner: boolean; collision?: boolean; code?: string; message?: string }>(child, (m) => m.round === round);
              child.send({ op: 'open', round });
              return answer;
            }),
          );
          const owners = answers.filter((answer) => answer.owner);
          const where = `${stale ? 'with' : 'without'} a stale lock, round ${round}`;
          t.is(owners.length, 1, `one owner ${where}: ${JSON.stringify(answers)}`);
          t.false(
            owners.some((answer) => answer.collision),
            `no second holder of the marker ${where}`,
          );
          for (const answer of answers.filter((a) => !a.owner)) {
            t.is(answer.code, 'ERR_HOPPER_LOCKED', `${where}: ${answer.message}`);
            if (/locked by process \d+ on \S+, started \S+, last sign of life \S+/.test(answer.message!)) lockedMessages++;
          }
          const holder = children[answers.indexOf(owners[0]!)]!;
          const released = message(holder, (m: { released?: boolean }) => m.released === true);
          holder.send({ op: 'release' });
          await released;
          // The holder's destroy() released the lock before it answered.
          t.false(fs.existsSync(path.join(channelDir, 'hopper.lock')), `the lock is gone after release, ${where}`);
        }
      }
      t.true(lockedMessages > 0, 'losers are told who holds the lock: pid, host, start and last sign of life');
      for (const child of children) {
        const exited = once(child, 'exit');
        child.send({ op: 'exit' });
        await exited;
      }
      t.deepEqual(dir.files(), [], 'no lock, draft, guard or marker is left behind');
    },
  );
}

test.serial('createHopperStreams() - a lock whose pid is alive but is another process (another start time) is taken over', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const other = spawn('sleep', ['60']);
  endInTeardown(t, other);
  const channelDir = path.join(dir.dataDir, 'reused');
  const startTime = processStartTime(other.pid!)!;
  // Control: the same pid with its real start time is a live owner.
  forgeLock(channelDir, { pid: other.pid, startTime, ...linuxProcess });
  const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'reused' }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_LOCKED');
  t.regex(err!.message, new RegExp(`locked by process ${other.pid} on `));
  fs.rmSync(path.join(channelDir, 'hopper.lock'), { recursive: true });
  forgeLock(channelDir, { pid: other.pid, startTime: String(Number(startTime) - 1), ...linuxProcess });
  const hopper = createHopperStreams({ dataDir: dir.dataDir, name: 'reused' });
  t.is(JSON.parse(fs.readFileSync(path.join(channelDir, 'hopper.lock', 'owner.json'), 'utf8')).pid, process.pid);
  hopper.destroy();
  t.deepEqual(dir.files(), []);
});

test.serial('createHopperStreams() - a lock naming this thread, which no channel here holds, is taken over (a PID 1 restarted as PID 1)', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'self');
  const tid = osThreadId();
  forgeLock(channelDir, {
    pid: process.pid,
    startTime: processStartTime(process.pid),
    tid,
    threadStartTime: fs.readFileSync(`/proc/${process.pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19],
    threadId: 0,
    ...linuxProcess,
  });
  const hopper = createHopperStreams({ dataDir: dir.dataDir, name: 'self' });
  // A channel that is open in this thread still holds it.
  const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'self' }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_LOCKED');
  t.regex(err!.message, /another channel of this thread/);
  t.regex(err!.message, /its owner is alive/);
  hopper.destroy();
  t.deepEqual(dir.files(), []);
});

test.serial('createHopperStreams() - a lock from another host is taken over once its heartbeat is older than staleLockMs, and not before', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'shared');
  const remote = { pid: 4242, hostname: 'another-host', bootId: 'another-boot', pidNamespace: 'pid:[1]', startTime: '777', since: '2026-01-01T00:00:00.000Z' };
  forgeLock(channelDir, remote, new Date(Date.now() - 5_000));
  const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'shared', staleLockMs: 60_000 }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_LOCKED');
  t.regex(err!.message, /locked by process 4242 on another-host, started 2026-01-01T00:00:00.000Z, last sign of life \d{4}-\d\d-\d\dT/);
  t.is(err!.file, path.join(channelDir, 'hopper.lock'));
  // The same lock, silent for longer than the window: its owner is presumed dead.
  const hopper = createHopperStreams({ dataDir: dir.dataDir, name: 'shared', staleLockMs: 2_000 });
  t.is(JSON.parse(fs.readFileSync(path.join(channelDir, 'hopper.lock', 'owner.json'), 'utf8')).pid, process.pid);
  hopper.destroy();
  t.deepEqual(dir.files(), []);
});

test.serial('.readable - an owner that finds its lock taken over (it stalled past the window) stops with ERR_HOPPER_LOCKED and stops writing', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'stalled', staleLockMs: 1_000, maxMemoryBytes: 0, maxSegmentBytes: 200 });
  for (let i = 0; i < 50; i++) hopper.send(`before ${i}`);
  await nextTurn();
  const channelDir = path.join(dir.dataDir, 'stalled');
  // What another host does once our heartbeat looks stale: the lock is moved away and replaced.
  fs.renameSync(path.join(channelDir, 'hopper.lock'), path.join(dir.dataDir, 'taken'));
  const theirs = forgeLock(channelDir, { pid: 4242, hostname: 'another-host', bootId: 'b', pidNamespace: 'p', startTime: '1' });
  const theirOwner = fs.readFileSync(path.join(theirs, 'owner.json'));
  // The heartbeat timer does not keep a process alive (unref): this test's process must stay up to see it.
  const keepAlive = setInterval(() => {}, 100);
  t.teardown(() => clearInterval(keepAlive));
  const [err] = (await once(hopper.readable, 'error')) as [HopperError];
  t.is(err.code, 'ERR_HOPPER_LOCKED');
  t.regex(err.message, /was taken over by another process/);
  t.throws(() => hopper.send('after'), { instanceOf: HopperError });
  t.deepEqual(fs.readFileSync(path.join(theirs, 'owner.json')), theirOwner, "the new owner's lock is left alone");
});

test.serial('createHopperStreams() - drafts, guards and moved-aside locks left by a killed contender are removed at open; a live one is kept', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'litter');
  const dead = await deadPid();
  const alive = spawn('sleep', ['60']);
  endInTeardown(t, alive);
  const leftover = (name: string, holder: Record<string, unknown>): void => {
    fs.mkdirSync(path.join(channelDir, name), { recursive: true });
    fs.writeFileSync(
      path.join(channelDir, name, 'owner.json'),
      JSON.stringify({ token: name, hostname: os.hostname(), since: 'x', ...linuxProcess, ...holder }),
    );
  };
  const deadHolder = { pid: dead.pid, startTime: dead.startTime };
  leftover('hopper.lock.aaaa.draft', deadHolder);
  leftover('hopper.lock.bbbb.remove', deadHolder);
  leftover('hopper.lock.cccc.stale', deadHolder);
  leftover('hopper.lock.dddd.draft', { pid: alive.pid, startTime: processStartTime(alive.pid!) });
  const hopper = createHopperStreams({ dataDir: dir.dataDir, name: 'litter' });
  t.deepEqual(fs.readdirSync(channelDir).sort(), ['hopper.lock', 'hopper.lock.dddd.draft']);
  hopper.destroy();
  t.deepEqual(dir.files(), [path.join('litter', 'hopper.lock.dddd.draft', 'owner.json')]);
});

test.serial('createHopperStreams() - a channel directory that is a symlink is refused, and nothing is written through it', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const outside = tempDataDir();
  t.teardown(outside.remove);
  fs.symlinkSync(outside.dataDir, path.join(dir.dataDir, 'linked'));
  const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'linked' }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_IO');
  t.regex(err!.message, /linked is a symbolic link/);
  t.deepEqual(outside.files(), []);
  t.true(fs.lstatSync(path.join(dir.dataDir, 'linked')).isSymbolicLink(), 'the symlink itself is kept');
});

test.serial('createHopperStreams() - a lock that is a symlink is refused, and what it points to is untouched', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const outside = tempDataDir();
  t.teardown(outside.remove);
  fs.writeFileSync(path.join(outside.dataDir, 'owner.json'), 'precious');
  const channelDir = path.join(dir.dataDir, 'hopper');
  fs.mkdirSync(channelDir);
  fs.symlinkSync(outside.dataDir, path.join(channelDir, 'hopper.lock'));
  const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir }), { instanceOf: HopperError });
  t.regex(err!.message, /hopper\.lock is a symbolic link/);
  t.deepEqual(outside.files(), ['owner.json']);
  t.is(fs.readFileSync(path.join(outside.dataDir, 'owner.json'), 'utf8'), 'precious');
  t.deepEqual(fs.readdirSync(channelDir), ['hopper.lock'], 'no draft is left behind');
});

test.serial('createHopperStreams() - a symlink named like a segment, pointing into another channel, is neither followed nor removed', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  // Another channel's real segment, still to be read.
  const other = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'other', maxMemoryBytes: 0 });
  for (let i = 0; i < 10; i++) other.send(`other ${i}`);
  await nextTurn();
  const target = path.join(dir.dataDir, 'other', '000000000001.avro');
  const channelDir = path.join(dir.dataDir, 'mine');
  fs.mkdirSync(channelDir);
  fs.symlinkSync(target, path.join(channelDir, '000000000001.avro'));
  const mine = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'mine', maxMemoryBytes: 0 });
  for (let i = 0; i < 10; i++) mine.send(`mine ${i}`);
  const closing = mine.close();
  t.deepEqual(
    await collect(mine.readable),
    Array.from({ length: 10 }, (_, i) => `mine ${i}`),
  );
  await closing;
  t.true(fs.lstatSync(path.join(channelDir, '000000000001.avro')).isSymbolicLink(), 'the foreign symlink is kept');
  const closingOther = other.close();
  t.deepEqual(
    await collect(other.readable),
    Array.from({ length: 10 }, (_, i) => `other ${i}`),
    'the other channel still reads its segment',
  );
  await closingOther;
});

test.serial('createHopperStreams() - a FIFO named like a segment is a foreign file at open: no hang, kept', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const channelDir = path.join(dir.dataDir, 'hopper');
  fs.mkdirSync(channelDir);
  execFileSync('mkfifo', [path.join(channelDir, '000000000001.avro')]);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, maxMemoryBytes: 0 });
  for (let i = 0; i < 10; i++) hopper.send(`r ${i}`);
  const closing = hopper.close();
  t.deepEqual(
    await collect(hopper.readable),
    Array.from({ length: 10 }, (_, i) => `r ${i}`),
  );
  await closing;
  t.true(fs.lstatSync(path.join(channelDir, '000000000001.avro')).isFIFO());
});

for (const onCorrupt of ['error', 'skip'] as const) {
  test.serial(`.readable - a FIFO that replaced a waiting segment is a corrupt segment (onCorrupt '${onCorrupt}'): no hang, and it is kept`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<Point>({ dataDir: dir.dataDir, schema: pointSchema, maxMemoryBytes: 0, maxSegmentBytes: 2_000, onCorrupt });
    const sealed: SegmentEvent[] = [];
    hopper.on('segment', (event) => event.action === 'sealed' && sealed.push(event));
    for (let i = 0; i < 300; i++) hopper.send(point(i));
    await diskSettled(hopper);
    const first = sealed[0]!;
    fs.unlinkSync(first.file);
    execFileSync('mkfifo', [first.file]);
    if (onCorrupt === 'error') {
      const [err] = (await once(hopper.readable.resume(), 'error')) as [HopperError];
      t.is(err.code, 'ERR_HOPPER_CORRUPT_SEGMENT');
      t.is(err.file, first.file);
      t.is(err.offset, 0);
      t.regex(err.message, /replaced by a symbolic link or a special file|not a regular file/);
    } else {
      const events: CorruptEvent[] = [];
      hopper.on('corrupt', (event) => events.push(event));
      hopper.writable.end();
      const out = (await collect<Point>(hopper.readable)).map((record) => record.seq);
      t.is(events.length, 1);
      t.like(events[0], { file: first.file, offset: 0, count: first.records });
      t.is(hopper.stats().corrupted, first.records);
      t.deepEqual(
        out,
        Array.from({ length: 300 - first.records }, (_, i) => first.records + i),
      );
    }
    await nextTurn();
    t.true(fs.lstatSync(first.file).isFIFO(), 'the FIFO is not removed');
  });
}

test.serial('.destroy() - a channel directory swapped for a symlink while the channel runs: detected, and nothing outside is removed', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'swapped', maxMemoryBytes: 0, maxSegmentBytes: 200 });
  for (let i = 0; i < 200; i++) hopper.send(`record ${i}`);
  await diskSettled(hopper);
  const channelDir = path.join(dir.dataDir, 'swapped');
  const ours = fs.readdirSync(channelDir).filter((name) => name.endsWith('.avro'));
  t.true(ours.length > 3);
  // Someone moves the directory away and points its name at a directory of their own files.
  const victim = path.join(dir.dataDir, 'victim');
  fs.mkdirSync(victim);
  for (const name of ours) fs.writeFileSync(path.join(victim, name), `user file ${name}`);
  fs.writeFileSync(path.join(victim, 'hopper.lock'), 'user file');
  fs.renameSync(channelDir, path.join(dir.dataDir, 'moved'));
  fs.symlinkSync(victim, channelDir);
  const [err] = (await once(hopper.readable.resume(), 'error')) as [HopperError];
  t.is(err.code, 'ERR_HOPPER_LOCKED');
  t.regex(err.message, /was replaced while the channel ran/);
  hopper.destroy();
  for (const name of ours) t.is(fs.readFileSync(path.join(victim, name), 'utf8'), `user file ${name}`);
  t.is(fs.readFileSync(path.join(victim, 'hopper.lock'), 'utf8'), 'user file');
});

for (const killAt of ['random', 'after-create', 'after-link'] as const) {
  const when =
    killAt === 'random'
      ? 'at a random moment'
      : killAt === 'after-create'
        ? 'right after creating a segment file, before its header'
        : 'right after a segment is linked into place';
  test.serial(`createHopperStreams() - after kill -9 of a spilling writer ${when}, a reopen removes its leftovers and delivers a fresh run`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    for (let run = 0; run < (killAt === 'random' ? 3 : 1); run++) {
      const child = spawn(process.execPath, ['--import', 'tsx/esm', childScript, 'spill', dir.dataDir, 'crashed', killAt], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      endInTeardown(t, child);
      const exited = once(child, 'exit');
      if (killAt === 'random') {
        for await (const chunk of child.stdout!) if (String(chunk).includes('spilling')) break;
        setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 100));
      } else {
        child.stdout!.resume();
      }
      const [, signal] = await exited;
      t.is(signal, 'SIGKILL');
      const channelDir = path.join(dir.dataDir, 'crashed');
      const left = fs.readdirSync(channelDir);
      t.true(left.includes('hopper.lock'), 'the dead writer left its lock');
      fs.writeFileSync(path.join(channelDir, 'notes.txt'), 'foreign');

      const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'crashed', maxMemoryBytes: 0, maxSegmentBytes: 500 });
      t.deepEqual(fs.readdirSync(channelDir).sort(), ['hopper.lock', 'notes.txt'], `leftovers removed (was: ${left.join(', ')})`);
      t.deepEqual(fs.readdirSync(path.join(channelDir, 'hopper.lock')), ['owner.json'], 'no draft of the dead writer is left');
      for (let i = 0; i < 300; i++) hopper.send(`fresh ${i}`);
      const closing = hopper.close();
      t.deepEqual(
        await collect(hopper.readable),
        Array.from({ length: 300 }, (_, i) => `fresh ${i}`),
      );
      await closing;
      t.deepEqual(dir.files(), [path.join('crashed', 'notes.txt')]);
      fs.unlinkSync(path.join(channelDir, 'notes.txt'));
    }
  });
}

test.serial(
  'createHopperStreams() - a failed open on a full disk (a real 8 MiB tmpfs) leaves nothing behind; a full disk while spilling loses nothing accepted',
  async (t) => {
    if (process.getuid?.() !== 0) {
      t.log('NOT CHECKED: not running as root, so no tmpfs can be mounted');
      t.pass();
      return;
    }
    const mountPoint = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-tmpfs-'));
    t.teardown(() => fs.rmSync(mountPoint, { recursive: true, force: true }));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mountPoint], { stdio: 'ignore' });
    } catch {
      t.log('NOT CHECKED: mount -t tmpfs is not allowed here');
      t.pass();
      return;
    }
    t.teardown(() => execFileSync('umount', [mountPoint]));
    const filler = path.join(mountPoint, 'filler');
    const fd = fs.openSync(filler, 'w');
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(64 * 1024));
    } catch (err) {
      t.is((err as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      fs.closeSync(fd);
    }
    const dataDir = path.join(mountPoint, 'data', 'deep');
    const err = t.throws(() => createHopperStreams({ dataDir, name: 'full' }), { instanceOf: HopperError });
    t.is(err!.code, 'ERR_HOPPER_IO');
    t.regex(err!.message, /ENOSPC/);
    t.deepEqual(fs.readdirSync(mountPoint), ['filler'], 'no dataDir, channel directory or lock draft left behind');

    // Room for the lock and a few segments only.
    fs.truncateSync(filler, 8 * 1024 * 1024 - 256 * 1024);
    const hopper = createHopperStreams<string>({ dataDir, name: 'full', maxMemoryBytes: 0, onFull: 'error' });
    const accepted: string[] = [];
    let refused: HopperError | undefined;
    for (let i = 0; refused === undefined && i < 100_000; i++) {
      const record = `record ${i} ${'y'.repeat(1_000)}`;
      try {
        hopper.send(record);
        accepted.push(record);
      } catch (e) {
        refused = e as HopperError;
      }
      if (i % 50 === 49) await nextTurn();
    }
    t.is(refused?.code, 'ERR_HOPPER_IO');
    t.is((refused?.cause as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC');
    const closing = hopper.close();
    const out = await collect<string>(hopper.readable);
    await closing;
    t.is(out.length, accepted.length);
    t.true(
      out.every((record, i) => record === accepted[i]),
      'every accepted record arrives, in order',
    );
    t.deepEqual(fs.readdirSync(mountPoint).sort(), ['data', 'filler']);
    const left = fs.readdirSync(dataDir, { recursive: true });
    t.deepEqual(left, [], `left in dataDir: ${left.join(', ')}`);
  },
);

// Worker threads: one channel, one owner, across threads as across processes.

const threadChild = new URL('helpers/thread-child.ts', import.meta.url);

interface Ready {
  ready: true;
  tid: number;
  threadId: number;
}

interface OpenAnswer {
  round?: number;
  owner: boolean;
  collision?: boolean;
  code?: string;
  message?: string;
}

/** Starts a worker of thread-child.ts and waits until it is set up. */
async function threadWorker(t: ExecutionContext, data: Record<string, unknown>): Promise<{ worker: import('node:worker_threads').Worker; ready: Ready }> {
  const worker = startWorker(t, threadChild, data);
  const ready = await workerMessage<Ready>(worker, (m) => m.ready === true);
  return { worker, ready };
}

/** Name, inode, size and bytes of every file under `dir`, to prove that none was touched. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (current: string): void => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) walk(full);
      else {
        const stat = fs.statSync(full);
        const bytes = entry.name === 'owner.json' ? '' : crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex');
        out.push(`${path.relative(dir, full)} ${stat.ino} ${stat.size} ${bytes}`);
      }
    }
  };
  walk(dir);
  return out.sort();
}

/** A thread id of this process that was alive a moment ago and is not any more. */
async function deadThread(t: ExecutionContext): Promise<{ tid: number; threadStartTime: string }> {
  const { worker, ready } = await threadWorker(t, { mode: 'open', dataDir: os.tmpdir(), name: 'unused' });
  const stat = fs.readFileSync(`/proc/${process.pid}/task/${ready.tid}/stat`, 'utf8');
  await worker.terminate();
  t.false(fs.existsSync(`/proc/${process.pid}/task/${ready.tid}`), "a terminated worker's OS thread is gone once terminate() resolves");
  return { tid: ready.tid, threadStartTime: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]! };
}

for (const k of [2, 8]) {
  test.serial(
    `createHopperStreams() - ${k} worker threads racing to open one channel: exactly one owner in each of 50 rounds, with and without a dead thread's lock`,
    async (t) => {
      const dir = tempDataDir();
      t.teardown(dir.remove);
      const name = 'raced';
      const channelDir = path.join(dir.dataDir, name);
      const workers = (await Promise.all(Array.from({ length: k }, () => threadWorker(t, { mode: 'race', dataDir: dir.dataDir, name })))).map((w) => w.worker);
      const dead = await deadThread(t);
      let namedThread = 0;
      for (const stale of [false, true]) {
        for (let round = 0; round < 50; round++) {
          if (stale) {
            forgeLock(channelDir, { pid: process.pid, startTime: processStartTime(process.pid), ...dead, threadId: 999, ...linuxProcess });
          }
          const answers = await Promise.all(
            workers.map((worker) => {
              const answer = workerMessage<OpenAnswer>(worker, (m) => m.round === round);
              worker.postMessage({ op: 'open', round });
              return answer;
            }),
          );
          const owners = answers.filter((answer) => answer.owner);
          const where = `${stale ? "with a dead thread's" : 'without a'} lock, round ${round}`;
          t.is(owners.length, 1, `one owner ${where}: ${JSON.stringify(answers)}`);
          t.false(
            owners.some((answer) => answer.collision),
            `no second holder of the marker ${where}`,
          );
          for (const answer of answers.filter((a) => !a.owner)) {
            t.is(answer.code, 'ERR_HOPPER_LOCKED', `${where}: ${answer.message}`);
            if (/locked by worker thread \d+ \(OS thread \d+\) of this process/.test(answer.message!)) namedThread++;
          }
          const holder = workers[answers.indexOf(owners[0]!)]!;
          const released = workerMessage(holder, (m: { released?: boolean }) => m.released === true);
          holder.postMessage({ op: 'release' });
          await released;
          t.false(fs.existsSync(path.join(channelDir, 'hopper.lock')), `the lock is gone after release, ${where}`);
        }
      }
      t.true(namedThread > 0, 'losers are told which thread holds the lock');
      t.deepEqual(dir.files(), [], 'no lock, draft, guard or marker is left behind');
    },
  );
}

test.serial(
  "createHopperStreams() - a live worker's channel opened from the main thread and from another worker: ERR_HOPPER_LOCKED naming the worker, its files untouched, its records all delivered",
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const channelDir = path.join(dir.dataDir, 'c');
    const { worker: owner, ready } = await threadWorker(t, { mode: 'hold', dataDir: dir.dataDir, name: 'c', count: 1_000 });
    const written = await workerMessage<{ written: true; segments: number }>(owner, (m) => m.written === true);
    t.true(written.segments > 1, 'the records went to several segment files');
    const before = snapshot(channelDir);
    const names = new RegExp(`locked by worker thread ${ready.threadId} \\(OS thread ${ready.tid}\\) of this process \\(pid ${process.pid} on `);

    const err = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, name: 'c' }), { instanceOf: HopperError });
    t.is(err?.code, 'ERR_HOPPER_LOCKED');
    t.regex(err?.message ?? '', names);
    t.regex(err?.message ?? '', /its owner is alive/);

    const { worker: other } = await threadWorker(t, { mode: 'open', dataDir: dir.dataDir, name: 'c' });
    const answer = workerMessage<OpenAnswer>(other);
    other.postMessage({ op: 'open' });
    const fromWorker = await answer;
    t.false(fromWorker.owner);
    t.is(fromWorker.code, 'ERR_HOPPER_LOCKED');
    t.regex(fromWorker.message ?? '', names);

    t.deepEqual(snapshot(channelDir), before, "the worker's lock and segment files are untouched");
    const drained = workerMessage<{ records: string[]; failure?: string }>(owner, (m) => 'records' in m);
    owner.postMessage({ op: 'drain' });
    const { records, failure } = await drained;
    t.is(failure, undefined, 'the owner never lost its lock');
    t.deepEqual(
      records,
      Array.from({ length: 1_000 }, (_, i) => `record ${i}`),
    );
    t.deepEqual(dir.files(), []);
  },
);

test.serial(
  'createHopperStreams() - a worker terminated mid-spill leaves its lock naming an ended thread: an open from the main thread takes over at once and removes its leftovers',
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const channelDir = path.join(dir.dataDir, 'spilled');
    for (let run = 0; run < 3; run++) {
      const { worker, ready } = await threadWorker(t, { mode: 'spill', dataDir: dir.dataDir, name: 'spilled' });
      await workerMessage(worker, (m: { spilling?: boolean }) => m.spilling === true);
      await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 50)));
      await worker.terminate();
      t.false(fs.existsSync(`/proc/${process.pid}/task/${ready.tid}`), "the worker's OS thread is gone");
      const lock = JSON.parse(fs.readFileSync(path.join(channelDir, 'hopper.lock', 'owner.json'), 'utf8')) as { tid: number };
      t.is(lock.tid, ready.tid, 'terminate() ran no exit hook: the lock still names the worker');
      t.true(
        fs.readdirSync(channelDir).some((file) => file.endsWith('.avro')),
        'it left segment files',
      );
      fs.writeFileSync(path.join(channelDir, 'notes.txt'), 'foreign');

      // The default staleLockMs (30 s) has not passed: the takeover is on proof, not on silence.
      const hopper = createHopperStreams<string>({ dataDir: dir.dataDir, name: 'spilled', maxMemoryBytes: 0, maxSegmentBytes: 500 });
      t.deepEqual(fs.readdirSync(channelDir).sort(), ['hopper.lock', 'notes.txt']);
      t.deepEqual(fs.readdirSync(path.join(channelDir, 'hopper.lock')), ['owner.json']);
      for (let i = 0; i < 300; i++) hopper.send(`fresh ${i}`);
      const closing = hopper.close();
      t.deepEqual(
        await collect(hopper.readable),
        Array.from({ length: 300 }, (_, i) => `fresh ${i}`),
      );
      await closing;
      t.deepEqual(dir.files(), [path.join('spilled', 'notes.txt')]);
      fs.unlinkSync(path.join(channelDir, 'notes.txt'));
    }
  },
);

test.serial(
  ".send() - records produced in several workers and posted to one hopper in the main thread: every record once, in each worker's order",
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<{ worker: number; seq: number }>({ dataDir: dir.dataDir, maxMemoryBytes: 20_000, maxSegmentBytes: 5_000 });
    const workers = 4;
    const count = 5_000;
    await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const worker = startWorker(t, threadChild, { mode: 'produce', dataDir: dir.dataDir, name: 'unused', count, worker: w });
        return new Promise<void>((resolve, reject) => {
          worker.on('message', (m: { records?: Array<{ worker: number; seq: number }>; done?: boolean }) => {
            for (const record of m.records ?? []) hopper.send(record);
            if (m.done) resolve();
          });
          worker.once('error', reject);
        });
      }),
    );
    // Read once every worker is done: the records have filled memory and spilled to disk.
    t.true(hopper.stats().spilled > 0, 'some records went through the disk tier');
    const closing = hopper.close();
    const out = await collect<{ worker: number; seq: number }>(hopper.readable);
    await closing;
    t.is(out.length, workers * count);
    for (let w = 0; w < workers; w++) {
      const seqs = out.filter((record) => record.worker === w).map((record) => record.seq);
      t.deepEqual(
        seqs,
        Array.from({ length: count }, (_, i) => i),
        `worker ${w}: every record once, in order`,
      );
    }
    t.deepEqual(dir.files(), []);
  },
);

test.serial(
  'createHopperStreams() - open/close churn of 8 processes while the channel directory is removed under them whenever it is empty: a contended open fails only with ERR_HOPPER_LOCKED',
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const name = 'churned';
    const children = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const child = spawn(process.execPath, ['--import', 'tsx/esm', childScript, 'churn', dir.dataDir, name], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        endInTeardown(t, child);
        await message(child, (m: { ready?: boolean }) => m.ready === true);
        return child;
      }),
    );
    // What an owner that made the channel directory does when it closes: removes it if it is empty.
    // Here every tenth of a millisecond, so that opens meet the directory gone between their mkdir
    // and their lock far more often than the processes' own closes make them do.
    const flicker = spawn(process.execPath, [...END_WITH_PARENT, '-e', FLICKER, path.join(dir.dataDir, name)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    endInTeardown(t, flicker);
    await message(flicker, (m: { ready?: boolean }) => m.ready === true);
    const results = await Promise.all(
      children.map((child) => {
        const result = message<{ opens: number; collisions: number; refusals: Record<string, number>; others: string[] }>(child, (m) => 'opens' in m);
        child.send({ op: 'go', rounds: 200 });
        return result;
      }),
    );
    const flickered = message<{ removed: number }>(flicker);
    flicker.send('stop');
    const { removed } = await flickered;
    const opens = results.reduce((sum, r) => sum + r.opens, 0);
    const locked = results.reduce((sum, r) => sum + (r.refusals.ERR_HOPPER_LOCKED ?? 0), 0);
    t.log(`${opens} opens, ${locked} refusals, the channel directory removed ${removed} times under them`);
    t.true(opens > 0 && locked > 0, 'the opens were contended');
    t.deepEqual(
      results.flatMap((r) => r.others),
      [],
      'no refusal other than ERR_HOPPER_LOCKED',
    );
    t.is(
      results.reduce((sum, r) => sum + r.collisions, 0),
      0,
      'never two owners at once',
    );
    for (const child of children) {
      const exited = once(child, 'exit');
      child.send({ op: 'exit' });
      await exited;
    }
    t.deepEqual(dir.files(), [], 'no lock, draft, guard or marker is left behind');
  },
);

const FLICKER = `
const fs = require('node:fs');
const dir = process.argv[1];
const pause = new Int32Array(new SharedArrayBuffer(4));
let removed = 0;
let stop = false;
process.on('message', () => { stop = true; });
const loop = () => {
  for (let i = 0; i < 100; i++) {
    try { fs.rmdirSync(dir); removed++; } catch {}
    Atomics.wait(pause, 0, 0, 0.1);
  }
  if (stop) process.send({ removed }, () => process.exit(0));
  else setImmediate(loop);
};
process.send({ ready: true });
loop();
`;

test('createHopperStreams() - a dataDir on FUSE is refused at open with ERR_HOPPER_IO that says why, and nothing is left in it', async (t) => {
  const mounted = await mountSlowFs(t, 0);
  if ('notChecked' in mounted) {
    t.log(`NOT CHECKED: ${mounted.notChecked}`);
    t.pass();
    return;
  }
  const dataDir = path.join(mounted.mountPoint, 'spool', 'deep');
  const err = t.throws(() => createHopperStreams({ dataDir, name: 'c' }), { instanceOf: HopperError });
  t.is(err!.code, 'ERR_HOPPER_IO');
  t.regex(err!.message, /FUSE/);
  t.regex(err!.message, /spool/);
  t.deepEqual(fs.readdirSync(mounted.mountPoint), [], 'the dataDir it made is removed again');
  // An existing dataDir on FUSE is refused too, and kept.
  fs.mkdirSync(path.join(mounted.mountPoint, 'existing'));
  const again = t.throws(() => createHopperStreams({ dataDir: path.join(mounted.mountPoint, 'existing'), name: 'c' }), { instanceOf: HopperError });
  t.is(again!.code, 'ERR_HOPPER_IO');
  t.deepEqual(fs.readdirSync(path.join(mounted.mountPoint, 'existing')), []);
});
