import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HopperError, directoryError, lockedError, lockLostError, notOursError } from './errors.js';

const LOCK_DIR = 'hopper.lock';
const OWNER_FILE = 'owner.json';
/** Where the segment log prepares a segment's header before linking it into place (see segments/writer.ts). */
export const SEGMENT_DRAFT = 'segment.draft';
/** Lock, guard and draft directories take this many steps of guards on guards before giving up. */
const MAX_GUARD_DEPTH = 3;
/** A claim meets a lock being taken over or released this many times before it reports it as held. */
const CLAIM_ATTEMPTS = 8;

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = fs.constants.O_NONBLOCK ?? 0;

/** Who holds a lock: written once into its owner file, which the holder touches as a heartbeat. */
export interface LockHolder {
  /** Unique to one lock: a removal names the exact lock it may remove. */
  token: string;
  pid: number;
  hostname: string;
  /** Linux: /proc/sys/kernel/random/boot_id. */
  bootId?: string;
  /** Linux: the pid namespace (/proc/self/ns/pid), so a pid is only compared within its namespace. */
  pidNamespace?: string;
  /** Linux: the process start time, in clock ticks after boot (field 22 of /proc/<pid>/stat). */
  startTime?: string;
  since: string;
}

interface SeenHolder extends LockHolder {
  /** mtime of the owner file: the holder's last sign of life. */
  heartbeat: number;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Start time of a process in clock ticks after boot, from /proc (Linux); undefined elsewhere or when it is gone. */
export function processStartTime(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: fields after it follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

let self: Omit<LockHolder, 'token' | 'since'> | undefined;

function thisProcess(): Omit<LockHolder, 'token' | 'since'> {
  if (self === undefined) {
    let pidNamespace: string | undefined;
    try {
      pidNamespace = fs.readlinkSync('/proc/self/ns/pid');
    } catch {
      pidNamespace = undefined;
    }
    self = {
      pid: process.pid,
      hostname: os.hostname(),
      ...optional('bootId', readText('/proc/sys/kernel/random/boot_id')?.trim()),
      ...optional('pidNamespace', pidNamespace),
      ...optional('startTime', processStartTime(process.pid)),
    };
  }
  return self;
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined || value === '' ? {} : { [key]: value }) as { [P in K]?: string };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Tokens of the locks this process holds (a lock naming this process that is not here is stale). */
const heldTokens = new Set<string>();

/**
 * Why a holder is provably dead, or undefined when it may be alive. Proof needs the same kernel
 * (boot id) and the same pid namespace, so a pid means the same process: then the pid is gone, or
 * it is a process with another start time (a reused pid), or it is this process while no channel
 * here holds the lock (a container's PID 1 restarted as PID 1 in the same namespace).
 */
function deathProof(holder: LockHolder): string | undefined {
  const me = thisProcess();
  if (holder.bootId === undefined || holder.bootId !== me.bootId || holder.pidNamespace !== me.pidNamespace) return undefined;
  if (holder.pid === me.pid) {
    return holder.startTime === me.startTime && heldTokens.has(holder.token) ? undefined : 'it names this process, which does not hold it';
  }
  if (!isAlive(holder.pid)) return `process ${holder.pid} is gone`;
  const startTime = processStartTime(holder.pid);
  if (startTime !== undefined && holder.startTime !== undefined && startTime !== holder.startTime) {
    return `process ${holder.pid} is another process than the one that took the lock (start time ${startTime}, not ${holder.startTime})`;
  }
  return undefined;
}

/** Proved alive: same kernel and pid namespace, and the process is there with its start time. */
function provedAlive(holder: LockHolder): boolean {
  const me = thisProcess();
  return holder.bootId !== undefined && holder.bootId === me.bootId && holder.pidNamespace === me.pidNamespace && deathProof(holder) === undefined;
}

/**
 * Reads the owner of the lock (or guard) directory `dir`: undefined when there is none; 'unreadable'
 * for a directory without a valid owner file. Never follows a symlink and never blocks on a FIFO.
 */
function readHolder(dir: string): SeenHolder | 'unreadable' | undefined {
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

/** Removes a lock directory this package made: its owner file and a segment draft, nothing else. */
function removeLockDir(dir: string): void {
  for (const name of [OWNER_FILE, SEGMENT_DRAFT]) {
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
 * own, at release). So no process ever removes a lock it did not prove stale at that instant, and
 * no one can slip a fresh lock in between the check and the move (the old lock is still in place).
 */
class Claim {
  readonly holder: LockHolder;

  private constructor(
    readonly dir: string,
    holder: LockHolder,
  ) {
    this.holder = holder;
  }

  /** Takes `dir`, taking over a stale claim; throws `ERR_HOPPER_LOCKED` naming the holder. */
  static take(dir: string, staleMs: number, depth = 0): Claim {
    const holder: LockHolder = { ...thisProcess(), token: crypto.randomBytes(12).toString('hex'), since: new Date().toISOString() };
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
      let seen: SeenHolder | 'unreadable' | undefined;
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
        if (!isStale(seen, dir, staleMs)) throw lockedError(dir, describeHolder(seen));
        if (!removeStale(dir, seen === 'unreadable' ? undefined : seen.token, staleMs, depth)) pause(attempt);
      }
      throw lockedError(dir, seen === undefined || seen === 'unreadable' ? 'a lock being taken over' : describeHolder(seen));
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

function isStale(seen: SeenHolder | 'unreadable', dir: string, staleMs: number): boolean {
  if (seen === 'unreadable') {
    // A lock directory with no owner file is not one of ours being written (those are renamed
    // into place whole): a leftover, stale once it has been still for the window.
    try {
      return Date.now() - fs.lstatSync(dir).mtimeMs > staleMs;
    } catch {
      return false;
    }
  }
  if (deathProof(seen) !== undefined) return true;
  if (provedAlive(seen)) return false;
  return Date.now() - seen.heartbeat > staleMs;
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
 * live process holds the guard.
 */
function removeGuarded(
  dir: string,
  token: string,
  staleMs: number,
  depth: number,
  mayRemove: (seen: SeenHolder | 'unreadable' | undefined) => boolean,
): boolean {
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

const LEFTOVER_CLAIM = /^hopper\.lock\..+\.(draft|remove|stale)$/;

/**
 * Removes what a process killed in the middle of a claim, a takeover or a release left beside the
 * lock: draft, guard and moved-aside lock directories whose holder is stale. Never throws.
 */
function removeLeftoverClaims(channelDir: string, staleMs: number): void {
  let names: string[];
  try {
    names = fs.readdirSync(channelDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!LEFTOVER_CLAIM.test(name)) continue;
    const dir = path.join(channelDir, name);
    try {
      const seen = readHolder(dir);
      if (seen !== undefined && isStale(seen, dir, staleMs)) removeLockDir(dir);
    } catch {
      // Not a directory of ours (a symlink, a file): left alone.
    }
  }
}

function describeHolder(seen: SeenHolder | 'unreadable'): string {
  if (seen === 'unreadable') return 'an unreadable lock';
  const me = thisProcess();
  const who =
    seen.pid === me.pid && seen.hostname === me.hostname && heldTokens.has(seen.token)
      ? `another channel in this process (pid ${seen.pid} on ${seen.hostname})`
      : `process ${seen.pid} on ${seen.hostname}`;
  return `${who}, started ${seen.since}, last sign of life ${new Date(seen.heartbeat).toISOString()}`;
}

/** Sleeps a moment inside a synchronous open, while another process finishes a takeover. */
function pause(attempt: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1 + attempt * 2);
}

/**
 * `mkdir -p`, one level at a time; returns the directories it made, outermost first. (Node 20's
 * `mkdirSync(dir, { recursive: true })` can loop for ever on some file systems, /proc among them,
 * instead of failing.)
 */
function makeDirectories(dir: string): string[] {
  const missing: string[] = [];
  for (let current = dir; ; current = path.dirname(current)) {
    try {
      fs.statSync(current);
      break;
    } catch (err) {
      if (code(err) !== 'ENOENT') throw err;
      missing.push(current);
      if (path.dirname(current) === current) break;
    }
  }
  const made: string[] = [];
  try {
    for (const missingDir of missing.reverse()) {
      try {
        fs.mkdirSync(missingDir);
        made.push(missingDir);
      } catch (err) {
        if (code(err) !== 'EEXIST') throw err;
      }
    }
  } catch (err) {
    removeEmpty(made);
    throw err;
  }
  return made;
}

function removeEmpty(dirs: string[]): void {
  for (const dir of [...dirs].reverse()) {
    try {
      fs.rmdirSync(dir);
    } catch {
      // Not empty: kept.
    }
  }
}

/** Identity of a file: device and inode. */
export interface FileIdentity {
  dev: number;
  ino: number;
}

/**
 * Where a channel lives: `<dataDir>/<name>/`, made if missing and held with a lock directory for
 * as long as the channel is open. Knows nothing of segments; it only makes, locks and unmakes
 * directories, removes only what it made, and tells whether the channel directory is still the
 * one it opened.
 */
export class ChannelDirectory {
  readonly path: string;
  readonly lockPath: string;
  private readonly dataDir: string;
  private readonly ownsDataDir: boolean;
  private readonly madeChannelDir: boolean;
  private readonly identity: FileIdentity;
  private readonly staleMs: number;
  private readonly claim: Claim;
  private heartbeat: NodeJS.Timeout | undefined;
  private lostHandlers: Array<(err: HopperError) => void> = [];
  private released = false;
  private lost = false;

  private constructor(dataDir: string, ownsDataDir: boolean, name: string, staleMs: number) {
    this.dataDir = dataDir;
    this.ownsDataDir = ownsDataDir;
    this.staleMs = staleMs;
    this.path = path.join(dataDir, name);
    this.lockPath = path.join(this.path, LOCK_DIR);
    let made = false;
    try {
      try {
        fs.mkdirSync(this.path);
        made = true;
      } catch (err) {
        if (code(err) !== 'EEXIST') throw directoryError(`cannot create the channel directory ${this.path}`, err);
      }
      const stat = fs.lstatSync(this.path);
      if (stat.isSymbolicLink()) throw notOursError(this.path, 'is a symbolic link; the channel directory must be a real directory inside dataDir');
      if (!stat.isDirectory()) throw directoryError(`the channel path ${this.path} exists and is not a directory`);
      this.identity = { dev: stat.dev, ino: stat.ino };
      this.madeChannelDir = made;
      this.claim = Claim.take(this.lockPath, staleMs);
      removeLeftoverClaims(this.path, staleMs);
    } catch (err) {
      if (made) removeEmpty([this.path]);
      this.releaseDataDir();
      throw err;
    }
    const interval = Math.max(50, Math.floor(staleMs / 3));
    this.heartbeat = setInterval(() => this.beat(), interval);
    this.heartbeat.unref();
  }

  /**
   * Opens (and locks) the directory of channel `name` under `dataDir`, or under a fresh temporary
   * directory when `dataDir` is undefined. Throws `ERR_HOPPER_LOCKED` when another open channel
   * holds it; a failed open leaves nothing behind.
   */
  static open(dataDir: string | undefined, name: string, staleLockMs: number): ChannelDirectory {
    let dir: ChannelDirectory;
    if (dataDir === undefined) {
      let temp: string;
      try {
        temp = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-streams-'));
      } catch (err) {
        throw directoryError(`cannot create a temporary directory in ${os.tmpdir()} (no dataDir given)`, err);
      }
      dir = new ChannelDirectory(temp, true, name, staleLockMs);
    } else {
      const resolved = path.resolve(dataDir);
      let stat: fs.Stats | undefined;
      try {
        stat = fs.statSync(resolved);
      } catch (err) {
        if (code(err) !== 'ENOENT') throw directoryError(`cannot use dataDir ${resolved}`, err);
      }
      if (stat && !stat.isDirectory()) {
        throw directoryError(`dataDir ${resolved} exists and is not a directory`);
      }
      let made: string[] = [];
      if (!stat) {
        try {
          made = makeDirectories(resolved);
        } catch (err) {
          throw directoryError(`cannot create dataDir ${resolved}`, err);
        }
      }
      try {
        try {
          fs.accessSync(resolved, fs.constants.W_OK | fs.constants.X_OK);
        } catch (err) {
          throw directoryError(`dataDir ${resolved} is not writable`, err);
        }
        dir = new ChannelDirectory(resolved, false, name, staleLockMs);
      } catch (err) {
        removeEmpty(made);
        throw HopperError.is(err) ? err : directoryError(`cannot open the channel directory ${path.join(resolved, name)}`, err);
      }
    }
    return dir;
  }

  /** Called once if the lock is found taken over (this process stalled past the staleness window). */
  onLost(handler: (err: HopperError) => void): void {
    this.lostHandlers.push(handler);
  }

  /** The lock directory, where the segment log prepares a new segment (see {@link SEGMENT_DRAFT}). */
  get draftDir(): string {
    return this.lockPath;
  }

  /** True while `<dataDir>/<name>` is still the directory this channel opened (not swapped for another or a symlink). */
  intact(): boolean {
    try {
      const stat = fs.lstatSync(this.path);
      return stat.isDirectory() && stat.dev === this.identity.dev && stat.ino === this.identity.ino;
    } catch {
      return false;
    }
  }

  /**
   * Checks that the lock is still ours and the directory still the one opened; when not, stops the
   * heartbeat, tells the `onLost` handlers, and returns the error.
   */
  verify(): HopperError | undefined {
    if (this.released) return undefined;
    if (this.lost) return lockLostError(this.lockPath, 'was lost earlier');
    let problem: string | undefined;
    if (!this.intact()) problem = `the channel directory ${this.path} was replaced while the channel ran`;
    else {
      try {
        if (!this.claim.held()) problem = `the lock ${this.lockPath} was taken over by another process (this one stalled past staleLockMs, ${this.staleMs} ms)`;
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    if (problem === undefined) return undefined;
    this.lost = true;
    clearInterval(this.heartbeat);
    const err = lockLostError(this.lockPath, problem);
    // Later: verify() may run inside a write, which must not see the channel close under it.
    for (const handler of this.lostHandlers.splice(0)) queueMicrotask(() => handler(err));
    return err;
  }

  private beat(): void {
    if (this.verify() !== undefined) return;
    try {
      this.claim.touch();
    } catch {
      // A missed heartbeat is retried at the next beat; only a lock taken over stops the channel.
    }
  }

  /**
   * Removes the lock (if still ours), then the channel directory if this channel made it and it
   * is empty, then the directories it made for dataDir. The segment log is closed first, by
   * whoever built both (engine.ts). Idempotent; never throws.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    clearInterval(this.heartbeat);
    // Through a directory that was swapped, nothing is removed: it is not ours any more.
    if (!this.lost && this.intact()) {
      this.claim.release(this.staleMs);
      if (this.madeChannelDir) removeEmpty([this.path]);
    }
    this.releaseDataDir();
  }

  private releaseDataDir(): void {
    if (this.ownsDataDir) removeEmpty([this.dataDir]);
  }
}
