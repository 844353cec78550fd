import nodeFs from 'node:fs';

// The file operations of the segment log, and the one policy for retrying them. Everything here
// is about files and time, nothing about records or blocks: the writer, the reader and the log
// call these; these call nothing back.

/**
 * The file operations the segment log uses: node:fs by default, a seam for fault injection.
 * Asynchronous calls (libuv's thread pool) for everything a spill and a drain do: creating,
 * opening, writing, reading, closing and removing segments. Synchronous ones only where the log
 * may block: at open (stale segments) and close, when it writes through (`maxPendingDiskBytes: 0`)
 * and for the last resort past maxPendingDiskBytes. No fsync: like hopper, nothing is kept across
 * restarts, so nothing needs to reach the platter.
 * The seam also carries the clock retries wait on (`retryClock`, the system clock when absent), so
 * that a test that injects a fault also drives its retries instead of sleeping through them.
 */
export type SegmentFileSystem = Pick<
  typeof nodeFs,
  | 'openSync'
  | 'closeSync'
  | 'writevSync'
  | 'readSync'
  | 'unlinkSync'
  | 'readdirSync'
  | 'fstatSync'
  | 'lstatSync'
  | 'linkSync'
  | 'writev'
  | 'read'
  | 'unlink'
  | 'lstat'
  | 'open'
  | 'close'
  | 'fstat'
  | 'link'
> & { readonly retryClock?: RetryClock | undefined };

/** What the retry policy waits on: a one-shot timer and the time now, in milliseconds. */
export interface RetryClock {
  now(): number;
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

/** The real clock: `Date.now` and the global timers. */
export const systemClock: RetryClock = {
  now: () => Date.now(),
  setTimeout: (run, ms) => setTimeout(run, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
};

/**
 * The channel directory as the segment log sees it: where segments go, where a new one is
 * prepared (the lock directory: a draft left there by a crash goes with the lock), and whether the
 * directory is still the one the channel opened and locked.
 */
export interface SegmentDirectory {
  readonly path: string;
  readonly draftDir: string;
  /** True while the directory is the one opened (not swapped for another, or for a symlink). */
  intact(): boolean;
  /** The error the channel stops with when the directory or its lock is no longer ours. */
  verify(): Error | undefined;
  /** {@link intact} off the event loop. */
  intactAsync(): Promise<boolean>;
  /** {@link verify} off the event loop. */
  verifyAsync(): Promise<Error | undefined>;
}

/** A directory used as is (unit tests): drafts are prepared in it, and it is trusted. */
export function plainDirectory(dir: string): SegmentDirectory {
  return {
    path: dir,
    draftDir: dir,
    intact: () => true,
    verify: () => undefined,
    intactAsync: () => Promise.resolve(true),
    verifyAsync: () => Promise.resolve(undefined),
  };
}

/** Creates a new file, never an existing one, and never through a symlink. */
export const CREATE_FLAGS = nodeFs.constants.O_WRONLY | nodeFs.constants.O_CREAT | nodeFs.constants.O_EXCL | (nodeFs.constants.O_NOFOLLOW ?? 0);
/** Opens for reading without following a symlink or blocking on a FIFO (the file is checked with fstat next). */
export const READ_FLAGS = nodeFs.constants.O_RDONLY | (nodeFs.constants.O_NOFOLLOW ?? 0) | (nodeFs.constants.O_NONBLOCK ?? 0);

/** A file the log created, known by its name and identity: only that file is ever read or removed under the name. */
export interface OwnFile {
  readonly file: string;
  readonly dev: number;
  readonly ino: number;
}

/** Writes all of `parts` (`length` bytes) at `position`; throws the system error, nothing counted as written. */
export function writeAll(fs: SegmentFileSystem, fd: number, parts: Buffer[], length: number, position: number): void {
  let written = 0;
  while (written < length) {
    const n = fs.writevSync(fd, parts, position + written);
    written += n;
    if (written < length) parts = remainder(parts, n);
  }
}

/**
 * {@link writeAll} on libuv's thread pool: the event loop goes on while the disk works. Rejects
 * with the system error; nothing is counted as written then.
 */
export async function writeAllAsync(fs: SegmentFileSystem, fd: number, parts: Buffer[], length: number, position: number): Promise<void> {
  let written = 0;
  while (written < length) {
    const at = position + written;
    const n = await new Promise<number>((resolve, reject) => fs.writev(fd, parts, at, (err, bytes) => (err ? reject(err) : resolve(bytes))));
    written += n;
    if (written < length) parts = remainder(parts, n);
  }
}

/** The asynchronous calls of the seam as promises (each runs on libuv's thread pool). */
export const fsAsync = {
  open: (fs: SegmentFileSystem, file: string, flags: number, mode?: number): Promise<number> =>
    new Promise((resolve, reject) => fs.open(file, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd)))),
  fstat: (fs: SegmentFileSystem, fd: number): Promise<nodeFs.Stats> =>
    new Promise((resolve, reject) => fs.fstat(fd, (err, stat) => (err ? reject(err) : resolve(stat)))),
  link: (fs: SegmentFileSystem, from: string, to: string): Promise<void> =>
    new Promise((resolve, reject) => fs.link(from, to, (err) => (err ? reject(err) : resolve()))),
  /** Never rejects: a close error leaves nothing to recover. */
  close: (fs: SegmentFileSystem, fd: number): Promise<void> => new Promise((resolve) => fs.close(fd, () => resolve())),
  lstat: (fs: SegmentFileSystem, file: string): Promise<nodeFs.Stats> =>
    new Promise((resolve, reject) => fs.lstat(file, (err, stat) => (err ? reject(err) : resolve(stat)))),
  unlink: (fs: SegmentFileSystem, file: string): Promise<void> => new Promise((resolve, reject) => fs.unlink(file, (err) => (err ? reject(err) : resolve()))),
  read: (fs: SegmentFileSystem, fd: number, buffer: Buffer, offset: number, length: number, position: number): Promise<number> =>
    new Promise((resolve, reject) => fs.read(fd, buffer, offset, length, position, (err, n) => (err ? reject(err) : resolve(n)))),
};

