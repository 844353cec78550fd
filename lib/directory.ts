import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HopperError } from './errors.js';

const LOCK_FILE = 'hopper.lock';

interface LockHolder {
  pid: number;
  hostname: string;
  since: string;
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

function readHolder(lockPath: string): LockHolder | undefined {
  try {
    const holder = JSON.parse(fs.readFileSync(lockPath, 'utf8')) as LockHolder;
    return typeof holder.pid === 'number' && typeof holder.hostname === 'string' ? holder : undefined;
  } catch {
    return undefined;
  }
}

function dirError(message: string, cause: unknown): HopperError {
  const reason = cause instanceof Error ? `: ${cause.message}` : '';
  return new HopperError('ERR_HOPPER_IO', `${message}${reason}`, { cause });
}

/**
 * `mkdir -p`, one level at a time. (Node 20's `mkdirSync(dir, { recursive: true })` can loop for
 * ever on some file systems, /proc among them, instead of failing.)
 */
function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let current = dir; ; current = path.dirname(current)) {
    try {
      fs.statSync(current);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      missing.push(current);
      if (path.dirname(current) === current) break;
    }
  }
  for (const missingDir of missing.reverse()) {
    try {
      fs.mkdirSync(missingDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

const openDirectories = new Set<ChannelDirectory>();
let exitHookInstalled = false;

function releaseAllAtExit(): void {
  for (const dir of openDirectories) dir.release();
}

/**
 * Where a channel lives: `<dataDir>/<name>/`, made if missing and held with a lock file for as
 * long as the channel is open. Knows nothing of segments; it only makes, locks and unmakes
 * directories, and removes only what it made.
 */
export class ChannelDirectory {
  readonly path: string;
  private readonly lockPath: string;
  private readonly dataDir: string;
  private readonly ownsDataDir: boolean;
  private readonly madeChannelDir: boolean;
  private cleanups: Array<() => void> = [];
  private released = false;

  private constructor(dataDir: string, ownsDataDir: boolean, name: string) {
    this.dataDir = dataDir;
    this.ownsDataDir = ownsDataDir;
    this.path = path.join(dataDir, name);
    this.lockPath = path.join(this.path, LOCK_FILE);
    try {
      fs.mkdirSync(this.path);
      this.madeChannelDir = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        this.releaseDataDir();
        throw dirError(`cannot create the channel directory ${this.path}`, err);
      }
      this.madeChannelDir = false;
      if (!fs.statSync(this.path).isDirectory()) {
        throw new HopperError('ERR_HOPPER_IO', `the channel path ${this.path} exists and is not a directory`);
      }
    }
    try {
      this.lock();
    } catch (err) {
      this.releaseChannelDir();
      this.releaseDataDir();
      throw err;
    }
  }

  /**
   * Opens (and locks) the directory of channel `name` under `dataDir`, or under a fresh temporary
   * directory when `dataDir` is undefined. Throws `ERR_HOPPER_LOCKED` when another open channel holds it.
   */
  static open(dataDir: string | undefined, name: string): ChannelDirectory {
    let dir: ChannelDirectory;
    if (dataDir === undefined) {
      const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-streams-'));
      dir = new ChannelDirectory(temp, true, name);
    } else {
      const resolved = path.resolve(dataDir);
      let stat: fs.Stats | undefined;
      try {
        stat = fs.statSync(resolved);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw dirError(`cannot use dataDir ${resolved}`, err);
      }
      if (stat && !stat.isDirectory()) {
        throw new HopperError('ERR_HOPPER_IO', `dataDir ${resolved} exists and is not a directory`);
      }
      if (!stat) {
        try {
          makeDirectories(resolved);
        } catch (err) {
          throw dirError(`cannot create dataDir ${resolved}`, err);
        }
      }
      try {
        fs.accessSync(resolved, fs.constants.W_OK | fs.constants.X_OK);
      } catch (err) {
        throw dirError(`dataDir ${resolved} is not writable`, err);
      }
      dir = new ChannelDirectory(resolved, false, name);
    }
    openDirectories.add(dir);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', releaseAllAtExit);
    }
    return dir;
  }

  /** Registers work to run before the directory is released (at close, destroy or process exit). */
  onRelease(cleanup: () => void): void {
    this.cleanups.push(cleanup);
  }

  /**
   * Runs the cleanups, removes the lock, then the channel directory if this channel made it and it
   * is empty, then the temporary dataDir if it was ours and is empty. Idempotent; never throws.
   */
  release(): void {
    if (this.released) return;
    this.released = true;
    openDirectories.delete(this);
    for (const cleanup of this.cleanups.splice(0)) {
      try {
        cleanup();
      } catch {
        // Removal is best effort: a leftover file must not turn a finished run into a crash.
      }
    }
    try {
      fs.unlinkSync(this.lockPath);
    } catch {
      // Already gone.
    }
    this.releaseChannelDir();
    this.releaseDataDir();
  }

  get isReleased(): boolean {
    return this.released;
  }

  private releaseChannelDir(): void {
    if (!this.madeChannelDir) return;
    try {
      fs.rmdirSync(this.path);
    } catch {
      // Not empty: it holds files we did not create, which we keep.
    }
  }

  private releaseDataDir(): void {
    if (!this.ownsDataDir) return;
    try {
      fs.rmdirSync(this.dataDir);
    } catch {
      // Not empty: someone else put files there, which we keep.
    }
  }

  private lock(): void {
    const holder: LockHolder = { pid: process.pid, hostname: os.hostname(), since: new Date().toISOString() };
    // Write the whole lock aside, then link it into place: link fails if a lock exists, and a lock
    // that exists is always complete, so a reader never sees a half-written one.
    const draft = path.join(this.path, `${LOCK_FILE}.${process.pid}.${Date.now()}.tmp`);
    try {
      fs.writeFileSync(draft, JSON.stringify(holder), { flag: 'wx' });
    } catch (err) {
      throw dirError(`cannot write in the channel directory ${this.path}`, err);
    }
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          fs.linkSync(draft, this.lockPath);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw this.lockedError(readHolder(this.lockPath));
            throw dirError(`cannot lock the channel directory ${this.path}`, err);
          }
        }
        const current = readHolder(this.lockPath);
        const stale = current !== undefined && current.hostname === os.hostname() && !isAlive(current.pid);
        if (!stale) throw this.lockedError(current);
        fs.unlinkSync(this.lockPath);
      }
    } finally {
      try {
        fs.unlinkSync(draft);
      } catch {
        // Nothing to undo.
      }
    }
  }

  private lockedError(holder: LockHolder | undefined): HopperError {
    const who = holder === undefined
      ? 'an unreadable lock file'
      : holder.pid === process.pid && holder.hostname === os.hostname()
        ? `another channel in this process (pid ${holder.pid}) since ${holder.since}`
        : `process ${holder.pid} on ${holder.hostname} since ${holder.since}`;
    return new HopperError('ERR_HOPPER_LOCKED', `channel directory ${this.path} is locked by ${who} (${this.lockPath})`, {
      file: this.lockPath,
    });
  }
}
