import type { Stats } from 'node:fs';
import { ioError } from '../errors.js';
import { blockData, checkSync, isProblem, parseBlockHeader } from '../ocf.js';
import { BY_REFERENCE_BYTES } from '../record-codec.js';
import { READ_ALONE_BYTES } from './block-reader.js';
import type { DurableSegment, DurableState } from './durable-state.js';
import { READ_FLAGS, fsAsync } from './io.js';
import { Corruption } from './results.js';

// The durable reader's file side: a segment opened for reading (on the thread pool, its identity
// checked on the descriptor), bytes read from it, and a block's bytes checked (framing, size, sync
// marker) and unpacked. What goes wrong in the bytes is a Corruption; durable-reads.ts decides what
// it costs.

/**
 * A block of large records (as read-ahead.ts's readAlone says) is read alone, into a buffer of its
 * own: a large Buffer record the codec gives back as a view of the bytes read then keeps that
 * block alive, not a whole read of several.
 */
export function readAlone(segment: DurableSegment, block: number): boolean {
  const bytes = segment.blockEnds[block]! - (segment.blockEnds[block - 1] ?? segment.headerLength);
  return bytes >= READ_ALONE_BYTES && bytes >= segment.blockCounts[block]! * BY_REFERENCE_BYTES;
}

/** A block's records, uncompressed, from its bytes (framing, size and sync marker checked): throws a Corruption. */
export function blockFromBytes(bytes: Buffer, offset: number, segment: DurableSegment): Buffer {
  const frame = parseBlockHeader(bytes, 0, bytes.length);
  if (isProblem(frame)) throw new Corruption(offset + frame.offset, frame.problem, 'block');
  if (frame.end !== bytes.length) {
    throw new Corruption(offset, `the block size says ${frame.end} bytes with its framing, the index ${bytes.length}`, 'block');
  }
  const badSync = checkSync(bytes, frame, segment.sync);
  if (badSync !== undefined) throw new Corruption(offset + badSync.offset, badSync.problem, 'block');
  const data = blockData(bytes, frame, segment.codec);
  if (isProblem(data)) throw new Corruption(offset + data.offset, data.problem, 'block');
  return data;
}

/**
 * Opens `segment`'s file for reading on the thread pool and checks, on the descriptor, that it is
 * the file this log made or recovered (device and inode): through a directory swapped for
 * another, nothing is opened (the error the channel stops with). As the plain log judges an open
 * (open.ts judgeOpening): a file gone, or replaced (by another file, a symbolic link or a special
 * file), is a Corruption of the rest of the segment; another failure a system error (retried).
 */
export async function openForReading(log: DurableState, segment: DurableSegment): Promise<number> {
  if (!(await log.directory.intactAsync())) {
    throw (await log.directory.verifyAsync()) ?? ioError('opening a segment for reading', segment.file, new Error('the channel directory was replaced'));
  }
  let fd: number;
  try {
    fd = await fsAsync.open(log.fs, segment.file, READ_FLAGS);
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno === 'ENOENT') throw new Corruption(0, 'the segment file is gone', 'rest-of-segment');
    if (errno === 'ELOOP' || errno === 'ENXIO')
      throw new Corruption(0, 'the segment file was replaced by a symbolic link or a special file', 'rest-of-segment');
    throw err;
  }
  let stat: Stats;
  try {
    stat = await log.fds.track(fd, fsAsync.fstat(log.fs, fd));
  } catch (err) {
    log.fds.close(fd);
    throw err;
  }
  if (!stat.isFile() || stat.dev !== segment.dev || stat.ino !== segment.ino) {
    log.fds.close(fd);
    throw new Corruption(0, `the segment file was replaced (by ${stat.isFile() ? 'another file' : 'a file that is not a regular file'})`, 'rest-of-segment');
  }
  return fd;
}

/** The bytes [start, end) of the file open at `fd`, read on the thread pool; throws a Corruption when the file is shorter. */
export async function readBytes(log: DurableState, fd: number, start: number, end: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(end - start);
  let got = 0;
  while (got < buffer.length) {
    const n = await log.fds.track(fd, fsAsync.read(log.fs, fd, buffer, got, buffer.length - got, start + got));
    if (n === 0) throw new Corruption(start + got, 'the file is shorter than its blocks', 'rest-of-segment');
    got += n;
  }
  return buffer;
}
