import nodeFs from 'node:fs';
import type { SegmentFileSystem } from './io.js';

// The file operations a durable channel needs beyond the segment log's seam: syncing, renaming,
// truncating. Kept apart from io.ts so that the seam of a non-durable channel is unchanged; a seam
// that lacks them (a test's wrapper of node:fs) gets node:fs's own, a fault model provides all.

/** The seam of a durable channel: {@link SegmentFileSystem} plus sync, rename and truncate. */
export type DurableFileSystem = SegmentFileSystem &
  Pick<typeof nodeFs, 'fsyncSync' | 'fdatasyncSync' | 'ftruncateSync' | 'renameSync' | 'fsync' | 'fdatasync' | 'rename' | 'open' | 'close'>;

const DURABLE_OPS = ['fsyncSync', 'fdatasyncSync', 'ftruncateSync', 'renameSync', 'fsync', 'fdatasync', 'rename', 'open', 'close'] as const;

/** `fs` with the durable operations it lacks taken from node:fs (a seam that has them keeps its own). */
export function withDurableOps(fs: SegmentFileSystem): DurableFileSystem {
  const missing = DURABLE_OPS.filter((op) => typeof (fs as Partial<DurableFileSystem>)[op] !== 'function');
  if (missing.length === 0) return fs as DurableFileSystem;
  const filled: Record<string, unknown> = { ...fs };
  for (const op of missing) filled[op] = nodeFs[op];
  return filled as DurableFileSystem;
}

/** Opens a directory for fsync, without following a symlink. */
export const DIR_FLAGS = nodeFs.constants.O_RDONLY | (nodeFs.constants.O_DIRECTORY ?? 0) | (nodeFs.constants.O_NOFOLLOW ?? 0);

/**
 * fsync of a directory: makes the names created, renamed or unlinked in it durable. Platforms that
 * cannot open or sync a directory (Windows: EPERM, EISDIR) count as done.
 */
export function fsyncDirSync(fs: DurableFileSystem, dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, DIR_FLAGS);
  } catch (err) {
    if (process.platform === 'win32') return;
    throw err;
  }
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(process.platform === 'win32' && (code === 'EPERM' || code === 'EISDIR'))) throw err;
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      // Nothing to recover from a failed close of a directory read-only fd.
    }
  }
}

/** The asynchronous calls of the durable seam as promises (on libuv's thread pool). */
export const durableAsync = {
  open: (fs: DurableFileSystem, file: string, flags: number, mode?: number): Promise<number> =>
    new Promise((resolve, reject) => fs.open(file, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd)))),
  close: (fs: DurableFileSystem, fd: number): Promise<void> => new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve()))),
  fsync: (fs: DurableFileSystem, fd: number): Promise<void> => new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve()))),
  fdatasync: (fs: DurableFileSystem, fd: number): Promise<void> => new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))),
  rename: (fs: DurableFileSystem, from: string, to: string): Promise<void> =>
    new Promise((resolve, reject) => fs.rename(from, to, (err) => (err ? reject(err) : resolve()))),
  writev: (fs: DurableFileSystem, fd: number, parts: Buffer[], position: number): Promise<number> =>
    new Promise((resolve, reject) => fs.writev(fd, parts, position, (err, n) => (err ? reject(err) : resolve(n)))),
};

/** {@link fsyncDirSync} on the thread pool. */
export async function fsyncDir(fs: DurableFileSystem, dir: string): Promise<void> {
  let fd: number;
  try {
    fd = await durableAsync.open(fs, dir, DIR_FLAGS);
  } catch (err) {
    if (process.platform === 'win32') return;
    throw err;
  }
  try {
    await durableAsync.fsync(fs, fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(process.platform === 'win32' && (code === 'EPERM' || code === 'EISDIR'))) throw err;
  } finally {
    await durableAsync.close(fs, fd).catch(() => {});
  }
}
