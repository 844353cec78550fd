import type { RecordCodec } from '../codec.js';
import { BY_REFERENCE_BYTES } from '../record-codec.js';
import { READ_ALONE_BYTES } from './block-reader.js';
import type { Closer, SegmentFileSystem } from './io.js';
import { readFully } from './open.js';
import { Ledger, type Segment } from './ledger.js';

// Read-ahead for the segment reader: which blocks on disk are read next, in reads of several
// blocks (a block of large records alone) kept under way on libuv's thread pool; the read buffers
// read into again once their blocks are decoded; the reads in flight, and the descriptors to close
// once they are done. It reads and never judges what it read: the reader checks every block.

/**
 * Bytes read ahead at most, in reads under way or done and not yet taken (a large block is read
 * even when it alone is more). Several reads are under way at once, and the next ones start before
 * a block is checked, so that the event loop does not wait for each in turn: one read at a time,
 * started after the check, left a drain of 64 KiB records idle for half its time.
 */
const READ_AHEAD_LIMIT = 2 * 1024 * 1024;
/** Reads under way at most (libuv's thread pool has four threads, shared with writes and removals). */
const READS_AHEAD = 2;
/**
 * Bytes of one read ahead, several blocks at once. A read's end is seen only when the event loop
 * turns, and the drain stops and waits for that turn whenever the next block is not seen read yet:
 * reads of one 64 KiB block each stopped it about twice a block (1 MiB reads: 7% faster drains).
 */
const READ_BYTES = 1024 * 1024;

/**
 * True for a block read into a buffer of its own: one that may hold Buffer records the codec gives
 * back as views of the bytes read (see decodeBytesView in envelope-codec.ts: a record of at least
 * BY_REFERENCE_BYTES, a fifth of its buffer or more). Only a schemaless codec makes views; in a
 * block of small records (fewer bytes per record than BY_REFERENCE_BYTES) they are rare, and a
 * record that is not a view is a copy: sharing a read with other blocks is always safe.
 */
function readAlone(views: boolean, bytes: number, count: number): boolean {
  return views && bytes >= READ_ALONE_BYTES && bytes >= count * BY_REFERENCE_BYTES;
}

/**
 * Blocks being read ahead, or read: [start, end) of `segment`, into `data`: a buffer of its own,
 * never written again, or (`reused`) the front of a read buffer that is read into again once its
 * blocks are decoded.
 */
export interface Ahead {
  segment: Segment;
  start: number;
  end: number;
  /** Index in segment.blockEnds of the first block after `end`. */
  endBlock: number;
  state: 'reading' | 'done' | 'failed';
  data: Buffer;
  /** The read buffer `data` is the front of, read into again once the last block of this read is decoded. */
  reused: Buffer | undefined;
  /** Bytes read: fewer than end - start when the file is shorter. */
  got: number;
  error: unknown;
}

