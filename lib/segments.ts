import crypto from 'node:crypto';
import nodeFs from 'node:fs';
import path from 'node:path';
import type { RecordCodec } from './codec.js';
import { HopperError, ioError } from './errors.js';
import {
  BLOCK_FRAMING_BYTES, BLOCK_HEADER_MAX_BYTES, OWNER_KEY, blockData, checkSync, compress, compressionSlack,
  decodeHeader, encodeBlockHeader, encodeHeader, isProblem, parseBlockHeader, type FrameProblem,
} from './ocf.js';
import type { SegmentCodec } from './options.js';

/** The file operations the segment log uses: node:fs by default, a seam for fault injection. */
export type SegmentFileSystem = Pick<
  typeof nodeFs,
  'openSync' | 'closeSync' | 'writevSync' | 'readSync' | 'unlinkSync' | 'readdirSync'
>;

export interface SegmentLogOptions {
  maxSegmentBytes: number;
  maxSegments: number;
  maxDiskBytes: number;
  codec: SegmentCodec;
  /** Channel name, written into each segment's metadata. */
  channel: string;
}

export interface SegmentEvent {
  action: 'sealed' | 'removed';
  file: string;
  bytes: number;
  records: number;
}

/** What an append did: stored the record, or found a disk cap in the way ('too-large': even an empty log cannot take it). */
export type AppendResult = 'ok' | 'full' | 'too-large';

const SEGMENT_NAME = /^(\d{12})\.avro$/;
const BLOCK_TARGET_BYTES = 64 * 1024;
const READ_AHEAD_BYTES = 256 * 1024;

