import path from 'node:path';
import { ioError } from '../errors.js';
import { OWNER_KEY, decodeHeader } from '../ocf.js';
import { READ_FLAGS, closeQuietly, isSystemError, type SegmentFileSystem } from './io.js';
import { SEGMENT_NAME, type Ledger } from './ledger.js';
import type { FaultEvent } from './results.js';

// At open: the segment files a previous run of this channel left behind are removed, and new
// segments are numbered past every name in the directory. Only files proved to be the package's
// own go; everything else is left as it is.

/**
 * Removes segment files a previous run of this channel left behind: only regular files named
 * like segments whose header carries this package's owner mark (a segment is never linked into
 * place without its whole header, see SegmentWriter). Anything else (a symlink, a FIFO, a file
 * of someone else's) stays untouched and unopened for writing, and `ledger.nextSeq` goes past
 * every existing name. Throws ERR_HOPPER_IO when the directory cannot be listed or a file of ours
 * cannot be removed; a file that cannot be checked is left and reported to `onFault`, on the next
 * tick (the opener cannot listen before).
 */
export function removeStaleSegments(fs: SegmentFileSystem, dir: string, ledger: Ledger, onFault: (event: FaultEvent) => void): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir) as string[];
  } catch (err) {
    throw ioError('listing the channel directory', dir, err);
  }
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (!match) continue;
    ledger.nextSeq = Math.max(ledger.nextSeq, Number(match[1]) + 1);
    const file = path.join(dir, name);
    const identity = ourSegment(fs, file, onFault);
    if (identity === undefined) continue;
    try {
      // Unlinked only if the name still holds the file whose header was checked.
      const stat = fs.lstatSync(file);
      if (stat.isFile() && stat.dev === identity.dev && stat.ino === identity.ino) fs.unlinkSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('removing a stale segment', file, err);
    }
  }
}

/** The identity of `file` when it is a regular file with this package's owner mark in its header. */
function ourSegment(fs: SegmentFileSystem, file: string, onFault: (event: FaultEvent) => void): { dev: number; ino: number } | undefined {
  let fd: number | undefined;
  try {
    if (!fs.lstatSync(file).isFile()) return undefined;
    fd = fs.openSync(file, READ_FLAGS);
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return undefined;
    const head = Buffer.alloc(Math.min(64 * 1024, stat.size));
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return decodeHeader(head.subarray(0, n))?.meta[OWNER_KEY] !== undefined ? { dev: stat.dev, ino: stat.ino } : undefined;
  } catch (err) {
    if (!isSystemError(err)) throw err;
    // Gone since the listing, or swapped for a symlink or a special file: not a file of ours, and
    // safe to leave without a word.
    if (err.code === 'ENOENT' || err.code === 'ELOOP' || err.code === 'ENXIO') return undefined;
    // Any other failure (EACCES, EIO, EMFILE...) leaves the file unchecked, so untouched (never
    // delete what is not proved ours), and says so once the opener can listen.
    const fault: FaultEvent = { operation: 'remove', file, error: ioError('checking a stale segment', file, err) };
    process.nextTick(() => onFault(fault));
    return undefined;
  } finally {
    if (fd !== undefined) closeQuietly(fs, fd);
  }
}
