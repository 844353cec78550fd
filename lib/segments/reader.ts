import type nodeFs from 'node:fs';
import { ioError } from '../errors.js';
import type { RecordCodec } from '../codec.js';
import { BlockReader, checkedBlock, decodeRecord, type ReadBlock } from './block-reader.js';
import { READ_FLAGS, closeQuietly, isSystemError, type SegmentFileSystem } from './io.js';
import type { Segment } from './ledger.js';
import { Corruption } from './results.js';

// The segment reader: a cursor over one segment at a time, oldest first. It opens the file (never
// through a symlink, never one that was swapped), checks its header and each block against the
// ledger, and decodes records one at a time. It throws a Corruption for what is wrong with the
// file and ERR_HOPPER_IO for a failed system call; it never writes, never removes a file, and
// never decides what corruption or a failure costs: the log does.

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
  private fd: number | undefined;
  /** The file of the segment being read was opened and checked (a segment read from memory is not, until a block is on disk). */
  private opened = false;
  private offset = 0;
  private current: Buffer = EMPTY;
  private pos = 0;
  private blockOffset = 0;
  private readonly blocks: BlockReader;

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly codec: RecordCodec,
    private readonly compression: string,
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

  /** Opens the file of the segment being read and checks it: see {@link open}. */
  private openFile(): void {
    const segment = this.segment!;
    this.opened = true;
    let fd: number;
    try {
      fd = this.fs.openSync(segment.file, READ_FLAGS);
    } catch (err) {
      const errno = (err as NodeJS.ErrnoException).code;
      // Gone, or a symlink put in its place: retrying will not bring the file back.
      if (errno === 'ENOENT' || errno === 'ELOOP' || errno === 'ENXIO') {
        throw new Corruption(
          0,
          errno === 'ENOENT' ? 'the segment file is gone' : 'the segment file was replaced by a symbolic link or a special file',
          'rest-of-segment',
        );
      }
      this.segment = undefined;
      this.opened = false;
      throw ioError('opening a segment for reading', segment.file, err);
    }
    this.fd = fd;
    this.blocks.reset(fd);
    let stat: nodeFs.Stats;
    try {
      stat = this.fs.fstatSync(fd);
    } catch (err) {
      this.close();
      throw ioError('opening a segment for reading', segment.file, err);
    }
    if (!stat.isFile() || stat.dev !== segment.dev || stat.ino !== segment.ino) {
      this.closeFile();
      throw new Corruption(0, `the segment file was replaced (by ${stat.isFile() ? 'another file' : 'a file that is not a regular file'})`, 'rest-of-segment');
    }
    const fileSize = stat.size;
    let header: Buffer;
    try {
      header = this.blocks.bytes(0, segment.header.length, segment.size);
    } catch (err) {
      // Only a failed system call is ERR_HOPPER_IO (retried); a bug is thrown as it is.
      if (err instanceof Corruption || !isSystemError(err)) throw err;
      this.close();
      throw ioError('reading a segment', segment.file, err);
    }
    if (!header.equals(segment.header)) {
      let at = 0;
      while (header[at] === segment.header[at]) at++;
      throw new Corruption(at, 'the header is not the one written (not an Avro header any more)', 'rest-of-segment');
    }
    // Our writes end at the last block; bytes past that in a sealed file were put there by someone else.
    if (segment.sealed && fileSize > segment.size) {
      throw new Corruption(segment.size, `${fileSize - segment.size} bytes follow the last block`, 'nothing');
    }
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
   * up with the writer reads them from memory), checked as a block read from the file is.
   */
  loadBlockFrom(bytes: Buffer): void {
    const segment = this.segment!;
    const blockOffset = this.offset;
    const blockEnd = segment.blockEnds[this.block]!;
    this.blockOffset = blockOffset;
    const read = checkedBlock(bytes, blockOffset, segment.sync, this.compression, {
      count: segment.blockCounts[this.block]!,
      checksum: segment.blockChecksums[this.block]!,
    });
    this.loaded(read, blockEnd);
  }

  private loaded(read: ReadBlock, blockEnd: number): void {
    this.current = read.data;
    this.pos = 0;
    this.left = read.frame.count;
    this.offset = blockEnd;
    this.block++;
  }

  /** The next record of the loaded block (the caller knows there is one: `left > 0`); throws a Corruption for one that does not decode. */
  next(): unknown {
    // `current` is a buffer read (or inflated) for this block and never written again: large
    // Buffer records can be views of it.
    const { value, offset } = decodeRecord(this.codec, this.current, this.pos, true);
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
    return lost;
  }

  /** Stops reading the segment (it is being removed): its file is closed, its read-ahead let go. */
  close(): void {
    this.closeFile();
    this.segment = undefined;
    this.blocks.reset(-1);
  }

  /** Closes the file being read, if any (the log is closing). */
  closeFile(): void {
    if (this.fd !== undefined) {
      closeQuietly(this.fs, this.fd);
      this.fd = undefined;
    }
    this.opened = false;
  }
}
