import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HopperError, directoryError, lockedError, notOursError } from './errors.js';
import { isAlive, processStartTime, thisThread, threadStartTime, type ThreadIdentity } from './proc.js';

// The lock protocol of a channel directory: who holds it (an owner file naming a process and a
// thread), whether that holder is alive, the heartbeat, and the one-winner takeover of a stale lock.
// It knows nothing of segments or streams; directory.ts takes the lock for a channel directory.
// See docs/locking.md for why liveness is judged from /proc and not from state held in memory.

const OWNER_FILE = 'owner.json';
/** Where the segment log prepares a segment's header before linking it into place (see segments/writer.ts). */
export const SEGMENT_DRAFT = 'segment.draft';
/**
 * The draft of a segment created synchronously while another is being created in the background
 * (the segment log's last resort when the disk falls behind, see segments/writer.ts).
 */
export const SEGMENT_DRAFT_SYNC = 'segment.draft-sync';
/** The draft of a durable channel's ledger file, renamed into the channel directory once written. */
export const LEDGER_DRAFT = 'ledger.draft';
/** Lock, guard and draft directories take this many steps of guards on guards before giving up. */
const MAX_GUARD_DEPTH = 3;
/** A claim meets a lock being taken over or released this many times before it reports it as held. */
const CLAIM_ATTEMPTS = 8;

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

type Seen = SeenHolder | 'unreadable';

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * Tokens of the claims that channels of *this thread* hold. It answers one question only: does a
 * lock that names this very thread belong to a channel here, or is it a leftover? Other threads
 * are judged from /proc, never from this set. It lives on `globalThis` (one per thread) so that
 * two copies of this package loaded in one thread see each other's locks.
 */
const heldTokens = sharedInThisThread(Symbol.for('hopper-streams.lock.held-tokens'));

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
function readHolder(dir: string): Seen | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(dir);
  } catch (err) {
    if (code(err) === 'ENOENT') return undefined;
    throw directoryError(`cannot read the lock ${dir}`, err);
  }
  if (!stat.isDirectory()) throw notOursError(dir, stat.isSymbolicLink() ? 'is a symbolic link' : 'is not a directory');
  let fd: number;
  try {
    fd = fs.openSync(path.join(dir, OWNER_FILE), fs.constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (code(err) === 'ENOENT' && !fs.existsSync(dir)) return undefined;
    return 'unreadable';
  }
  try {
    const ownerStat = fs.fstatSync(fd);
    if (!ownerStat.isFile() || ownerStat.size > 4096) return 'unreadable';
    const buffer = Buffer.alloc(ownerStat.size);
    const n = fs.readSync(fd, buffer, 0, buffer.length, 0);
    const holder = JSON.parse(buffer.toString('utf8', 0, n)) as LockHolder;
    if (typeof holder.token !== 'string' || typeof holder.pid !== 'number' || typeof holder.hostname !== 'string') return 'unreadable';
    if (holder.tid !== undefined && !Number.isSafeInteger(holder.tid)) return 'unreadable';
    return { ...holder, heartbeat: ownerStat.mtimeMs };
  } catch {
    return 'unreadable';
  } finally {
    fs.closeSync(fd);
  }
}

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Removes a lock directory this package made: its owner file and segment drafts, nothing else. */
function removeLockDir(dir: string): void {
  for (const name of [OWNER_FILE, SEGMENT_DRAFT, SEGMENT_DRAFT_SYNC, LEDGER_DRAFT]) {
    try {
      fs.unlinkSync(path.join(dir, name));
    } catch {
      // Not there.
    }
  }
  try {
    fs.rmdirSync(dir);
  } catch {
    // Holds something we did not put there: kept.
  }
}

/**
 * An exclusive claim on a directory name (the channel lock, or a guard on removing one).
 *
 * A claim is a directory holding an owner file, prepared under a draft name and renamed into
 * place: rename(2) of a directory fails when the target is a non-empty directory, so exactly one
 * contender's rename succeeds, and a lock is never seen half-written. A lock is removed only under
 * a guard named after its unique token (`<lock>.<token>.remove`, itself a claim): the guard holder
 * re-reads the lock, and moves it away only if it is still that very lock and still stale (or its
 * own, at release). So no one ever removes a lock it did not prove stale at that instant, and
 * no one can slip a fresh lock in between the check and the move (the old lock is still in place).
 */