export class ReadAhead {
  /** The reads ahead, in file order, each starting where the one before ends (see SegmentReader.loadBlockAhead). */
  private aheads: Ahead[] = [];
  /** Bytes of the buffers in `aheads`. */
  private aheadBytes = 0;
  /** Read buffers (READ_BYTES each) free to read into again: fewer fresh buffers for the kernel to fault in and the collector to free. */
  private spare: Buffer[] = [];
  /** Reads under way on libuv's thread pool, and descriptors to close once they are done. */
  private readsInFlight = new Set<Promise<void>>();
  private closeWhenRead: number[] = [];

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly codec: RecordCodec,
    private readonly closer: Closer,
  ) {}

  /** Bytes of the reads ahead and of the read buffers kept free. */
  get bufferBytes(): number {
    return this.aheadBytes + this.spare.length * READ_BYTES;
  }

  /**
   * The first read ahead when it holds [start, end) of `segment`, after letting go of reads of
   * blocks before `start`; undefined, every read let go, when it does not.
   */
  find(segment: Segment, start: number, end: number): Ahead | undefined {
    const aheads = this.aheads;
    let ahead = aheads[0];
    // Reads of blocks stepped over (damage skipped) are let go.
    while (ahead !== undefined && ahead.segment === segment && ahead.end <= start) {
      this.shift();
      ahead = aheads[0];
    }
    if (ahead === undefined || ahead.segment !== segment || ahead.start > start || end > ahead.end) {
      this.drop();
      return undefined;
    }
    return ahead;
  }

  /** Lets go of the first read ahead (its last block is taken). */
  shift(): void {
    const ahead = this.aheads.shift()!;
    this.aheadBytes -= (ahead.reused ?? ahead.data).length;
  }

  /** Lets go of every read ahead (reads under way still land, unseen). */
  drop(): void {
    this.aheads = [];
    this.aheadBytes = 0;
  }

  /** Lets go of the reads ahead and of the read buffers kept free (the file being read is closed). */
  letGo(): void {
    this.drop();
    this.spare = [];
  }

  /** Every block of the read `buffer` was the front of is decoded (and none is a view of it): it may be read into again. */
  recycle(buffer: Buffer): void {
    // One kept is enough: the next read takes it before another is freed.
    if (this.spare.length === 0) this.spare.push(buffer);
  }

  /**
   * Closes `fd` now, or when the reads under way end if any is: closed now, its number could be
   * reused before the read lands.
   */
  closeWhenIdle(fd: number): void {
    if (this.readsInFlight.size > 0) this.closeWhenRead.push(fd);
    else this.closer.close(fd);
  }

  /** Resolves once no read runs in the background (and what waited for it is closed). */
  async idle(): Promise<void> {
    while (this.readsInFlight.size > 0) await Promise.all(this.readsInFlight);
  }

  /**
   * Starts reading the next blocks of `segment` (open as `fd`) that are on disk, after the reads
   * already under way (or from `offset`, block `block`, when there are none), up to
   * READ_AHEAD_LIMIT bytes in READS_AHEAD reads. `landed` is called when the first read ends.
   */
  schedule(landed: () => void, fd: number | undefined, segment: Segment | undefined, offset: number, block: number): void {
    if (fd === undefined || segment === undefined) return;
    const aheads = this.aheads;
    const last = aheads[aheads.length - 1];
    let next = last === undefined ? block : last.endBlock;
    let start = last === undefined ? offset : last.end;
    const blockEnds = segment.blockEnds;
    const views = this.codec.largeRecord !== undefined;
    while (aheads.length < READS_AHEAD && next < blockEnds.length && (aheads.length === 0 || this.aheadBytes < READ_AHEAD_LIMIT)) {
      let end = start;
      let i = next;
      let alone = false;
      for (; i < blockEnds.length; i++) {
        const blockEnd = blockEnds[i]!;
        // Only blocks on disk: one still waiting is read from memory when its turn comes.
        if (Ledger.pendingChunk(segment, end, blockEnd) !== undefined) break;
        const large = readAlone(views, blockEnd - end, segment.blockCounts[i]!);
        // A block of large records is read alone, into a buffer of its size (they become views of it).
        if (end > start && (large || blockEnd - start > READ_BYTES)) break;
        end = blockEnd;
        if (large) {
          alone = true;
          i++;
          break;
        }
      }
      if (end === start) return;
      this.startRead(landed, fd, segment, start, end, i, !alone);
      start = end;
      next = i;
    }
  }

  /** `reuse`: the read may go into a read buffer that is read into again (its blocks' records are then copies). */
  private startRead(landed: () => void, fd: number, segment: Segment, start: number, end: number, endBlock: number, reuse: boolean): void {
    const length = end - start;
    // A small read (a segment's last blocks) takes a read buffer only when one is free.
    const reused = reuse && length <= READ_BYTES ? (this.spare.pop() ?? (length >= READ_BYTES / 4 ? Buffer.allocUnsafe(READ_BYTES) : undefined)) : undefined;
    const data = reused === undefined ? Buffer.allocUnsafe(length) : reused.subarray(0, length);
    const ahead: Ahead = { segment, start, end, endBlock, state: 'reading', data, reused, got: 0, error: undefined };
    this.aheads.push(ahead);
    this.aheadBytes += (reused ?? data).length;
    const reading = readFully(this.fs, fd, ahead.data, start).then(
      (got) => {
        ahead.got = got;
        ahead.state = 'done';
      },
      (err: unknown) => {
        ahead.error = err;
        ahead.state = 'failed';
      },
    );
    this.track(reading, () => {
      // The reader waits only for the first read.
      if (this.aheads[0] === ahead) landed();
    });
  }

  /** `task` runs on the thread pool (it never rejects); `then` runs when it ends, after descriptors let go meanwhile are closed. */
  track(task: Promise<void>, then: () => void): void {
    this.readsInFlight.add(task);
    void task.then(() => {
      this.readsInFlight.delete(task);
      if (this.readsInFlight.size === 0) for (const closing of this.closeWhenRead.splice(0)) this.closer.close(closing);
      then();
    });
  }
}