export function segmentFileName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.avro`;
}

interface Segment {
  seq: number;
  file: string;
  sync: Buffer;
  /** Bytes written to the file so far (header and whole blocks only). */
  size: number;
  /** Records written to the file so far. */
  records: number;
  sealed: boolean;
  writeFd: number | undefined;
  /** Set once removal was attempted and failed: the file still counts until a retry succeeds. */
  removalFailed: boolean;
}

/**
 * The segment log: an append-only sequence of Avro Object Container Files in the channel
 * directory, read front to back and deleted once read. Records are encoded into a block in
 * memory; a block is written with one `writev` when it reaches its target size or when the
 * event loop turns. The reader reads whole blocks only, checks their framing, and decodes
 * records one at a time. Knows nothing of memory placements or streams.
 */
export class SegmentLog {
  private readonly dir: string;
  private readonly codec: RecordCodec;
  private readonly options: SegmentLogOptions;
  private readonly fs: SegmentFileSystem;
  private readonly onSegment: (event: SegmentEvent) => void;
  private readonly onError: (err: Error) => void;
  private readonly schemaJson: Buffer;
  private readonly headerBytes: number;

  /** Segment files that exist, oldest first; the last one may be the active (unsealed) one. */
  private readonly segments: Segment[] = [];
  private nextSeq = 1;
  private fileBytes = 0;

  private block = Buffer.allocUnsafe(BLOCK_TARGET_BYTES);
  private blockPos = 0;
  private blockRecords = 0;
  private flushScheduled = false;

  private readFd: number | undefined;
  private readSegment: Segment | undefined;
  private readOffset = 0;
  private readAhead: Buffer = Buffer.alloc(0);
  private readAheadStart = 0;
  private current: Buffer = Buffer.alloc(0);
  private currentPos = 0;
  private currentLeft = 0;
  private currentBlockOffset = 0;

  /** Records appended and not yet read (or dropped), pending block included. */
  records = 0;
  /** Records ever appended. */
  appended = 0;
  /** Records the reader has taken from the segment it is reading. */
  private readFromSegment = 0;
  private closed = false;

  constructor(
    dir: string,
    codec: RecordCodec,
    options: SegmentLogOptions,
    hooks: { onSegment: (event: SegmentEvent) => void; onError: (err: Error) => void },
    fileSystem: SegmentFileSystem = nodeFs,
  ) {
    this.dir = dir;
    this.codec = codec;
    this.options = options;
    this.fs = fileSystem;
    this.onSegment = hooks.onSegment;
    this.onError = hooks.onError;
    this.schemaJson = Buffer.from(JSON.stringify(codec.type.schema({ exportAttrs: true })));
    this.headerBytes = this.encodeHeader(Buffer.alloc(16)).length;
    this.removeStaleSegments();
  }

  /** Segment files that exist now. */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Bytes of all segment files plus the block being filled. */
  get bytes(): number {
    if (this.blockRecords === 0) return this.fileBytes;
    return this.fileBytes + this.blockPos + BLOCK_FRAMING_BYTES + (this.activeSegment() === undefined ? this.headerBytes : 0);
  }

  /**
   * Encodes a record into the pending block, unless that would pass `maxDiskBytes` or need a
   * segment beyond `maxSegments`. Nothing is written when the answer is not 'ok'.
   */
  append(record: unknown): AppendResult {
    const start = this.blockPos;
    let end = this.codec.encode(record, this.block, start);
    if (end < 0) {
      this.growBlock(start - end);
      end = this.codec.encode(record, this.block, start);
    }
    const { codec } = this.options;
    const alone = this.headerBytes + (end - start) + BLOCK_FRAMING_BYTES + compressionSlack(end - start, codec);
    if (alone > this.options.maxDiskBytes) return 'too-large';
    // A pending block with no active segment will open one when it is written: count its header.
    const needsHeader = this.activeSegment() === undefined;
    if (needsHeader && this.blockRecords === 0 && this.segments.length >= this.options.maxSegments) return 'full';
    const after = this.fileBytes + (needsHeader ? this.headerBytes : 0) + end + BLOCK_FRAMING_BYTES + compressionSlack(end, codec);
    if (after > this.options.maxDiskBytes) return 'full';

    this.blockPos = end;
    this.blockRecords++;
    this.records++;
    this.appended++;
    const active = this.activeSegment();
    const room = this.options.maxSegmentBytes - (active ? active.size : this.headerBytes);
    if (this.blockPos >= BLOCK_TARGET_BYTES || this.blockPos >= room) {
      this.flush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushOnTurn);
    }
    return 'ok';
  }

  /** Writes the pending block, if any, to the active segment (opening one if needed). */
  flush(): void {
    if (this.blockRecords === 0 || this.closed) return;
    let segment = this.activeSegment();
    const parts: Buffer[] = [];
    if (segment === undefined) {
      segment = this.openSegment();
      parts.push(this.encodeHeader(segment.sync));
    }
    const data = compress(this.block.subarray(0, this.blockPos), this.options.codec);
    parts.push(encodeBlockHeader(this.blockRecords, data.length), data, segment.sync);
    const length = parts.reduce((sum, part) => sum + part.length, 0);
    this.writeAll(segment, parts, length);
    segment.size += length;
    segment.records += this.blockRecords;
    this.fileBytes += length;
    this.blockPos = 0;
    this.blockRecords = 0;
    if (segment.size >= this.options.maxSegmentBytes) this.seal(segment);
  }

  /** Reads the next record. The caller knows one exists (`records > 0`). */
  next(): unknown {
    if (this.currentLeft === 0) this.loadBlock();
    const { value, offset } = this.codec.decode(this.current, this.currentPos);
    if (offset < 0 || offset > this.current.length) {
      throw this.corrupt(this.currentBlockOffset, 'a record does not decode with the segment schema');
    }
    this.currentPos = offset;
    this.currentLeft--;
    this.records--;
    this.readFromSegment++;
    if (this.currentLeft === 0) {
      if (this.currentPos !== this.current.length) {
        throw this.corrupt(this.currentBlockOffset, 'the block holds more bytes than its record count accounts for');
      }
      this.afterBlock();
    }
    return value;
  }

  /**
   * Deletes the oldest sealed segment the reader is not reading, to make room (the `'drop-oldest'`
   * policy). Returns where its records stood among the records still in the log (`offset`
   * records come before them), or undefined when no segment can go.
   */
  dropOldest(): { offset: number; count: number; file: string } | undefined {
    const victim = this.segments.find((segment) => segment.sealed && !segment.removalFailed && segment !== this.readSegment);
    if (victim === undefined) return undefined;
    // Only the segment being read can come before the victim with records still unread.
    const reading = this.readSegment;
    const offset = reading !== undefined && this.segments.indexOf(reading) < this.segments.indexOf(victim)
      ? reading.records - this.readFromSegment
      : 0;
    try {
      this.fs.unlinkSync(victim.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined;
    }
    this.records -= victim.records;
    this.forget(victim);
    return { offset, count: victim.records, file: victim.file };
  }

  /** Closes every file and removes every segment this log created. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReadFd();
    for (const segment of this.segments.splice(0)) {
      if (segment.writeFd !== undefined) this.closeQuietly(segment.writeFd);
      try {
        this.fs.unlinkSync(segment.file);
      } catch {
        // Gone already, or the disk refuses: nothing more to do at close.
      }
    }
    this.fileBytes = 0;
    this.blockPos = 0;
    this.blockRecords = 0;
    this.records = 0;
  }

  private flushOnTurn = (): void => {
    this.flushScheduled = false;
    try {
      this.flush();
    } catch (err) {
      this.onError(err as Error);
    }
  };

  private activeSegment(): Segment | undefined {
    const last = this.segments[this.segments.length - 1];
    return last !== undefined && !last.sealed ? last : undefined;
  }

  private growBlock(needed: number): void {
    let size = this.block.length * 2;
    while (size < this.blockPos + needed) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.block.copy(grown, 0, 0, this.blockPos);
    this.block = grown;
  }

  private encodeHeader(sync: Buffer): Buffer {
    return encodeHeader(this.schemaJson, this.options.codec, sync, { [OWNER_KEY]: this.options.channel });
  }

  private openSegment(): Segment {
    for (;;) {
      const seq = this.nextSeq++;
      const file = path.join(this.dir, segmentFileName(seq));
      let fd: number;
      try {
        // 'wx': never open, let alone overwrite, a file that is already there.
        fd = this.fs.openSync(file, 'wx');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw ioError('creating a segment', file, err);
      }
      const segment: Segment = {
        seq, file, sync: crypto.randomBytes(16), size: 0, records: 0, sealed: false, writeFd: fd, removalFailed: false,
      };
      this.segments.push(segment);
      return segment;
    }
  }

  private writeAll(segment: Segment, parts: Buffer[], length: number): void {
    let written = 0;
    while (written < length) {
      let n: number;
      try {
        n = this.fs.writevSync(segment.writeFd!, parts, segment.size + written);
      } catch (err) {
        throw ioError('writing a block', segment.file, err);
      }
      written += n;
      if (written < length) parts = remainder(parts, n);
    }
  }

  private seal(segment: Segment): void {
    segment.sealed = true;
    if (segment.writeFd !== undefined) {
      this.closeQuietly(segment.writeFd);
      segment.writeFd = undefined;
    }
    this.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records });
  }

  private loadBlock(): void {
    let segment = this.readSegment;
    if (segment === undefined) segment = this.startReading();
    while (this.readOffset >= segment.size) {
      if (!segment.sealed) {
        if (this.blockRecords === 0) throw new Error('hopper-streams: the segment log was asked for a record it does not hold');
        this.flush();
        continue;
      }
      this.removeSegment(segment);
      segment = this.startReading();
    }
    const blockOffset = this.readOffset;
    this.currentBlockOffset = blockOffset;
    const available = segment.size - blockOffset;
    const head = this.readBytes(segment, blockOffset, Math.min(BLOCK_HEADER_MAX_BYTES, available));
    const frame = parseBlockHeader(head, 0, available);
    if (isProblem(frame)) throw this.corrupt(blockOffset + frame.offset, frame.problem);
    const bytes = this.readBytes(segment, blockOffset, frame.end);
    const badSync = checkSync(bytes, frame, segment.sync);
    if (badSync) throw this.corrupt(blockOffset + badSync.offset, badSync.problem);
    try {
      this.current = blockData(bytes, frame, this.options.codec);
    } catch (err) {
      const problem = err as FrameProblem;
      throw this.corrupt(blockOffset + problem.offset, problem.problem);
    }
    this.currentPos = 0;
    this.currentLeft = frame.count;
    this.readOffset = blockOffset + frame.end;
  }

  /** After the last record of a block: free the segment as soon as it has been read through. */
  private afterBlock(): void {
    const segment = this.readSegment!;
    if (this.readOffset < segment.size) return;
    if (segment.sealed) {
      this.removeSegment(segment);
    } else if (this.records === 0) {
      // Everything on disk has been read: drop the active segment too, so an idle channel holds no files.
      this.removeSegment(segment);
    }
  }

  private startReading(): Segment {
    // The next records may still be in the block being filled, bound for a segment not yet opened.
    if (!this.segments.some((s) => !s.removalFailed)) this.flush();
    const segment = this.segments.find((s) => !s.removalFailed);
    if (segment === undefined) throw new Error('hopper-streams: the segment log was asked for a record it does not hold');
    this.closeReadFd();
    try {
      this.readFd = this.fs.openSync(segment.file, 'r');
    } catch (err) {
      throw ioError('opening a segment for reading', segment.file, err);
    }
    this.readSegment = segment;
    this.readFromSegment = 0;
    this.readOffset = this.headerBytes;
    this.readAhead = Buffer.alloc(0);
    this.readAheadStart = 0;
    return segment;
  }

  /** `length` bytes of the segment at `offset`, served from a read-ahead buffer refilled with one read. */
  private readBytes(segment: Segment, offset: number, length: number): Buffer {
    const start = offset - this.readAheadStart;
    if (start >= 0 && start + length <= this.readAhead.length) return this.readAhead.subarray(start, start + length);
    const want = Math.min(Math.max(length, READ_AHEAD_BYTES), segment.size - offset);
    const buffer = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      let n: number;
      try {
        n = this.fs.readSync(this.readFd!, buffer, got, want - got, offset + got);
      } catch (err) {
        throw ioError('reading a segment', segment.file, err);
      }
      if (n === 0) throw this.corrupt(offset + got, 'the file is shorter than what was written to it');
      got += n;
    }
    this.readAhead = buffer;
    this.readAheadStart = offset;
    return buffer.subarray(0, length);
  }

  private removeSegment(segment: Segment): void {
    if (segment === this.readSegment) {
      this.closeReadFd();
      this.readSegment = undefined;
      this.readAhead = Buffer.alloc(0);
    }
    if (segment.writeFd !== undefined) {
      this.closeQuietly(segment.writeFd);
      segment.writeFd = undefined;
      segment.sealed = true;
    }
    try {
      this.fs.unlinkSync(segment.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        // Delivery goes on; the file keeps counting against the caps until a later removal succeeds.
        segment.removalFailed = true;
        this.retryLater(segment);
        return;
      }
    }
    this.forget(segment);
  }

  private forget(segment: Segment): void {
    const index = this.segments.indexOf(segment);
    if (index >= 0) this.segments.splice(index, 1);
    this.fileBytes -= segment.size;
    this.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
  }

  private retryLater(segment: Segment): void {
    setImmediate(() => {
      if (this.closed || !this.segments.includes(segment)) return;
      try {
        this.fs.unlinkSync(segment.file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return;
      }
      this.forget(segment);
    }).unref();
  }

  private closeReadFd(): void {
    if (this.readFd !== undefined) {
      this.closeQuietly(this.readFd);
      this.readFd = undefined;
    }
  }

  private closeQuietly(fd: number): void {
    try {
      this.fs.closeSync(fd);
    } catch {
      // A close error leaves nothing to recover.
    }
  }

  private corrupt(offset: number, problem: string): HopperError {
    const file = this.readSegment?.file ?? this.dir;
    return new HopperError('ERR_HOPPER_CORRUPT_SEGMENT', `corrupt segment ${file} at byte ${offset}: ${problem}`, { file, offset });
  }

  /**
   * Removes segment files a previous run of this channel left behind: only files named like
   * segments whose header carries this package's owner mark. Anything else stays untouched,
   * and new segments are numbered past every existing name.
   */
  private removeStaleSegments(): void {
    let names: string[];
    try {
      names = this.fs.readdirSync(this.dir) as string[];
    } catch (err) {
      throw ioError('listing the channel directory', this.dir, err);
    }
    for (const name of names) {
      const match = SEGMENT_NAME.exec(name);
      if (!match) continue;
      this.nextSeq = Math.max(this.nextSeq, Number(match[1]) + 1);
      const file = path.join(this.dir, name);
      if (this.isOurSegment(file)) {
        try {
          this.fs.unlinkSync(file);
        } catch (err) {
          throw ioError('removing a stale segment', file, err);
        }
      }
    }
  }

  private isOurSegment(file: string): boolean {
    let fd: number | undefined;
    try {
      fd = this.fs.openSync(file, 'r');
      const head = Buffer.alloc(64 * 1024);
      const n = this.fs.readSync(fd, head, 0, head.length, 0);
      return decodeHeader(head.subarray(0, n))?.meta[OWNER_KEY] !== undefined;
    } catch {
      return false;
    } finally {
      if (fd !== undefined) this.closeQuietly(fd);
    }
  }
}

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
