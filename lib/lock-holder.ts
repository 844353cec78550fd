import fs from 'node:fs';
import path from 'node:path';
import { directoryError, notOursError } from './errors.js';
import { isAlive, processStartTime, thisThread, threadStartTime, type ThreadIdentity } from './proc.js';

// Who holds a lock, and whether that holder is alive: the owner file a claim holds (read without
// following a symlink or blocking on a FIFO), the verdict on its holder from /proc, and the words
// that name the holder in a refusal. lock-claim.ts takes and removes claims on these rules.
// See docs/locking.md for why liveness is judged from /proc and not from state held in memory.

/** The file in a lock (or guard) directory that names its holder; its mtime is the heartbeat. */
export const OWNER_FILE = 'owner.json';

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;

/** Who holds a lock: written once into its owner file, which the holder touches as a heartbeat. */
export interface LockHolder extends ThreadIdentity {
  /** Unique to one lock: a removal names the exact lock it may remove. */
  token: string;
  since: string;
}

interface SeenHolder extends LockHolder {
  /** mtime of the owner file: the holder's last sign of life. */
  heartbeat: number;
}

/** A lock's holder as read from its owner file, or 'unreadable' for a directory without a valid one. */
export type Seen = SeenHolder | 'unreadable';

/** The code of a system error (`ENOENT`...), if it has one. */
export function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Tokens of the claims that channels of *this thread* hold. It answers one question only: does a
 * lock that names this very thread belong to a channel here, or is it a leftover? Other threads
 * are judged from /proc, never from this set. It lives on `globalThis` (one per thread) so that
 * two copies of this package loaded in one thread see each other's locks.
 */
export const heldTokens = sharedInThisThread(Symbol.for('hopper-streams.lock.held-tokens'));

function sharedInThisThread(key: symbol): Set<string> {
  const global = globalThis as Record<symbol, Set<string> | undefined>;
  const existing = global[key];
  if (existing !== undefined) return existing;
  const created = new Set<string>();
  global[key] = created;
  return created;
}

/** What can be known of a holder from here: provably dead (and why), provably alive, or neither. */
type Verdict = { dead: string } | 'alive' | 'unknown';

/**
 * Judges a holder. Proof needs the same kernel (boot id) and pid namespace, so a pid means the
 * same process: it is dead when its process is gone or is another process (another start time),
 * or when the thread it names is gone or is another thread, or when it names this very thread and
 * no channel here holds it (a container's PID 1 restarted as PID 1). A lock without a thread (0.5.0)
 * naming this process may be any thread's: neither proved dead nor alive, it waits out the heartbeat.
 */
function judge(holder: LockHolder): Verdict {
  const me = thisThread();
  if (holder.bootId === undefined || holder.bootId !== me.bootId || holder.pidNamespace !== me.pidNamespace) return 'unknown';
  if (holder.pid === me.pid) {
    if (holder.startTime !== undefined && me.startTime !== undefined && holder.startTime !== me.startTime) {
      return { dead: `process ${holder.pid} is another process than the one that took the lock (start time ${me.startTime}, not ${holder.startTime})` };
    }
    if (holder.tid === undefined) return heldTokens.has(holder.token) ? 'alive' : 'unknown';
    if (holder.tid === me.tid) {
      if (holder.threadStartTime === me.threadStartTime)
        return heldTokens.has(holder.token) ? 'alive' : { dead: 'it names this thread, which does not hold it' };
      return { dead: `thread ${holder.tid} of this process is another thread than the one that took the lock` };
    }
  } else {
    if (!isAlive(holder.pid)) return { dead: `process ${holder.pid} is gone` };
    const startTime = processStartTime(holder.pid);
    if (startTime !== undefined && holder.startTime !== undefined && startTime !== holder.startTime) {
      return { dead: `process ${holder.pid} is another process than the one that took the lock (start time ${startTime}, not ${holder.startTime})` };
    }
    if (holder.tid === undefined) return 'alive';
  }
  // The holder's process is alive: the thread decides.
  const threadStart = threadStartTime(holder.pid, holder.tid);
  if (threadStart === 'gone') return { dead: `${threadName(holder)} of process ${holder.pid} has ended` };
  if (threadStart !== undefined && holder.threadStartTime !== undefined && threadStart !== holder.threadStartTime) {
    return { dead: `thread ${holder.tid} of process ${holder.pid} is another thread than the one that took the lock` };
  }
  return 'alive';
}