function remainder(parts: Buffer[], skip: number): Buffer[] {
  const rest: Buffer[] = [];
  for (const part of parts) {
    if (skip >= part.length) {
      skip -= part.length;
    } else {
      rest.push(skip > 0 ? part.subarray(skip) : part);
      skip = 0;
    }
  }
  return rest;
}

/** True for an error a system call threw (it carries an errno `code` such as 'EIO'), as opposed to a bug. */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string' && typeof (err as NodeJS.ErrnoException).syscall === 'string';
}

export function closeQuietly(fs: SegmentFileSystem, fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // A close error leaves nothing to recover.
  }
}

/**
 * Closes descriptors on the thread pool. A descriptor is handed over only once nothing uses it any
 * more (its number may be reused as soon as the close lands); `settled()` lets a close of the log
 * wait until every one handed over is closed.
 */
export class Closer {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly fs: SegmentFileSystem) {}

  close(fd: number): void {
    const closing = fsAsync.close(this.fs, fd);
    this.inFlight.add(closing);
    void closing.then(() => this.inFlight.delete(closing));
  }

  /** Resolves once the closes under way now have landed; undefined when there are none. */
  settled(): Promise<unknown> | undefined {
    return this.inFlight.size === 0 ? undefined : Promise.all(this.inFlight);
  }
}

/** Unlinks `file` on the thread pool; never rejects (gone already, or left for the next open). */
export async function unlinkQuietlyAsync(fs: SegmentFileSystem, file: string): Promise<void> {
  try {
    await fsAsync.unlink(fs, file);
  } catch {
    // Gone already, or left for the next open (a draft goes with the lock directory).
  }
}

export function unlinkQuietly(fs: SegmentFileSystem, file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // Gone already, or left for the next open (a draft goes with the lock directory).
  }
}

/**
 * Unlinks a file if it is still the one the log created (same device and inode, in the directory
 * the channel opened). 'not-ours' when it is not: it is left alone. Throws the system error when
 * the unlink fails.
 */
