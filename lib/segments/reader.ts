import { ioError } from '../errors.js';
import type { RecordCodec } from '../codec.js';
import { BY_REFERENCE_BYTES } from '../record-codec.js';
import { BlockReader, READ_ALONE_BYTES, checkedBlock, decodeRecord, type ReadBlock } from './block-reader.js';
import { isSystemError, type Closer, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import { judgeOpening, newOpening, openAsync, openSync, readFully, type Opening } from './open.js';
import { Ledger, type Segment } from './ledger.js';
import { Corruption } from './results.js';

// The segment reader: a cursor over one segment at a time, oldest first. It opens the file (open.ts:
// never through a symlink, never one that was swapped; on the thread pool unless the log writes
// through), checks its header and each block against the ledger, and decodes records one at a time. It throws a Corruption for what is wrong with the
// file and ERR_HOPPER_IO for a failed system call; it never writes, never removes a file, and
// never decides what corruption or a failure costs: the log does.

const EMPTY = Buffer.alloc(0);

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
interface Ahead {
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

export class SegmentReader {
  /** The segment being read. */
  segment: Segment | undefined;
  /** Index in segment.blockEnds of the next block to load. */
  block = 0;
  /** Records of the current block not read yet. */
  left = 0;
  /** Records taken from the segment being read (read, or lost to corruption). */
  fromSegment = 0;
  private fd: number | undefined;
  /** The file of the segment being read was opened and checked (a segment read from memory is not, until a block is on disk). */
  private opened = false;
  private offset = 0;
  private current: Buffer = EMPTY;
  /**
   * False while `current` lies in a read buffer that will be read into again: its records are
   * decoded as copies, never as views of it (see RecordCodec.decode), so that no record delivered
   * shares memory that a later read writes over.
   */
  private views = true;
  /** The read buffer the block being decoded is the last of: free to read into again once that block ends. */
  private lastOfRead: Buffer | undefined;
  /** Read buffers (READ_BYTES each) free to read into again: fewer fresh buffers for the kernel to fault in and the collector to free. */
  private spare: Buffer[] = [];
  private pos = 0;
  private blockOffset = 0;
  private readonly blocks: BlockReader;
  /** The reads ahead, in file order, each starting where the one before ends (see {@link loadBlockAhead}). */
  private aheads: Ahead[] = [];
  /** Bytes of the buffers in `aheads`. */
  private aheadBytes = 0;
  /** Reads under way on libuv's thread pool, and descriptors to close once they are done. */
  private readsInFlight = new Set<Promise<void>>();
  private closeWhenRead: number[] = [];
  /** The file of the segment being read is being opened in the background (see {@link loadBlockAhead}). */
  private opening: Opening | undefined;

  /** Bytes of the block being read and of the read-ahead. */
  get bufferBytes(): number {
    return this.current.length + this.blocks.bufferBytes + this.aheadBytes + this.spare.length * READ_BYTES;
  }

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly codec: RecordCodec,
    private readonly compression: string,
    private readonly directory: SegmentDirectory,
    private readonly closer: Closer,
  ) {
    this.blocks = new BlockReader(fs);
  }

  /**
   * Starts reading `segment`: opens it and checks that it is still the file written, its header
   * untouched. Throws a Corruption when it is not (the segment stays the one being read, so the
   * loss can be counted), ERR_HOPPER_IO when a system call fails (nothing is being read then).
   */
  open(segment: Segment): void {
    this.begin(segment);
    this.openFile();
  }

  /**
   * Starts reading `segment` without opening its file: its first blocks are still waiting for the
   * disk, and are read from memory ({@link loadBlockFrom}); the file is opened and checked when a
   * block is read from it.
   */
  begin(segment: Segment): void {
    this.closeFile();
    this.blocks.reset(-1);
    this.segment = segment;
    this.block = 0;
    this.fromSegment = 0;
    this.offset = segment.header.length;
    this.left = 0;
  }

  /** Opens the file of the segment being read and checks it, synchronously: see {@link open}. */
  private openFile(): void {
    const segment = this.segment!;
    this.opened = true;
    const opening = newOpening(segment, 'done');
    openSync(this.fs, this.directory, opening);
    this.check(opening, () => this.blocks.bytes(0, segment.header.length, segment.header.length));
  }

  /**
   * Opens the file of the segment being read on the thread pool (open.ts). {@link check} runs on
   * what it found once it is done; `landed` is called then.
   */
  private openAhead(landed: () => void): void {
    this.opened = true;
    const opening = newOpening(this.segment!, 'opening');
    this.opening = opening;
    const task = openAsync(this.fs, this.directory, opening, () => this.opening === opening).catch((err: unknown) => {
      // A bug: thrown on the event loop by check(), as a failed synchronous open would be.
      opening.failed = { step: 'directory', error: err };
    });
    this.track(task, () => {
      opening.state = 'done';
      // Let go meanwhile (the segment was removed, or the log closed): its descriptor goes too.
      if (this.opening !== opening) {
        if (opening.fd !== undefined) this.closer.close(opening.fd);
        return;
      }
      landed();
    });
  }

  /**
   * Keeps the descriptor an open gave, or throws what it found wrong (see judgeOpening): a
   * Corruption, or ERR_HOPPER_IO. The segment stays the one being read, where it was: a failed
   * open is tried again from there (its first blocks may have come from memory: reading it again
   * from its start would deliver them twice).
   */
  private check(opening: Opening, header: () => Buffer = () => opening.header!): void {
    if (opening.fd !== undefined) {
      this.fd = opening.fd;
      this.blocks.reset(opening.fd);
    }
    const failure = judgeOpening(opening, header);
    if (failure === undefined) return;
    if (failure.descriptor === 'close') this.closeFile();
    // Not opened: the next call opens again.
    else if (this.fd === undefined) this.opened = false;
    throw failure.error;
  }

  /** True when the segment being read has a block not loaded yet. */
  hasBlock(): boolean {
    return this.block < this.segment!.blockEnds.length;
  }

  /** Where the next block starts in the segment. */
  get blockStart(): number {
    return this.offset;
  }

  /** Reads and checks the next block of the segment (the caller knows there is one: {@link hasBlock}). */
  loadBlock(): void {
    if (!this.opened) this.openFile();
    const segment = this.segment!;
    const blockOffset = this.offset;
    const blockEnd = segment.blockEnds[this.block]!;
    this.blockOffset = blockOffset;
    let read: ReadBlock;
    try {
      read = this.blocks.block(blockOffset, blockEnd - blockOffset, segment.size, segment.sync, this.compression, {
        count: segment.blockCounts[this.block]!,
        checksum: segment.blockChecksums[this.block]!,
      });
    } catch (err) {
      // Only a failed system call is ERR_HOPPER_IO (retried); a bug is thrown as it is.
      if (err instanceof Corruption || !isSystemError(err)) throw err;
      throw ioError('reading a segment', segment.file, err);
    }
    this.loaded(read, blockEnd);
  }

  /**
   * Takes the next block from `bytes`, its bytes still waiting for the disk (a reader that caught
   * up with the writer reads them from memory). Its framing is checked as a block read from the
   * file is; its checksum is not: the bytes never left memory, and nothing writes to them again.
   */
  loadBlockFrom(bytes: Buffer): void {
    this.loadChecked(bytes, false, undefined);
  }

  /** Takes the next block from `bytes`, checked: a buffer of its own, never written again, or a part of `reused`. */
  private loadChecked(bytes: Buffer, checksum: boolean, reused: Buffer | undefined): void {
    const segment = this.segment!;
    const blockOffset = this.offset;
    const blockEnd = segment.blockEnds[this.block]!;
    this.blockOffset = blockOffset;
    const read = checkedBlock(bytes, blockOffset, segment.sync, this.compression, {
      count: segment.blockCounts[this.block]!,
      checksum: checksum ? segment.blockChecksums[this.block]! : undefined,
    });
    this.loaded(read, blockEnd);
    // An inflated block is a buffer of its own.
    this.views = reused === undefined || read.data.buffer !== reused.buffer;
  }

  private loaded(read: ReadBlock, blockEnd: number): void {
    this.current = read.data;
    this.views = true;
    this.pos = 0;
    this.left = read.frame.count;
    this.offset = blockEnd;
    this.block++;
  }

  /** The next record of the loaded block (the caller knows there is one: `left > 0`); throws a Corruption for one that does not decode. */
  next(): unknown {
    // `current` is a buffer read (or inflated) for this block and never written again, a new
    // object for each block: large Buffer records can be views of it, unless it lies in a read
    // buffer read into again (`views` false): then they are copies.
    const { value, offset } = decodeRecord(this.codec, this.current, this.pos, true, this.views);
    if (offset < 0 || offset > this.current.length) {
      throw new Corruption(this.blockOffset, 'a record does not decode with the segment schema', 'rest-of-block');
    }
    // A readable stream takes null as its end: no decoded value may pass for it.
    if (value === null || value === undefined) {
      throw new Corruption(this.blockOffset, `a record decodes as ${value}, which no record can be`, 'rest-of-block');
    }
    this.pos = offset;
    this.left--;
    this.fromSegment++;
    return value;
  }

  /** After the last record of a block: the block must have held nothing more; its memory is let go. */
  endBlock(): void {
    if (this.pos !== this.current.length) {
      throw new Corruption(this.blockOffset, 'the block holds more bytes than its record count accounts for', 'rest-of-block');
    }
    // A block read alone (a large one) is let go with its last record; records that are views of
    // it keep it alive as long as they live.
    this.current = EMPTY;
    this.blocks.trim();
    // Every record of the read is decoded (and none is a view of it): it may be read into again.
    const last = this.lastOfRead;
    if (last !== undefined) {
      this.lastOfRead = undefined;
      // One kept is enough: the next read takes it before another is freed.
      if (this.spare.length === 0) this.spare.push(last);
    }
  }

  /**
   * Steps over what `found` says is damaged, using the block index kept while writing; returns
   * how many records that loses.
   */
  skip(found: Corruption): number {
    const segment = this.segment!;
    let lost = 0;
    switch (found.loss) {
      case 'nothing':
        break;
      case 'block':
        lost = segment.blockCounts[this.block]!;
        this.offset = segment.blockEnds[this.block]!;
        this.block++;
        break;
      case 'rest-of-block':
        lost = this.left;
        break;
      case 'rest-of-segment':
        lost = segment.records - this.fromSegment;
        this.block = segment.blockEnds.length;
        break;
    }
    this.left = 0;
    this.fromSegment += lost;
    // Not read into again: what was decoded of it is not known to be done with it.
    this.lastOfRead = undefined;
    return lost;
  }

  /** Stops reading the segment (it is being removed): its file is closed, its read-ahead let go. */
  close(): void {
    this.closeFile();
    this.segment = undefined;
    this.blocks.reset(-1);
  }

  /**
   * Closes the file being read, if any (the log is closing). A descriptor a read ahead is using is
   * closed when that read ends: closed now, its number could be reused before the read lands.
   */
  closeFile(): void {
    if (this.fd !== undefined) {
      if (this.readsInFlight.size > 0) this.closeWhenRead.push(this.fd);
      else this.closer.close(this.fd);
      this.fd = undefined;
    }
    this.opened = false;
    this.dropAheads();
    this.lastOfRead = undefined;
    this.spare = [];
    // An open under way closes what it opened when it lands.
    this.opening = undefined;
  }

  private dropAheads(): void {
    this.aheads = [];
    this.aheadBytes = 0;
  }

  /** Resolves once no read runs in the background (and what waited for it is closed). */
  async idle(): Promise<void> {
    while (this.readsInFlight.size > 0) await Promise.all(this.readsInFlight);
  }

  /**
   * {@link loadBlock} off the event loop: the next block comes from what was read ahead; 'wait'
   * when it is still being read (reads are started if none is: `landed` is called when the read
   * of the next block ends). Reads of the blocks after it that are on disk are kept under way (up
   * to READ_AHEAD_LIMIT bytes in READS_AHEAD reads, READ_BYTES a read, a block of large records
   * alone: {@link readAlone}), and started before the block taken is checked and decoded, so that a drain finds the
   * next blocks read before it needs them. Throws as {@link loadBlock} does: a Corruption, or
   * ERR_HOPPER_IO for a read that failed (the next call reads again).
   */
  loadBlockAhead(landed: () => void): 'loaded' | 'wait' {
    if (!this.opened) {
      this.openAhead(landed);
      return 'wait';
    }
    const opening = this.opening;
    if (opening !== undefined) {
      if (opening.state === 'opening') return 'wait';
      this.opening = undefined;
      this.check(opening);
    }
    const segment = this.segment!;
    const start = this.offset;
    const end = segment.blockEnds[this.block]!;
    const aheads = this.aheads;
    let ahead = aheads[0];
    // Reads of blocks stepped over (damage skipped) are let go.
    while (ahead !== undefined && ahead.segment === segment && ahead.end <= start) {
      this.shiftAhead();
      ahead = aheads[0];
    }
    if (ahead === undefined || ahead.segment !== segment || ahead.start > start || end > ahead.end) {
      this.dropAheads();
      this.readAhead(landed, start, this.block);
      return 'wait';
    }
    if (ahead.state === 'reading') return 'wait';
    if (ahead.state === 'failed') {
      this.dropAheads();
      const err = ahead.error;
      if (!isSystemError(err)) throw err;
      throw ioError('reading a segment', segment.file, err);
    }
    if (ahead.got < end - ahead.start) {
      throw new Corruption(ahead.start + ahead.got, 'the file is shorter than what was written to it', 'rest-of-segment');
    }
    this.lastOfRead = undefined;
    if (end >= ahead.end) {
      // The last block of this read: the next reads start before this block is checked; its
      // buffer is read into again once this block is decoded.
      this.shiftAhead();
      this.readAhead(landed, end, this.block + 1);
      this.lastOfRead = ahead.reused;
    }
    this.loadChecked(ahead.data.subarray(start - ahead.start, end - ahead.start), true, ahead.reused);
    return 'loaded';
  }

  private shiftAhead(): void {
    const ahead = this.aheads.shift()!;
    this.aheadBytes -= (ahead.reused ?? ahead.data).length;
  }

  /**
   * Starts reading the next blocks that are on disk, after the reads already under way (or from
   * `offset`, block `block`, when there are none), up to READ_AHEAD_LIMIT bytes in READS_AHEAD reads.
   */
  private readAhead(landed: () => void, offset: number, block: number): void {
    const segment = this.segment;
    if (this.fd === undefined || segment === undefined) return;
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
      this.startRead(landed, segment, start, end, i, !alone);
      start = end;
      next = i;
    }
  }

  /** `reuse`: the read may go into a read buffer that is read into again (its blocks' records are then copies). */
  private startRead(landed: () => void, segment: Segment, start: number, end: number, endBlock: number, reuse: boolean): void {
    const length = end - start;
    // A small read (a segment's last blocks) takes a read buffer only when one is free.
    const reused = reuse && length <= READ_BYTES ? (this.spare.pop() ?? (length >= READ_BYTES / 4 ? Buffer.allocUnsafe(READ_BYTES) : undefined)) : undefined;
    const data = reused === undefined ? Buffer.allocUnsafe(length) : reused.subarray(0, length);
    const ahead: Ahead = { segment, start, end, endBlock, state: 'reading', data, reused, got: 0, error: undefined };
    this.aheads.push(ahead);
    this.aheadBytes += (reused ?? data).length;
    const reading = readFully(this.fs, this.fd!, ahead.data, start).then(
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
  private track(task: Promise<void>, then: () => void): void {
    this.readsInFlight.add(task);
    void task.then(() => {
      this.readsInFlight.delete(task);
      if (this.readsInFlight.size === 0) for (const closing of this.closeWhenRead.splice(0)) this.closer.close(closing);
      then();
    });
  }
}
