import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import test, { type ExecutionContext } from 'ava';
import { HopperError } from '../lib/errors.js';
import { Lock } from '../lib/lock.js';
import { processStartTime } from '../lib/proc.js';
import { END_WITH_PARENT, endChild } from './helpers/children.js';
import { tempDataDir } from './helpers/index.js';
import { osThreadId } from './helpers/threads.js';
import { within } from './helpers/wait.js';

// The lock protocol on its own (lib/lock.ts): who a lock names, when its holder is proved dead or
// alive, and what a refusal says. Real files, real threads and processes; serial, as each test
// watches /proc.

const linux = {
  hostname: os.hostname(),
  bootId: fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
  pidNamespace: fs.readlinkSync('/proc/self/ns/pid'),
};

function startTime(stat: string): string {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
}

function taskStartTime(pid: number, tid: number): string {
  return startTime(fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
}

/** A lock directory `<dir>/hopper.lock` as hopper-streams writes it, for `holder`, with its heartbeat at `heartbeat`. */
function forgeLock(dir: string, holder: Record<string, unknown>, heartbeat = new Date()): string {
  const lock = path.join(dir, 'hopper.lock');
  fs.mkdirSync(lock);
  const owner = path.join(lock, 'owner.json');
  fs.writeFileSync(owner, JSON.stringify({ token: crypto.randomBytes(12).toString('hex'), since: '2026-01-01T00:00:00.000Z', ...linux, ...holder }));
  fs.utimesSync(owner, heartbeat, heartbeat);
  return lock;
}

function refusal(t: ExecutionContext, take: () => unknown): HopperError {
  const err = t.throws(take, { instanceOf: HopperError })!;
  t.is(err.code, 'ERR_HOPPER_LOCKED');
  return err;
}

/** A plain worker thread that reports its kernel thread id and waits to be terminated. */
async function liveThread(t: ExecutionContext): Promise<{ worker: Worker; tid: number; threadStartTime: string }> {
  const worker = new Worker(
    `const { parentPort } = require('node:worker_threads');
     parentPort.postMessage(require('node:fs').readlinkSync('/proc/thread-self'));
     setInterval(() => {}, 1000);`,
    { eval: true },
  );
  t.teardown(async () => {
    await worker.terminate();
  });
  const [link] = (await once(worker, 'message')) as [string];
  const tid = Number(link.split('/')[2]);
  return { worker, tid, threadStartTime: taskStartTime(process.pid, tid) };
}

test.serial('Lock.take() - writes an owner file naming this process and thread; release() removes the lock', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const lock = Lock.take(path.join(dir.dataDir, 'hopper.lock'), 30_000);
  const owner = JSON.parse(fs.readFileSync(path.join(dir.dataDir, 'hopper.lock', 'owner.json'), 'utf8'));
  const tid = osThreadId();
  t.like(owner, { pid: process.pid, startTime: processStartTime(process.pid), tid, threadStartTime: taskStartTime(process.pid, tid), threadId: 0, ...linux });
  t.true(lock.held());
  lock.release();
  t.false(lock.held());
  t.deepEqual(dir.files(), []);
});

test.serial('Lock.take() - a second take in the same thread is refused, naming another channel of this thread', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const lockPath = path.join(dir.dataDir, 'hopper.lock');
  const lock = Lock.take(lockPath, 30_000);
  const err = refusal(t, () => Lock.take(lockPath, 30_000));
  t.regex(err.message, new RegExp(`locked by another channel of this thread \\(pid ${process.pid} on `));
  t.regex(err.message, /its owner is alive, and a live owner keeps its lock until it closes the channel/);
  t.is(err.retryAt, undefined, 'no time to retry at while the owner is alive');
  lock.release();
  t.deepEqual(dir.files(), []);
});