export function unlinkOurs(fs: SegmentFileSystem, directory: SegmentDirectory, own: OwnFile): 'removed' | 'not-ours' {
  if (!directory.intact()) {
    directory.verify();
    return 'not-ours';
  }
  let stat: nodeFs.Stats;
  try {
    stat = fs.lstatSync(own.file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'removed';
    throw err;
  }
  if (!stat.isFile() || stat.dev !== own.dev || stat.ino !== own.ino) return 'not-ours';
  try {
    fs.unlinkSync(own.file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return 'removed';
}

/**
 * {@link unlinkOurs} off the event loop: the directory check, lstat and unlink on the thread pool,
 * in that order. The identity check and the unlink are two calls, as they are synchronously: a
 * path has no descriptor to check on. `wanted` is asked right before the unlink: false (the log
 * closed meanwhile, and removed the file itself) leaves the name alone, so that a file made under
 * it after the close is never touched.
 */
export async function unlinkOursAsync(
  fs: SegmentFileSystem,
  directory: SegmentDirectory,
  own: OwnFile,
  wanted: () => boolean = () => true,
): Promise<'removed' | 'not-ours'> {
  if (!(await directory.intactAsync())) {
    await directory.verifyAsync();
    return 'not-ours';
  }
  let stat: nodeFs.Stats;
  try {
    stat = await fsAsync.lstat(fs, own.file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'removed';
    throw err;
  }
  if (!stat.isFile() || stat.dev !== own.dev || stat.ino !== own.ino) return 'not-ours';
  if (!wanted()) return 'removed';
  try {
    await fsAsync.unlink(fs, own.file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return 'removed';
}

const RETRY_FIRST_MS = 5;
const RETRY_MAX_MS = 1_000;
/**
 * The reader gives up only after this many failed reads in a row, and only once they have gone on
 * for READ_GIVE_UP_MS: an fd or permission shortage shorter than that costs no record.
 */
const READ_ATTEMPTS = 10;
const READ_GIVE_UP_MS = 5_000;
/** Attempts to remove each segment at close before leaving it (and saying so). */
export const CLOSE_ATTEMPTS = 3;

/**
 * The one retry policy, for whatever failed (a pending block write, a read, a removal): one
 * timer, whose delay doubles from 5 ms to 1 s while failures go on, and starts again at 5 ms
 * once the failing operations work. A run of failed reads is given up on only when it is both
 * long (READ_ATTEMPTS) and old (READ_GIVE_UP_MS).
 */
export class RetryPolicy {
  /** Reads failed in a row; 0 while reads work. */
  failingReads = 0;
  private failingSince = 0;
  private timer: unknown;
  private armed = false;
  private delay = RETRY_FIRST_MS;
  private stopped = false;

  /** `retry` runs when the timer fires: it tries again whatever failed. `clock`: what it waits on. */
  constructor(
    private readonly retry: () => void,
    private readonly clock: RetryClock = systemClock,
  ) {}

  /** Arms the one timer, unless it is armed already. */
  schedule(): void {
    if (this.armed || this.stopped) return;
    const delay = this.delay;
    this.delay = Math.min(this.delay * 2, RETRY_MAX_MS);
    this.armed = true;
    this.timer = this.clock.setTimeout(this.fire, delay);
  }

  private fire = (): void => {
    this.armed = false;
    this.timer = undefined;
    if (!this.stopped) this.retry();
  };

  /** A read failed: true when the reader should give up, else the retry is scheduled. */
  readFailed(): boolean {
    const now = this.clock.now();
    if (this.failingReads++ === 0) this.failingSince = now;
    return this.failingReads >= READ_ATTEMPTS && now - this.failingSince >= READ_GIVE_UP_MS;
  }

  /** Reads work again (called only when `failingReads` is not 0); `writesFailing` keeps the delay growing. */
  readsWork(writesFailing: boolean): void {
    this.failingReads = 0;
    if (!writesFailing) this.delay = RETRY_FIRST_MS;
  }

  /** Writes work again. */
  writesWork(): void {
    if (this.failingReads === 0) this.delay = RETRY_FIRST_MS;
  }

  stop(): void {
    this.stopped = true;
    if (this.armed) this.clock.clearTimeout(this.timer);
    this.armed = false;
  }
}
