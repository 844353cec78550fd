import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HopperError, directoryError, lockLostError, notOursError } from './errors.js';
import { Lock } from './lock.js';

// Where a channel lives: paths, the making and unmaking of directories, and whether the channel
// directory is still the one opened. The lock protocol itself is lock.ts.

const LOCK_DIR = 'hopper.lock';
/**
 * An open meets its channel directory removed under it (by an owner that made it, closing) this many
 * times before it fails. Each time is a few system calls; more than a handful means someone removes
 * it on purpose.
 */
const OPEN_ATTEMPTS = 100;

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** True when `err` says a directory on the way was not there (a wrapped ENOENT included). */
function vanished(err: unknown): boolean {
  return code(err) === 'ENOENT' || (HopperError.is(err, 'ERR_HOPPER_IO') && code(err.cause) === 'ENOENT');
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

/** statfs(2) `f_type` of every FUSE mount (`FUSE_SUPER_MAGIC` in linux/magic.h). */
const FUSE_SUPER_MAGIC = 0x65735546;

/**
 * Refuses a directory on a FUSE file system. libfuse's high-level API gives each hard-linked path
 * its own inode (and, with `use_ino`, the kernel still caches each path's size apart), so the
 * (device, inode) and size checks that keep the channel to its own files would see a segment as
 * replaced or cut short when it is neither: a channel there would report corruption that is not
 * there. A path that does not exist, or a system without statfs, has nothing to judge.
 */
function refuseFuse(dir: string): void {
  let type: number;
  try {
    type = fs.statfsSync(dir).type;
  } catch {
    return;
  }
  if (type === FUSE_SUPER_MAGIC) {
    throw directoryError(
      `${dir} is on a FUSE file system, which hopper-streams does not support: FUSE does not keep a file's identity (inode) and size alike across its hard links, which the segment log relies on to touch only its own files; use a local file system (ext4, xfs, tmpfs) or a block device`,
    );
  }
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
  private readonly lock: Lock;
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
      // The owner that made the channel directory removes it when it closes, if it is empty: an
      // open that meets it gone between its mkdir and its lock makes it again, and tries again.
      for (let attempt = 1; ; attempt++) {
        made = false;
        try {
          try {
            fs.mkdirSync(this.path);
            made = true;
          } catch (err) {
            if (code(err) !== 'EEXIST') throw directoryError(`cannot create the channel directory ${this.path}`, err);
          }
          this.checkChannelDir();
          this.lock = Lock.take(this.lockPath, staleMs);
          break;
        } catch (err) {
          if (attempt >= OPEN_ATTEMPTS || !vanished(err)) throw err;
        }
      }
      // Taken now, with our lock inside: a directory that replaced the one checked above between
      // the check and the lock is the one we hold, and no owner removes it while it holds our lock.
      let stat: fs.Stats;
      try {
        stat = this.checkChannelDir();
      } catch (err) {
        this.lock.release();
        throw err;
      }
      this.identity = { dev: stat.dev, ino: stat.ino };
      this.madeChannelDir = made;
    } catch (err) {
      if (made) removeEmpty([this.path]);
      this.releaseDataDir();
      throw err;
    }
    this.lock.startHeartbeat(async () => (await this.verifyAsync()) === undefined);
  }

  /** The channel directory is a real directory, not a symlink or a file. */
  private checkChannelDir(): fs.Stats {
    const stat = fs.lstatSync(this.path);
    if (stat.isSymbolicLink()) throw notOursError(this.path, 'is a symbolic link; the channel directory must be a real directory inside dataDir');
    if (!stat.isDirectory()) throw directoryError(`the channel path ${this.path} exists and is not a directory`);
    return stat;
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
      try {
        refuseFuse(temp);
      } catch (err) {
        removeEmpty([temp]);
        throw err;
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
        refuseFuse(resolved);
        refuseFuse(path.join(resolved, name));
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

  /** {@link intact} off the event loop. */
  async intactAsync(): Promise<boolean> {
    try {
      const stat = await fs.promises.lstat(this.path);
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
        if (!this.lock.held()) problem = this.takenOver();
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    return this.lose(problem);
  }

  /** {@link verify} off the event loop (the segment log, before each new segment). */
  async verifyAsync(): Promise<HopperError | undefined> {
    if (this.released) return undefined;
    if (this.lost) return lockLostError(this.lockPath, 'was lost earlier');
    let problem: string | undefined;
    if (!(await this.intactAsync())) problem = `the channel directory ${this.path} was replaced while the channel ran`;
    else {
      try {
        if (!(await this.lock.heldAsync())) problem = this.takenOver();
      } catch (err) {
        problem = (err as Error).message;
      }
    }
    // Released meanwhile (the channel closed): nothing is lost.
    if (this.released) return undefined;
    return this.lose(problem);
  }

  private takenOver(): string {
    return `the lock ${this.lockPath} was taken over by another process (this one stalled past staleLockMs, ${this.staleMs} ms)`;
  }

  /** The lock or directory is lost (`problem`): see {@link verify}. */
  private lose(problem: string | undefined): HopperError | undefined {
    if (problem === undefined) return undefined;
    if (this.lost) return lockLostError(this.lockPath, 'was lost earlier');
    this.lost = true;
    this.lock.stopHeartbeat();
    const err = lockLostError(this.lockPath, problem);
    // Later: verify() may run inside a write, which must not see the channel close under it.
    for (const handler of this.lostHandlers.splice(0)) queueMicrotask(() => handler(err));
    return err;
  }

  /**
   * Removes the lock (if still ours), then the channel directory if this channel made it and it
   * is empty, then the directories it made for dataDir. The segment log is closed first, by
   * whoever built both (engine.ts). Idempotent; never throws.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.lock.stopHeartbeat();
    // Through a directory that was swapped, nothing is removed: it is not ours any more.
    if (!this.lost && this.intact()) {
      this.lock.release();
      if (this.madeChannelDir) removeEmpty([this.path]);
    }
    this.releaseDataDir();
  }

  /**
   * After release, once the segment log's background removals have ended: does again what
   * release() could not do while they ran. The lock's removal needs room for a guard directory (on
   * a full disk it waits for the segments' unlinks), and the channel directory is only removed
   * empty. The lock goes only if it still names this channel's token, and only empty directories
   * go while `<dataDir>/<name>` is still the one opened, so a new owner's are never touched.
   * Never throws.
   */
  tidy(): void {
    if (!this.released || this.lost) return;
    if (this.intact()) {
      this.lock.release();
      if (this.madeChannelDir) removeEmpty([this.path]);
    }
    this.releaseDataDir();
  }

  private releaseDataDir(): void {
    if (this.ownsDataDir) removeEmpty([this.dataDir]);
  }
}