function threadName(holder: LockHolder): string {
  const osThread = holder.tid === undefined ? '' : ` (OS thread ${holder.tid})`;
  if (holder.threadId === undefined) return `thread ${holder.tid}`;
  return holder.threadId === 0 ? `the main thread${osThread}` : `worker thread ${holder.threadId}${osThread}`;
}

/**
 * Reads the owner of the lock (or guard) directory `dir`: undefined when there is none; 'unreadable'
 * for a directory without a valid owner file. Never follows a symlink and never blocks on a FIFO.
 */
export function readHolder(dir: string): Seen | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw directoryError(`cannot read the lock ${dir}`, err);
  }
  if (!stat.isDirectory()) throw notOursError(dir, stat.isSymbolicLink() ? 'is a symbolic link' : 'is not a directory');
  let fd: number;
  try {
    fd = fs.openSync(path.join(dir, OWNER_FILE), fs.constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' && !fs.existsSync(dir)) return undefined;
    return 'unreadable';
  }
  try {
    const ownerStat = fs.fstatSync(fd);
    if (!ownerStat.isFile() || ownerStat.size > 4096) return 'unreadable';
    const buffer = Buffer.alloc(ownerStat.size);
    const n = fs.readSync(fd, buffer, 0, buffer.length, 0);
    return parseHolder(buffer.toString('utf8', 0, n), ownerStat);
  } catch {
    return 'unreadable';
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * {@link readHolder} off the event loop (the channel's heartbeat, and the segment log before each
 * new segment, check the lock with it).
 */
export async function readHolderAsync(dir: string): Promise<Seen | undefined> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.lstat(dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw directoryError(`cannot read the lock ${dir}`, err);
  }
  if (!stat.isDirectory()) throw notOursError(dir, stat.isSymbolicLink() ? 'is a symbolic link' : 'is not a directory');
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(path.join(dir, OWNER_FILE), fs.constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') return 'unreadable';
    try {
      await fs.promises.lstat(dir);
      return 'unreadable';
    } catch {
      return undefined;
    }
  }
  try {
    const ownerStat = await handle.stat();
    if (!ownerStat.isFile() || ownerStat.size > 4096) return 'unreadable';
    const buffer = Buffer.alloc(ownerStat.size);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return parseHolder(buffer.toString('utf8', 0, bytesRead), ownerStat);
  } catch {
    return 'unreadable';
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** The holder an owner file names (throws on text that is not JSON). */
function parseHolder(text: string, ownerStat: fs.Stats): Seen {
  const holder = JSON.parse(text) as LockHolder;
  if (typeof holder.token !== 'string' || typeof holder.pid !== 'number' || typeof holder.hostname !== 'string') return 'unreadable';
  if (holder.tid !== undefined && !Number.isSafeInteger(holder.tid)) return 'unreadable';
  return { ...holder, heartbeat: ownerStat.mtimeMs };
}

/** True when the lock `dir` whose holder is `seen` may be taken over: its holder proved dead, or silent for `staleMs`. */
export function isStale(seen: Seen, dir: string, staleMs: number): boolean {
  if (seen === 'unreadable') {
    // A lock directory with no owner file is not one of ours being written (those are renamed
    // into place whole): a leftover, stale once it has been still for the window.
    try {
      return Date.now() - fs.lstatSync(dir).mtimeMs > staleMs;
    } catch {
      return false;
    }
  }
  const verdict = judge(seen);
  if (verdict === 'alive') return false;
  return verdict !== 'unknown' || Date.now() - seen.heartbeat > staleMs;
}

/** Names the holder of a lock, as seen from this thread. */
export function describeHolder(seen: Seen): string {
  if (seen === 'unreadable') return 'an unreadable lock';
  const me = thisThread();
  const sameProcess =
    seen.pid === me.pid &&
    seen.hostname === me.hostname &&
    seen.bootId === me.bootId &&
    seen.pidNamespace === me.pidNamespace &&
    seen.startTime === me.startTime;
  let who: string;
  if (sameProcess && heldTokens.has(seen.token)) who = `another channel of this thread (pid ${seen.pid} on ${seen.hostname})`;
  else if (sameProcess && seen.tid !== undefined) who = `${threadName(seen)} of this process (pid ${seen.pid} on ${seen.hostname})`;
  else if (sameProcess)
    who = `this process (pid ${seen.pid} on ${seen.hostname}) in a thread the lock does not name (a lock of hopper-streams 0.5.0, or from a system without /proc)`;
  else if (seen.threadId !== undefined && seen.threadId !== 0) who = `process ${seen.pid} on ${seen.hostname} (${threadName(seen)})`;
  else who = `process ${seen.pid} on ${seen.hostname}`;
  return `${who}, started ${seen.since}, last sign of life ${new Date(seen.heartbeat).toISOString()}`;
}

/** When a refused lock can be taken: never while its holder is proved alive; else once its heartbeat is older than the window. */
export function whenFree(seen: Seen, dir: string, staleMs: number): { text: string; retryAt?: number } {
  let lastSign: number;
  if (seen === 'unreadable') {
    try {
      lastSign = fs.lstatSync(dir).mtimeMs;
    } catch {
      return { text: 'it is being replaced' };
    }
  } else {
    const verdict = judge(seen);
    if (verdict === 'alive') return { text: 'its owner is alive, and a live owner keeps its lock until it closes the channel' };
    if (verdict !== 'unknown') return { text: `its owner is gone (${verdict.dead}) and the lock is being taken over` };
    lastSign = seen.heartbeat;
  }
  const at = lastSign + staleMs;
  const seconds = Math.max(0, Math.ceil((at - Date.now()) / 1000));
  return {
    text: `its owner cannot be proved dead from here, so the lock can be taken over in about ${seconds} s, at ${new Date(at).toISOString()}, if its owner stays silent (staleLockMs ${staleMs} ms after its last sign of life)`,
    retryAt: Math.ceil(at),
  };
}

/** Who holds a channel's lock, as `hopper-streams status` shows it: read-only, never takes or removes anything. */
export type LockStatus =
  | { state: 'free' }
  | { state: 'unreadable' }
  | {
      state: 'held';
      pid: number;
      hostname: string;
      since: string;
      /** The owner file's mtime: the holder's last sign of life (epoch ms). */
      heartbeat: number;
      /** 'alive' and 'dead' are proved from this host; 'unknown' waits for the heartbeat window. */
      verdict: 'alive' | 'dead' | 'unknown';
      why?: string | undefined;
    };

/** Reads and judges the lock `lockPath` (`<channel dir>/hopper.lock`) as an opener would, without touching it. */
export function lockStatus(lockPath: string): LockStatus {
  const seen = readHolder(lockPath);
  if (seen === undefined) return { state: 'free' };
  if (seen === 'unreadable') return { state: 'unreadable' };
  const verdict = judge(seen);
  return {
    state: 'held',
    pid: seen.pid,
    hostname: seen.hostname,
    since: seen.since,
    heartbeat: seen.heartbeat,
    verdict: typeof verdict === 'string' ? verdict : 'dead',
    why: typeof verdict === 'string' ? undefined : verdict.dead,
  };
}