class Claim {
  private constructor(
    readonly dir: string,
    readonly holder: LockHolder,
  ) {}

  /** Takes `dir`, taking over a stale claim; throws `ERR_HOPPER_LOCKED` naming the holder. */
  static take(dir: string, staleMs: number, depth = 0): Claim {
    const holder: LockHolder = { ...thisThread(), token: crypto.randomBytes(12).toString('hex'), since: new Date().toISOString() };
    const draft = `${dir}.${holder.token}.draft`;
    try {
      fs.mkdirSync(draft);
    } catch (err) {
      throw directoryError(`cannot write in the channel directory ${path.dirname(dir)}`, err);
    }
    try {
      const fd = fs.openSync(path.join(draft, OWNER_FILE), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW, 0o644);
      try {
        fs.writeFileSync(fd, JSON.stringify(holder));
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      removeLockDir(draft);
      throw directoryError(`cannot write in the channel directory ${path.dirname(dir)}`, err);
    }
    heldTokens.add(holder.token);
    try {
      let seen: Seen | undefined;
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        try {
          fs.renameSync(draft, dir);
          return new Claim(dir, holder);
        } catch (err) {
          if (code(err) === 'ENOTDIR') throw notOursError(dir, isSymlink(dir) ? 'is a symbolic link' : 'is not a directory');
          if (code(err) !== 'ENOTEMPTY' && code(err) !== 'EEXIST') throw directoryError(`cannot lock ${dir}`, err);
        }
        seen = readHolder(dir);
        if (seen === undefined) continue; // released meanwhile
        if (!isStale(seen, dir, staleMs)) throw lockedError(dir, describeHolder(seen), whenFree(seen, dir, staleMs));
        if (!removeStale(dir, seen === 'unreadable' ? undefined : seen.token, staleMs, depth)) pause(attempt);
      }
      if (seen === undefined) throw lockedError(dir, 'a lock being taken over');
      throw lockedError(dir, describeHolder(seen), whenFree(seen, dir, staleMs));
    } catch (err) {
      heldTokens.delete(holder.token);
      throw err;
    } finally {
      removeLockDir(draft);
    }
  }

  /** True while `dir` is still this claim (not taken over by someone who found it stale). */
  held(): boolean {
    const seen = readHolder(this.dir);
    return seen !== undefined && seen !== 'unreadable' && seen.token === this.holder.token;
  }

  /** The heartbeat: the owner file's mtime. */
  touch(): void {
    const now = new Date();
    fs.utimesSync(path.join(this.dir, OWNER_FILE), now, now);
  }

  /** Removes the claim if it is still ours (under its guard, as a takeover would). Never throws. */
  release(staleMs: number): void {
    heldTokens.delete(this.holder.token);
    try {
      removeGuarded(this.dir, this.holder.token, staleMs, 0, () => true);
    } catch {
      // Taken over meanwhile: it is someone else's now.
    }
  }
}

function isStale(seen: Seen, dir: string, staleMs: number): boolean {
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

/** Takes over the stale claim `dir` whose token is `token`; false when someone else is at it. */
function removeStale(dir: string, token: string | undefined, staleMs: number, depth: number): boolean {
  if (depth >= MAX_GUARD_DEPTH) return false;
  try {
    return removeGuarded(dir, token ?? 'unreadable', staleMs, depth, (seen) => seen !== undefined && isStale(seen, dir, staleMs));
  } catch (err) {
    if (HopperError.is(err, 'ERR_HOPPER_LOCKED')) return false;
    throw err;
  }
}

/**
 * Under the guard `<dir>.<token>.remove`, moves `dir` aside and removes it, if it still is the
 * claim `token` and `mayRemove` agrees at that instant. Throws `ERR_HOPPER_LOCKED` when another
 * live holder has the guard.
 */
function removeGuarded(dir: string, token: string, staleMs: number, depth: number, mayRemove: (seen: Seen | undefined) => boolean): boolean {
  const guard = Claim.take(`${dir}.${token}.remove`, staleMs, depth + 1);
  try {
    const seen = readHolder(dir);
    const same = seen === 'unreadable' ? token === 'unreadable' : seen !== undefined && seen.token === token;
    if (!same || !mayRemove(seen)) return false;
    const grave = `${dir}.${token}.stale`;
    fs.renameSync(dir, grave);
    removeLockDir(grave);
    return true;
  } finally {
    heldTokens.delete(guard.holder.token);
    removeLockDir(guard.dir);
  }
}

const LEFTOVER_CLAIM = /\.(draft|remove|stale)$/;

/**
 * Removes what a holder killed in the middle of a claim, a takeover or a release left beside the
 * lock `lockName` in `dir`: draft, guard and moved-aside lock directories whose holder is stale.
 * Never throws.
 */
function removeLeftoverClaims(dir: string, lockName: string, staleMs: number): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(`${lockName}.`) || !LEFTOVER_CLAIM.test(name)) continue;
    const leftover = path.join(dir, name);
    try {
      const seen = readHolder(leftover);
      if (seen !== undefined && isStale(seen, leftover, staleMs)) removeLockDir(leftover);
    } catch {
      // Not a directory of ours (a symlink, a file): left alone.
    }
  }
}

