import { ioError } from '../errors.js';
import type { RecordCodec } from '../codec.js';
import { BlockReader, checkedBlock, decodeRecord, type ReadBlock } from './block-reader.js';
import { isSystemError, type Closer, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import type { Segment } from './ledger.js';
import { ReadAhead } from './read-ahead.js';
import { ReaderFile } from './reader-file.js';
import { Corruption } from './results.js';

// The segment reader: a cursor over one segment at a time, oldest first. It opens the file (open.ts:
// never through a symlink, never one that was swapped; on the thread pool unless the log writes
// through), checks its header and each block against the ledger, and decodes records one at a time. It throws a Corruption for what is wrong with the
// file and ERR_HOPPER_IO for a failed system call; it never writes, never removes a file, and
// never decides what corruption or a failure costs: the log does. Opening the file and keeping its
// descriptor is reader-file.ts's; which blocks are read ahead, into which buffers, and the reads in
// flight are read-ahead.ts's.

const EMPTY = Buffer.alloc(0);

export class SegmentReader {
  /** The segment being read. */
  segment: Segment | undefined;
  /** Index in segment.blockEnds of the next block to load. */
  block = 0;
  /** Records of the current block not read yet. */
  left = 0;
  /** Records taken from the segment being read (read, or lost to corruption). */
  fromSegment = 0;
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
  private pos = 0;
  private blockOffset = 0;
  private readonly blocks: BlockReader;
  /** The reads ahead (see {@link loadBlockAhead}), the read buffers, and the reads in flight on the thread pool. */
  private readonly ahead: ReadAhead;
  /** The file of the segment being read: opened, checked, closed. */
  private readonly file: ReaderFile;

  /** Bytes of the block being read and of the read-ahead. */
  get bufferBytes(): number {
    return this.current.length + this.blocks.bufferBytes + this.ahead.bufferBytes;
  }

  constructor(
    fs: SegmentFileSystem,
    private readonly codec: RecordCodec,
    private readonly compression: string,
    directory: SegmentDirectory,
    closer: Closer,
  ) {
    this.blocks = new BlockReader(fs);
    this.ahead = new ReadAhead(fs, codec, closer);
    this.file = new ReaderFile(fs, directory, closer, this.blocks, this.ahead, { closeFile: () => this.closeFile() });
  }

  /**
   * Starts reading `segment`: opens it and checks that it is still the file written, its header
   * untouched. Throws a Corruption when it is not (the segment stays the one being read, so the
   * loss can be counted), ERR_HOPPER_IO when a system call fails (nothing is being read then).
   */
  open(segment: Segment): void {
    this.begin(segment);
    this.file.openSync(segment);
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
    if (!this.file.opened) this.file.openSync(this.segment!);
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
      this.ahead.recycle(last);
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
   * Closes the file being read, if any (the log is closing; see ReaderFile.close), and lets go of
   * its read-ahead.
   */
  closeFile(): void {
    this.file.close();
    this.ahead.letGo();
    this.lastOfRead = undefined;
  }

  /** Resolves once no read runs in the background (and what waited for it is closed). */
  idle(): Promise<void> {
    return this.ahead.idle();
  }

  /**
   * {@link loadBlock} off the event loop: the next block comes from what was read ahead; 'wait'
   * when it is still being read (reads are started if none is: `landed` is called when the read
   * of the next block ends). Reads of the blocks after it that are on disk are kept under way (up
   * to READ_AHEAD_LIMIT bytes in READS_AHEAD reads, READ_BYTES a read, a block of large records
   * alone: readAlone in read-ahead.ts), and started before the block taken is checked and decoded, so that a drain finds the
   * next blocks read before it needs them. Throws as {@link loadBlock} does: a Corruption, or
   * ERR_HOPPER_IO for a read that failed (the next call reads again).
   */
  loadBlockAhead(landed: () => void): 'loaded' | 'wait' {
    if (!this.file.opened) {
      this.file.openAhead(this.segment!, landed);
      return 'wait';
    }
    if (!this.file.landedOpen()) return 'wait';
    const segment = this.segment!;
    const start = this.offset;
    const end = segment.blockEnds[this.block]!;
    const ahead = this.ahead.find(segment, start, end);
    if (ahead === undefined) {
      this.ahead.schedule(landed, this.file.fd, segment, start, this.block);
      return 'wait';
    }
    if (ahead.state === 'reading') return 'wait';
    if (ahead.state === 'failed') {
      this.ahead.drop();
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
      this.ahead.shift();
      this.ahead.schedule(landed, this.file.fd, segment, end, this.block + 1);
      this.lastOfRead = ahead.reused;
    }
    this.loadChecked(ahead.data.subarray(start - ahead.start, end - ahead.start), true, ahead.reused);
    return 'loaded';
  }
}