test.serial(
  'Lock.take() - a lock naming a live worker thread of this process is refused, naming it; once the worker is terminated it is taken over at once',
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const lockPath = path.join(dir.dataDir, 'hopper.lock');
    const { worker, tid, threadStartTime } = await liveThread(t);
    forgeLock(dir.dataDir, { pid: process.pid, startTime: processStartTime(process.pid), tid, threadStartTime, threadId: worker.threadId });
    const err = refusal(t, () => Lock.take(lockPath, 30_000));
    t.regex(err.message, new RegExp(`locked by worker thread ${worker.threadId} \\(OS thread ${tid}\\) of this process \\(pid ${process.pid} on `));
    t.regex(err.message, /its owner is alive/);
    await worker.terminate();
    t.false(fs.existsSync(`/proc/${process.pid}/task/${tid}`), 'Node ended the OS thread when terminate() resolved');
    const lock = Lock.take(lockPath, 30_000);
    t.is(JSON.parse(fs.readFileSync(path.join(lockPath, 'owner.json'), 'utf8')).tid, osThreadId());
    lock.release();
    t.deepEqual(dir.files(), []);
  },
);

test.serial('Lock.take() - a lock naming a thread id of this process that now is another thread (another start time) is taken over', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const { tid, threadStartTime } = await liveThread(t);
  forgeLock(dir.dataDir, {
    pid: process.pid,
    startTime: processStartTime(process.pid),
    tid,
    threadStartTime: String(Number(threadStartTime) - 1),
    threadId: 7,
  });
  const lock = Lock.take(path.join(dir.dataDir, 'hopper.lock'), 30_000);
  lock.release();
  t.deepEqual(dir.files(), []);
});

test.serial('Lock.take() - a lock naming a thread of another live process is refused while that thread runs, and taken over once it has ended', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  // A process whose worker reports its thread id, then ends when told; the process lives on.
  const child = spawn(
    process.execPath,
    [
      ...END_WITH_PARENT,
      '-e',
      `const { Worker } = require('node:worker_threads');
       const worker = new Worker("require('node:worker_threads').parentPort.postMessage(require('node:fs').readlinkSync('/proc/thread-self')); setInterval(() => {}, 1000);", { eval: true });
       worker.once('message', (link) => console.log(link + ' ' + worker.threadId));
       process.stdin.once('data', () => worker.terminate().then(() => console.log('ended')));
       setInterval(() => {}, 1000);`,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  t.teardown(() => endChild(child));
  const lines = child.stdout!.setEncoding('utf8');
  const [first] = (await within(once(lines, 'data'), 'the child reporting its worker')) as [string];
  const [link, threadId] = first.trim().split(' ') as [string, string];
  const tid = Number(link.split('/')[2]);
  forgeLock(dir.dataDir, {
    pid: child.pid,
    startTime: processStartTime(child.pid!),
    tid,
    threadStartTime: taskStartTime(child.pid!, tid),
    threadId: Number(threadId),
  });
  const lockPath = path.join(dir.dataDir, 'hopper.lock');
  const err = refusal(t, () => Lock.take(lockPath, 30_000));
  t.regex(err.message, new RegExp(`locked by process ${child.pid} on \\S+ \\(worker thread ${threadId} \\(OS thread ${tid}\\)\\)`));
  child.stdin!.write('end\n');
  const [ended] = (await within(once(lines, 'data'), 'the worker ending')) as [string];
  t.is(ended.trim(), 'ended');
  t.is(child.exitCode, null, 'the process is still running');
  const lock = Lock.take(lockPath, 30_000);
  lock.release();
  t.deepEqual(dir.files(), []);
});

test.serial(
  'Lock.take() - a lock of 0.5.0 (no thread named) naming this process is not taken over on a guess: refused, saying when, until silent past the window',
  (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const lockPath = path.join(dir.dataDir, 'hopper.lock');
    const heartbeat = new Date(Date.now() - 5_000);
    forgeLock(dir.dataDir, { pid: process.pid, startTime: processStartTime(process.pid) }, heartbeat);
    const err = refusal(t, () => Lock.take(lockPath, 60_000));
    t.regex(err.message, new RegExp(`locked by this process \\(pid ${process.pid} on \\S+\\) in a thread the lock does not name`));
    t.true(
      err.message.includes(`at ${new Date(fs.statSync(path.join(lockPath, 'owner.json')).mtimeMs + 60_000).toISOString()}, if its owner stays silent`),
      err.message,
    );
    // Silent for longer than the window: presumed dead.
    const lock = Lock.take(lockPath, 2_000);
    lock.release();
    t.deepEqual(dir.files(), []);
  },
);

test.serial(
  'Lock.take() - a lock of 0.5.0 (no thread named) is judged by its process as before: refused while it runs, taken over once it is gone',
  async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const lockPath = path.join(dir.dataDir, 'hopper.lock');
    const sleeper = spawn('sleep', ['60']);
    t.teardown(() => endChild(sleeper));
    forgeLock(dir.dataDir, { pid: sleeper.pid, startTime: processStartTime(sleeper.pid!) }, new Date(0));
    const err = refusal(t, () => Lock.take(lockPath, 1_000));
    t.regex(err.message, new RegExp(`locked by process ${sleeper.pid} on \\S+, started \\S+, last sign of life \\S+ \\(${lockPath}\\); its owner is alive`));
    const exited = once(sleeper, 'exit');
    sleeper.kill('SIGKILL');
    await exited;
    const lock = Lock.take(lockPath, 30_000);
    lock.release();
    t.deepEqual(dir.files(), []);
  },
);

