import type nodeFs from 'node:fs';
import { ioError } from '../errors.js';
import { READ_FLAGS, fsAsync, isSystemError, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import type { Segment } from './ledger.js';
import { Corruption } from './results.js';

// Opening a segment for reading, for the reader: the file opened without following a symlink or
// blocking on a FIFO, its identity (device, inode) taken from the descriptor and compared with the
// one recorded when it was created, its header read and compared with the one written. The calls
// run synchronously (a log that writes through) or on the thread pool; either way what they found
// is judged by one function, on the event loop, so that a failure costs the same.

/** What the steps of an open gave, or the step that failed and how. */
export interface Opening {
  segment: Segment;
  state: 'opening' | 'done';
  failed: { step: 'directory' | 'open' | 'fstat' | 'read'; error: unknown } | undefined;
  fd: number | undefined;
  stat: nodeFs.Stats | undefined;
  /** The bytes where the header is: fewer than the header when the file is shorter. */
  header: Buffer | undefined;
}

export function newOpening(segment: Segment, state: Opening['state']): Opening {
  return { segment, state, failed: undefined, fd: undefined, stat: undefined, header: undefined };
}

/** Opens `opening.segment`'s file and takes its identity, synchronously (the header is read by the caller). */
export function openSync(fs: SegmentFileSystem, directory: SegmentDirectory, opening: Opening): void {
  // Through a directory that was swapped (for a symlink, or another directory), nothing is read.
  if (!directory.intact()) {
    const error = directory.verify() ?? replaced(opening.segment);
    opening.failed = { step: 'directory', error };
    return;
  }
  try {
    opening.fd = fs.openSync(opening.segment.file, READ_FLAGS);
    opening.stat = fs.fstatSync(opening.fd);
  } catch (err) {
    opening.failed = { step: opening.fd === undefined ? 'open' : 'fstat', error: err };
  }
}

/**
 * The steps of an open on the thread pool: the directory checked, the file opened, its identity
 * taken, its header read (not from a file that is not the one written). `wanted` is asked between
 * steps: false (the reader let go) ends it early. Never rejects but on a bug.
 */
export async function openAsync(fs: SegmentFileSystem, directory: SegmentDirectory, opening: Opening, wanted: () => boolean): Promise<void> {
  const { segment } = opening;
  // Through a directory that was swapped (for a symlink, or another directory), nothing is read.
  if (!(await directory.intactAsync())) {
    const error = (await directory.verifyAsync()) ?? replaced(segment);
    opening.failed = { step: 'directory', error };
    return;
  }
  if (!wanted()) return;
  try {
    opening.fd = await fsAsync.open(fs, segment.file, READ_FLAGS);
    opening.stat = await fsAsync.fstat(fs, opening.fd);
  } catch (err) {
    opening.failed = { step: opening.fd === undefined ? 'open' : 'fstat', error: err };
    return;
  }
  const { stat } = opening;
  if (!stat.isFile() || stat.dev !== segment.dev || stat.ino !== segment.ino || !wanted()) return;
  const header = Buffer.allocUnsafe(segment.header.length);
  try {
    opening.header = header.subarray(0, await readFully(fs, opening.fd, header, 0));
  } catch (err) {
    opening.failed = { step: 'read', error: err };
  }
}

/**
 * What an open found, judged: undefined when the file is the one written and may be read, else
 * the failure to throw, and whether the reader closes the descriptor first (`'close'`) or keeps
 * it (`'keep'`). Either way the segment stays the one being read, where it was: after a
 * Corruption the loss is counted from there, and after ERR_HOPPER_IO (a failed system call) the
 * next call opens it again and goes on from there (blocks before may have been read from memory).
 * A Corruption when the file is gone, swapped, or not what was written. `header` gives the bytes
 * where the header is (it may throw as a read does).
 */
export function judgeOpening(opening: Opening, header: () => Buffer): { error: unknown; descriptor: 'close' | 'keep' } | undefined {
  const { segment, failed } = opening;
  if (failed?.step === 'directory') return { error: failed.error, descriptor: 'keep' };
  if (failed?.step === 'open') {
    const errno = (failed.error as NodeJS.ErrnoException).code;
    // Gone, or a symlink put in its place: retrying will not bring the file back.
    if (errno === 'ENOENT' || errno === 'ELOOP' || errno === 'ENXIO') {
      const problem = errno === 'ENOENT' ? 'the segment file is gone' : 'the segment file was replaced by a symbolic link or a special file';
      return { error: new Corruption(0, problem, 'rest-of-segment'), descriptor: 'keep' };
    }
    return { error: ioError('opening a segment for reading', segment.file, failed.error), descriptor: 'keep' };
  }
  if (failed?.step === 'fstat') return { error: ioError('opening a segment for reading', segment.file, failed.error), descriptor: 'close' };
  const stat = opening.stat!;
  if (!stat.isFile() || stat.dev !== segment.dev || stat.ino !== segment.ino) {
    const error = new Corruption(
      0,
      `the segment file was replaced (by ${stat.isFile() ? 'another file' : 'a file that is not a regular file'})`,
      'rest-of-segment',
    );
    return { error, descriptor: 'close' };
  }
  let bytes: Buffer;
  try {
    // The header alone: blocks are read ahead in the background (or by loadBlock) after it.
    if (failed?.step === 'read') throw failed.error;
    bytes = header();
  } catch (err) {
    // Only a failed system call is ERR_HOPPER_IO (retried); a bug is thrown as it is.
    if (err instanceof Corruption || !isSystemError(err)) return { error: err, descriptor: 'keep' };
    return { error: ioError('reading a segment', segment.file, err), descriptor: 'close' };
  }
  if (bytes.length < segment.header.length) {
    return { error: new Corruption(bytes.length, 'the file is shorter than what was written to it', 'rest-of-segment'), descriptor: 'keep' };
  }
  if (!bytes.equals(segment.header)) {
    let at = 0;
    while (bytes[at] === segment.header[at]) at++;
    return { error: new Corruption(at, 'the header is not the one written (not an Avro header any more)', 'rest-of-segment'), descriptor: 'keep' };
  }
  // Our writes end at the last block; bytes past that in a sealed file were put there by someone else.
  if (segment.sealed && stat.size > segment.size) {
    return { error: new Corruption(segment.size, `${stat.size - segment.size} bytes follow the last block`, 'nothing'), descriptor: 'keep' };
  }
  return undefined;
}

function replaced(segment: Segment): Error {
  return ioError('opening a segment for reading', segment.file, new Error('the channel directory was replaced'));
}

/** Reads `buffer.length` bytes at `position`, or up to the end of the file; resolves with the bytes read. */
export async function readFully(fs: SegmentFileSystem, fd: number, buffer: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buffer.length) {
    const n = await fsAsync.read(fs, fd, buffer, got, buffer.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}