/** Names the holder of a lock, as seen from this thread. */
function describeHolder(seen: Seen): string {
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
function whenFree(seen: Seen, dir: string, staleMs: number): string {
  let lastSign: number;
  if (seen === 'unreadable') {
    try {
      lastSign = fs.lstatSync(dir).mtimeMs;
    } catch {
      return 'it is being replaced';
    }
  } else {
    const verdict = judge(seen);
    if (verdict === 'alive') return 'its owner is alive, and a live owner keeps its lock until it closes the channel';
    if (verdict !== 'unknown') return `its owner is gone (${verdict.dead}) and the lock is being taken over`;
    lastSign = seen.heartbeat;
  }
  const at = lastSign + staleMs;
  const seconds = Math.max(0, Math.ceil((at - Date.now()) / 1000));
  return `its owner cannot be proved dead from here, so the lock can be taken over in about ${seconds} s, at ${new Date(at).toISOString()}, if its owner stays silent (staleLockMs ${staleMs} ms after its last sign of life)`;
}

/** Sleeps a moment inside a synchronous open, while another holder finishes a takeover. */
function pause(attempt: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1 + attempt * 2);
}

/**
 * The lock on a channel directory: a claim on `<channel dir>/hopper.lock` naming this process and
 * thread, kept alive by a heartbeat. One channel, one owner: across hosts, processes and threads.
 */
export class Lock {
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(
    private readonly claim: Claim,
    private readonly staleMs: number,
  ) {}

  /**
   * Takes the lock `lockPath`, taking over a stale one, and removes leftovers of claims beside it.
   * Throws `ERR_HOPPER_LOCKED` naming the holder and saying when the lock can be taken, or
   * `ERR_HOPPER_IO` (its `cause` the system error) when the directory cannot be written.
   */
  static take(lockPath: string, staleMs: number): Lock {
    const lock = new Lock(Claim.take(lockPath, staleMs), staleMs);
    removeLeftoverClaims(path.dirname(lockPath), path.basename(lockPath), staleMs);
    return lock;
  }

  /** The lock directory. */
  get path(): string {
    return this.claim.dir;
  }

  /** True while the lock is still this one (not taken over by someone who found it stale). */
  held(): boolean {
    return this.claim.held();
  }

  /**
   * Starts the heartbeat: every third of the staleness window, `alive()` is asked whether the
   * holder still stands (it stops the heartbeat when it does not), and the owner file is touched.
   * The timer does not keep the process alive.
   */
  startHeartbeat(alive: () => boolean): void {
    const interval = Math.max(50, Math.floor(this.staleMs / 3));
    this.heartbeat = setInterval(() => {
      if (!alive()) return;
      try {
        this.claim.touch();
      } catch {
        // A missed heartbeat is retried at the next beat; only a lock taken over stops the channel.
      }
    }, interval);
    this.heartbeat.unref();
  }

  stopHeartbeat(): void {
    clearInterval(this.heartbeat);
  }

  /** Stops the heartbeat and removes the lock if it is still ours. Never throws. */
  release(): void {
    this.stopHeartbeat();
    this.claim.release(this.staleMs);
  }
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