test.serial('Lock.take() - a lock from a system without /proc naming this pid and another thread is not taken over on a guess', (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const lockPath = path.join(dir.dataDir, 'hopper.lock');
  // What a holder writes where there is no /proc: pid and hostname, no boot id, namespace or start times.
  const heartbeat = new Date();
  const owner = path.join(forgeLock(dir.dataDir, {}, heartbeat), 'owner.json');
  fs.writeFileSync(owner, JSON.stringify({ token: 'x'.repeat(24), pid: process.pid, hostname: os.hostname(), threadId: 3, since: heartbeat.toISOString() }));
  fs.utimesSync(owner, heartbeat, heartbeat);
  const err = refusal(t, () => Lock.take(lockPath, 60_000));
  t.regex(err.message, /its owner cannot be proved dead from here, so the lock can be taken over in about \d+ s/);
  t.is(typeof err.retryAt, 'number');
  t.true(fs.existsSync(owner), 'the lock is kept');
});

test.serial(
  'Lock.take() - a holder that cannot be proved dead (another pid namespace, as after a container restart): the refusal says when the lock can be taken over',
  (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const lockPath = path.join(dir.dataDir, 'hopper.lock');
    const heartbeat = new Date(Date.now() - 5_000);
    forgeLock(dir.dataDir, { pid: 1, pidNamespace: 'pid:[4026531999]', startTime: '42', tid: 1, threadStartTime: '42', threadId: 0 }, heartbeat);
    const err = refusal(t, () => Lock.take(lockPath, 60_000));
    const when = /the lock can be taken over in about (\d+) s, at (\S+), if its owner stays silent \(staleLockMs 60000 ms after its last sign of life\)$/.exec(
      err.message,
    );
    t.truthy(when, err.message);
    t.is(
      when![2],
      new Date(fs.statSync(path.join(lockPath, 'owner.json')).mtimeMs + 60_000).toISOString(),
      'the time is the last sign of life plus staleLockMs',
    );
    const seconds = Number(when![1]);
    t.true(seconds > 0 && seconds <= 60, `${seconds} s left of the 60 s window`);
    t.is(err.retryAt, Math.ceil(fs.statSync(path.join(lockPath, 'owner.json')).mtimeMs + 60_000), 'err.retryAt: the same instant, in epoch ms');
    t.regex(err.message, /locked by process 1 on \S+, started 2026-01-01T00:00:00.000Z, last sign of life /);
  },
);
