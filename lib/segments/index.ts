import crypto from 'node:crypto';
import nodeFs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { BYTES_HEAD_MAX_BYTES, type RecordCodec } from '../codec.js';
import { HopperError, ioError } from '../errors.js';
import {
  BLOCK_FRAMING_BYTES, OWNER_KEY, blockData, checkSync, compress, compressionSlack,
  decodeHeader, encodeBlockHeader, encodeHeader, isProblem, parseBlockHeader, type FrameProblem,
} from '../ocf.js';
import type { OnCorrupt, SegmentCodec } from '../options.js';

/**
 * The file operations the segment log uses: node:fs by default, a seam for fault injection.
 * No fsync: like hopper, nothing is kept across restarts, so nothing needs to reach the platter.
 */
export type SegmentFileSystem = Pick<
  typeof nodeFs,
  'openSync' | 'closeSync' | 'writevSync' | 'readSync' | 'unlinkSync' | 'readdirSync' | 'fstatSync' | 'lstatSync' | 'linkSync'
>;

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
}

/** A directory used as is (unit tests): drafts are prepared in it, and it is trusted. */
function plainDirectory(dir: string): SegmentDirectory {
  return { path: dir, draftDir: dir, intact: () => true, verify: () => undefined };
}

/** Creates a new file, never an existing one, and never through a symlink. */
const CREATE_FLAGS = nodeFs.constants.O_WRONLY | nodeFs.constants.O_CREAT | nodeFs.constants.O_EXCL | (nodeFs.constants.O_NOFOLLOW ?? 0);
/** Opens for reading without following a symlink or blocking on a FIFO (the file is checked with fstat next). */
const READ_FLAGS = nodeFs.constants.O_RDONLY | (nodeFs.constants.O_NOFOLLOW ?? 0) | (nodeFs.constants.O_NONBLOCK ?? 0);
/** Name of the draft a new segment is written into, in the draft directory, before it is linked into place. */
const SEGMENT_DRAFT = 'segment.draft';

export interface SegmentLogOptions {
  maxSegmentBytes: number;
  maxSegments: number;
  maxDiskBytes: number;
  codec: SegmentCodec;
  onCorrupt: OnCorrupt;
  /** Channel name, written into each segment's metadata. */
  channel: string;
}

export interface SegmentEvent {
  action: 'sealed' | 'removed';
  file: string;
  bytes: number;
  records: number;
}

/** A failed file operation the log is retrying. */
export interface FaultEvent {
  operation: 'write' | 'read' | 'remove';
  file: string;
  error: Error;
}

export interface SegmentLogHooks {
  onSegment(event: SegmentEvent): void;
  /** A file operation failed; the log retries it. */
  onFault(event: FaultEvent): void;
  /** A retried operation went through: blocked writers and a waiting reader can go on. */
  onRecovered(): void;
}

/** What an append did: stored the record, or found a disk cap in the way ('too-large': even an empty log cannot take it; 'fault': disk writes are failing). */
export type AppendResult = 'ok' | 'full' | 'too-large' | 'fault';

/** Returned by {@link SegmentLog.next} when the next record cannot be read yet (a fault being retried). */
export const NOT_READY: unique symbol = Symbol('hopper-streams.not-ready');

/** Returned by {@link SegmentLog.next} with `onCorrupt: 'skip'`: records lost to corruption, skipped over. */
export class LostRecords {
  constructor(
    readonly count: number,
    readonly file: string,
    readonly offset: number,
    readonly problem: string,
  ) {}
}

const EMPTY = Buffer.alloc(0);
const SEGMENT_NAME = /^(\d{12})\.avro$/;
const BLOCK_TARGET_BYTES = 64 * 1024;
/**
 * A block holding Buffers by reference may grow to this, Buffers included, as long as what was
 * copied into it stays under BLOCK_TARGET_BYTES: fewer, larger writes and reads (faster in the
 * byte-mode benchmark than 64 KiB blocks; 1 MiB ones were no faster). A record read from such a
 * block is a view of it (see codec.ts): it keeps the block's memory alive, at most five times its
 * own size.
 */
const BY_REFERENCE_BLOCK_BYTES = 256 * 1024;
const READ_AHEAD_BYTES = 256 * 1024;
/** Blocks this large are read alone, into a buffer of their own (large Buffer records become views of it). */
const READ_ALONE_BYTES = 64 * 1024;
const RETRY_FIRST_MS = 5;
const RETRY_MAX_MS = 1_000;
/**
 * The reader gives up only after this many failed reads in a row, and only once they have gone on
 * for READ_GIVE_UP_MS: an fd or permission shortage shorter than that costs no record.
 */
const READ_ATTEMPTS = 10;
const READ_GIVE_UP_MS = 5_000;
/** Attempts to remove each segment at close before leaving it (and saying so). */
const CLOSE_ATTEMPTS = 3;

export function segmentFileName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.avro`;
}

interface Segment {
  seq: number;
  file: string;
  sync: Buffer;
  /** The exact header bytes written: a reader checks the file still starts with them. */
  header: Buffer;
  /** Bytes written to the file so far (header and whole blocks only). */
  size: number;
  /** Records written to the file so far. */
  records: number;
  /**
   * The block index kept while writing: where each block ends, how many records it holds, and a
   * CRC-32 of its data. The reader checks every block against it (Avro has no checksum of its own)
   * and, with `onCorrupt: 'skip'`, steps over a damaged block by it, knowing what was lost.
   */
  blockEnds: number[];
  blockCounts: number[];
  blockChecksums: number[];
  sealed: boolean;
  writeFd: number | undefined;
  /** Identity of the file created: only that file is ever read or removed under this name. */
  dev: number;
  ino: number;
  /** Removal failed: the file still counts against the caps until a retry succeeds. */
  removalFailed: boolean;
}

/**
 * What a piece of corruption costs when skipped: nothing (bytes appended after the last block),
 * the block about to be read, the rest of the block being decoded, or the rest of the segment
 * (a damaged header, a file cut short).
 */
type Loss = 'nothing' | 'block' | 'rest-of-block' | 'rest-of-segment';

class CorruptionFound extends Error {
  constructor(readonly offset: number, readonly problem: string, readonly loss: Loss) {
    super(problem);
  }
}

/**
 * The segment log: an append-only sequence of Avro Object Container Files in the channel
 * directory, read front to back and deleted once read. Records are encoded into a block in
 * memory; a block is written with one `writev` when it reaches its target size or when the
 * event loop turns. The reader reads whole blocks only, checks them against the framing and
 * against what was written, and decodes records one at a time. Failed file operations are
 * retried with backoff. Knows nothing of memory placements or streams.
 */
export class SegmentLog {
  private readonly dir: string;
  private readonly directory: SegmentDirectory;
  private readonly codec: RecordCodec;
  private readonly options: SegmentLogOptions;
  private readonly fs: SegmentFileSystem;
  private readonly hooks: SegmentLogHooks;
  private readonly schemaJson: Buffer;
  private readonly headerBytes: number;
  /** Large Buffers can be written by reference: the codec says which, and blocks are not compressed (deflate needs all the bytes in one place). */
  private readonly byReference: boolean;
  /**
   * Size past which a segment is sealed: maxSegmentBytes, but at most a quarter of maxDiskBytes,
   * so that segments read through free the disk cap in steps instead of one segment holding it.
   */
  private readonly sealAt: number;

  /** Segment files that exist, oldest first; the last one may be the active (unsealed) one. */
  private readonly segments: Segment[] = [];
  private nextSeq = 1;
  private fileBytes = 0;

  /**
   * The block being filled: records at [blockStart, blockPos), `blockRecords` of them. A reader
   * that has caught up with the files takes records straight from its front (blockStart moves
   * on), so a consumer that keeps up costs no file I/O at all.
   */
  private block = Buffer.allocUnsafe(BLOCK_TARGET_BYTES);
  private blockStart = 0;
  private blockPos = 0;
  private blockRecords = 0;
  /**
   * Large Buffers in the block being filled, held by reference instead of copied into it, in
   * block order: each record starts at `start` in the block with its head (union branch and
   * length), which ends at `at`; the Buffer's bytes come after `at`, before the block's next byte.
   * They are written with the block's other bytes in one `writev`; until then the caller's Buffer
   * is only read, never changed, so a retried write writes the same bytes.
   */
  private refs: { start: number; at: number; bytes: Buffer }[] = [];
  /** Bytes of the Buffers in `refs`. */
  private refBytes = 0;
  private flushScheduled = false;
  /** Set while writing the pending block fails: appends are refused until a retry succeeds. */
  private writeFault: Error | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RETRY_FIRST_MS;
  private readFailures = 0;
  /** When the current run of failed reads began. */
  private readFailingSince = 0;

  private readFd: number | undefined;
  private readSegment: Segment | undefined;
  /** Index in readSegment.blockEnds of the next block to load. */
  private readBlock = 0;
  private readOffset = 0;
  private readAhead: Buffer = Buffer.alloc(0);
  private readAheadStart = 0;
  private current: Buffer = Buffer.alloc(0);
  private currentPos = 0;
  private currentLeft = 0;
  private currentBlockOffset = 0;
  /** Records the reader has taken from the segment it is reading. */
  private readFromSegment = 0;

  /** Records appended and not yet read (or dropped, or lost), pending block included. */
  records = 0;
  private closed = false;

  constructor(dir: string | SegmentDirectory, codec: RecordCodec, options: SegmentLogOptions, hooks: SegmentLogHooks, fileSystem: SegmentFileSystem = nodeFs) {
    this.directory = typeof dir === 'string' ? plainDirectory(dir) : dir;
    this.dir = this.directory.path;
    this.codec = codec;
    this.options = options;
    this.fs = fileSystem;
    this.hooks = hooks;
    this.schemaJson = Buffer.from(JSON.stringify(codec.type.schema({ exportAttrs: true })));
    this.headerBytes = this.encodeHeader(Buffer.alloc(16)).length;
    this.byReference = options.codec === 'null' && codec.largeBytes !== undefined && codec.encodeBytesHead !== undefined;
    this.sealAt = Math.max(1, Math.min(options.maxSegmentBytes, Math.floor(options.maxDiskBytes / 4)));
    this.removeStaleSegments();
  }

  /** Segment files that exist now. */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Bytes of all segment files plus the block being filled. */
  get bytes(): number {
    if (this.blockRecords === 0) return this.fileBytes;
    return this.fileBytes + this.blockPos - this.blockStart + this.refBytes + BLOCK_FRAMING_BYTES + (this.activeSegment() === undefined ? this.headerBytes : 0);
  }

  /** The error disk writes are failing with, while they are retried. */
  get fault(): Error | undefined {
    return this.writeFault;
  }

  /**
   * Encodes a record into the pending block, unless that would pass `maxDiskBytes` or need a
   * segment beyond `maxSegments`, or disk writes are failing. Nothing is kept when the answer is
   * not 'ok'. A record that is kept is never lost to a failed write: its block is retried.
   */
  append(record: unknown): AppendResult {
    if (this.writeFault !== undefined) return 'fault';
    if (this.blockRecords === 0) this.blockStart = this.blockPos = 0;
    // A large Buffer is not copied: only its head goes into the block.
    const large = this.byReference ? this.codec.largeBytes!(record) : undefined;
    let start = this.blockPos;
    let end: number;
    if (large !== undefined) {
      if (this.block.length - start < BYTES_HEAD_MAX_BYTES) this.makeRoom(BYTES_HEAD_MAX_BYTES);
      start = this.blockPos;
      end = this.codec.encodeBytesHead!(large.length, this.block, start);
    } else {
      end = this.codec.encode(record, this.block, start);
      while (end < 0) {
        // avsc answers a short buffer with minus the bytes missing: the record takes length - end - start.
        this.makeRoom(this.block.length - end - start);
        start = this.blockPos;
        end = this.codec.encode(record, this.block, start);
      }
    }
    const { codec } = this.options;
    const referenced = large === undefined ? 0 : large.length;
    const size = end - start + referenced;
    const alone = this.headerBytes + size + BLOCK_FRAMING_BYTES + compressionSlack(size, codec);
    if (alone > this.options.maxDiskBytes) return this.refused('too-large');
    // A pending block with no active segment will open one when it is written: count its header.
    const needsHeader = this.activeSegment() === undefined;
    if (needsHeader && this.blockRecords === 0 && this.segments.length >= this.options.maxSegments) return this.refused('full');
    const pending = end - this.blockStart + this.refBytes + referenced;
    const after = this.fileBytes + (needsHeader ? this.headerBytes : 0) + pending + BLOCK_FRAMING_BYTES + compressionSlack(pending, codec);
    if (after > this.options.maxDiskBytes) return this.refused('full');

    this.blockPos = end;
    if (large !== undefined) {
      this.refs.push({ start, at: end, bytes: large });
      this.refBytes += referenced;
    }
    this.blockRecords++;
    this.records++;
    const active = this.activeSegment();
    const room = this.sealAt - (active ? active.size : this.headerBytes);
    const full = this.refBytes === 0 ? pending >= BLOCK_TARGET_BYTES : end - this.blockStart >= BLOCK_TARGET_BYTES || pending >= BY_REFERENCE_BLOCK_BYTES;
    if (full || pending >= room) {
      this.tryFlush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushOnTurn);
    }
    return 'ok';
  }

  /** An append that kept nothing: a block that grew for the record goes back to its usual size. */
  private refused(result: 'full' | 'too-large'): AppendResult {
    if (this.blockRecords === 0) this.emptyBlock();
    return result;
  }

  /** Writes the pending block now; false when the write failed (it will be retried). */
  tryFlush(): boolean {
    if (this.closed) return true;
    if (this.blockRecords === 0) {
      // Nothing left to write (the reader may have taken the block's records): no fault either.
      if (this.writeFault !== undefined) this.recovered();
      return true;
    }
    try {
      this.flush();
    } catch (err) {
      this.writeFailed(err as HopperError);
      return false;
    }
    if (this.writeFault !== undefined) this.recovered();
    return true;
  }

  /**
   * The next record in write order. The caller knows one exists (`records > 0`). Returns
   * {@link NOT_READY} while a failed operation is being retried, and {@link LostRecords} when
   * `onCorrupt` is 'skip' and corruption was skipped over; throws `ERR_HOPPER_CORRUPT_SEGMENT`
   * (with 'error') or `ERR_HOPPER_IO` when reads keep failing.
   */
  next(): unknown {
    try {
      if (this.currentLeft === 0 && !this.loadBlock()) return this.nextFromBlock();
      const { value, offset } = this.decodeCurrent();
      if (offset < 0 || offset > this.current.length) {
        throw new CorruptionFound(this.currentBlockOffset, 'a record does not decode with the segment schema', 'rest-of-block');
      }
      // A readable stream takes null as its end: no decoded value may pass for it.
      if (value === null || value === undefined) {
        throw new CorruptionFound(this.currentBlockOffset, `a record decodes as ${value}, which no record can be`, 'rest-of-block');
      }
      this.currentPos = offset;
      this.currentLeft--;
      this.records--;
      this.readFromSegment++;
      if (this.currentLeft === 0) {
        if (this.currentPos !== this.current.length) {
          throw new CorruptionFound(this.currentBlockOffset, 'the block holds more bytes than its record count accounts for', 'rest-of-block');
        }
        this.afterBlock();
      }
      this.readSucceeded();
      return value;
    } catch (err) {
      if (err === NOT_READY) return NOT_READY;
      if (err instanceof CorruptionFound) return this.corruption(err);
      if (HopperError.is(err, 'ERR_HOPPER_IO')) return this.readFailed(err);
      throw err;
    }
  }

  /** The record at currentPos; what does not decode (avsc or V8 throw on some garbage) is no record. */
  private decodeCurrent(): { value: unknown; offset: number } {
    try {
      // `current` is a buffer read (or inflated) for this block and never written again: large
      // Buffer records can be views of it.
      return this.codec.decode(this.current, this.currentPos, true);
    } catch {
      return { value: undefined, offset: -1 };
    }
  }

  /** The next record, from the front of the block being filled: the reader has read every file. */
  private nextFromBlock(): unknown {
    if (this.blockRecords === 0) throw new Error('hopper-streams: the segment log was asked for a record it does not hold');
    let value: unknown;
    const ref = this.refs[0];
    if (ref !== undefined && ref.start === this.blockStart) {
      // Held by reference: the Buffer that was appended (as the memory tier would give it back).
      this.refs.shift();
      this.refBytes -= ref.bytes.length;
      value = ref.bytes;
      this.blockStart = ref.at;
    } else {
      // The block is written over once flushed: records decoded from it must be copies.
      const decoded = this.codec.decode(this.block, this.blockStart);
      if (decoded.offset < 0 || decoded.offset > (ref?.start ?? this.blockPos) || decoded.value === null || decoded.value === undefined) {
        throw new Error('hopper-streams: a record in the block being filled does not decode');
      }
      value = decoded.value;
      this.blockStart = decoded.offset;
    }
    this.records--;
    if (--this.blockRecords === 0) this.emptyBlock();
    this.readSucceeded();
    // Everything is read: a segment still open for writing holds nothing unread, so it can go.
    const active = this.activeSegment();
    if (this.records === 0 && active !== undefined) this.removeSegment(active);
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
      this.unlinkOurs(victim);
    } catch {
      return undefined;
    }
    this.records -= victim.records;
    this.forget(victim);
    return { offset, count: victim.records, file: victim.file };
  }

  /** Closes every file and removes every segment this log created. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.closeReadFd();
    for (const segment of this.segments.splice(0)) {
      if (segment.writeFd !== undefined) this.closeQuietly(segment.writeFd);
      this.removeAtClose(segment);
    }
    this.fileBytes = 0;
    this.blockStart = this.blockPos = this.blockRecords = 0;
    this.refs = [];
    this.refBytes = 0;
    this.records = 0;
  }

  /** Removes a file at close, trying a few times; one that cannot go is reported and left. */
  private removeAtClose(segment: Segment): void {
    const { file } = segment;
    let error: unknown;
    for (let attempt = 0; attempt < CLOSE_ATTEMPTS; attempt++) {
      try {
        this.unlinkOurs(segment);
        return;
      } catch (err) {
        error = err;
      }
    }
    this.hooks.onFault({ operation: 'remove', file, error: ioError('removing a segment at close', file, error) });
  }

  private flushOnTurn = (): void => {
    this.flushScheduled = false;
    if (this.writeFault === undefined) this.tryFlush();
  };

  /** Writes the pending block to the active segment (opening one if needed); throws ERR_HOPPER_IO. */
  private flush(): void {
    let segment = this.activeSegment();
    const parts: Buffer[] = [];
    const sync = segment === undefined ? crypto.randomBytes(16) : segment.sync;
    const header = segment === undefined ? this.encodeHeader(sync) : undefined;
    if (header !== undefined) parts.push(header);
    const data = this.blockParts();
    let dataLength = 0;
    let checksum = 0;
    for (const part of data) {
      dataLength += part.length;
      checksum = zlib.crc32(part, checksum);
    }
    parts.push(encodeBlockHeader(this.blockRecords, dataLength), ...data, sync);
    let length = 0;
    for (const part of parts) length += part.length;
    if (segment === undefined) segment = this.createSegment(sync, header!, parts, length);
    else this.writeAll(segment.writeFd!, segment.file, parts, length, segment.size);
    segment.size += length;
    segment.records += this.blockRecords;
    segment.blockEnds.push(segment.size);
    segment.blockCounts.push(this.blockRecords);
    segment.blockChecksums.push(checksum);
    this.fileBytes += length;
    this.blockRecords = 0;
    this.emptyBlock();
    this.refs = [];
    this.refBytes = 0;
    if (segment.size >= this.sealAt) this.seal(segment);
  }

  /**
   * The block being filled holds no record any more: start the next one at the front, in a buffer
   * of the usual size again if a large record made it grow.
   */
  private emptyBlock(): void {
    this.blockStart = this.blockPos = 0;
    if (this.block.length > 2 * BLOCK_TARGET_BYTES) this.block = Buffer.allocUnsafe(BLOCK_TARGET_BYTES);
    this.codec.endBlock?.();
  }

  /** The pending block's data, in order: compressed in one piece, or the block's bytes with the Buffers held by reference between them. */
  private blockParts(): Buffer[] {
    if (this.refs.length === 0) return [compress(this.block.subarray(this.blockStart, this.blockPos), this.options.codec)];
    const parts: Buffer[] = [];
    let pos = this.blockStart;
    for (const ref of this.refs) {
      parts.push(this.block.subarray(pos, ref.at), ref.bytes);
      pos = ref.at;
    }
    if (pos < this.blockPos) parts.push(this.block.subarray(pos, this.blockPos));
    return parts;
  }

  private writeFailed(err: HopperError): void {
    const first = this.writeFault === undefined;
    this.writeFault = err;
    if (first) this.hooks.onFault({ operation: 'write', file: err.file ?? this.dir, error: err });
    this.scheduleRetry();
  }

  private readFailed(err: HopperError): typeof NOT_READY {
    const now = Date.now();
    if (this.readFailures++ === 0) this.readFailingSince = now;
    if (this.readFailures >= READ_ATTEMPTS && now - this.readFailingSince >= READ_GIVE_UP_MS) throw err;
    this.hooks.onFault({ operation: 'read', file: err.file ?? this.dir, error: err });
    this.scheduleRetry();
    return NOT_READY;
  }

  private readSucceeded(): void {
    if (this.readFailures === 0) return;
    this.readFailures = 0;
    if (this.writeFault === undefined) this.retryDelay = RETRY_FIRST_MS;
  }

  private recovered(): void {
    this.writeFault = undefined;
    if (this.readFailures === 0) this.retryDelay = RETRY_FIRST_MS;
    this.hooks.onRecovered();
  }

  /**
   * The one retry policy, for whatever failed (a pending block write, a read, a removal): one
   * timer, whose delay doubles from 5 ms to 1 s while failures go on, and starts again at 5 ms
   * once the failing operations work.
   */
  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closed) return;
      this.retryRemovals();
      if (this.writeFault !== undefined) this.tryFlush();
      // A waiting reader tries again (a read that fails again schedules the next retry).
      else this.hooks.onRecovered();
    }, delay);
  }

  private activeSegment(): Segment | undefined {
    const last = this.segments[this.segments.length - 1];
    return last !== undefined && !last.sealed ? last : undefined;
  }

  /** Makes `needed` more bytes of room after blockPos: moves the unread records to the front, growing the buffer if that is not enough. */
  private makeRoom(needed: number): void {
    const used = this.blockPos - this.blockStart;
    let size = this.block.length;
    while (size < used + needed) size *= 2;
    const target = size === this.block.length ? this.block : Buffer.allocUnsafe(size);
    this.block.copy(target, 0, this.blockStart, this.blockPos);
    this.block = target;
    for (const ref of this.refs) {
      ref.start -= this.blockStart;
      ref.at -= this.blockStart;
    }
    this.blockStart = 0;
    this.blockPos = used;
  }

  private encodeHeader(sync: Buffer): Buffer {
    return encodeHeader(this.schemaJson, this.options.codec, sync, { [OWNER_KEY]: this.options.channel });
  }

  /**
   * Creates the next segment with its header and first block in one step: they are written into a
   * draft in the draft directory (the lock directory), which is then linked under the segment's
   * name (link(2) never replaces a file that is there) and unlinked. So a segment file never exists
   * without its header, and a crash leaves at most a draft, which goes with the stale lock.
   */
  private createSegment(sync: Buffer, header: Buffer, parts: Buffer[], length: number): Segment {
    const lost = this.directory.verify();
    if (lost !== undefined) throw ioError('creating a segment', this.dir, lost);
    const draft = path.join(this.directory.draftDir, SEGMENT_DRAFT);
    let fd: number;
    try {
      fd = this.fs.openSync(draft, CREATE_FLAGS, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') this.unlinkQuietly(draft); // our own, from a failed attempt
      throw ioError('creating a segment', draft, err);
    }
    let file: string;
    let seq: number;
    let stat: nodeFs.Stats;
    try {
      this.writeAll(fd, draft, parts, length, 0);
      stat = this.fs.fstatSync(fd);
      for (;;) {
        seq = this.nextSeq;
        file = path.join(this.dir, segmentFileName(seq));
        try {
          this.fs.linkSync(draft, file);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('creating a segment', file, err);
          this.nextSeq++;
        }
      }
    } catch (err) {
      this.closeQuietly(fd);
      this.unlinkQuietly(draft);
      throw err;
    }
    this.nextSeq++;
    this.unlinkQuietly(draft);
    const segment: Segment = {
      seq, file, sync, header, size: 0, records: 0, blockEnds: [], blockCounts: [], blockChecksums: [],
      sealed: false, writeFd: fd, removalFailed: false, dev: stat.dev, ino: stat.ino,
    };
    this.segments.push(segment);
    return segment;
  }

  private writeAll(fd: number, file: string, parts: Buffer[], length: number, position: number): void {
    let written = 0;
    while (written < length) {
      let n: number;
      try {
        n = this.fs.writevSync(fd, parts, position + written);
      } catch (err) {
        // Nothing is counted as written: the retry writes the whole block again at the same place.
        throw ioError('writing a block', file, err);
      }
      written += n;
      if (written < length) parts = remainder(parts, n);
    }
  }

  private unlinkQuietly(file: string): void {
    try {
      this.fs.unlinkSync(file);
    } catch {
      // Gone already, or left for the next open (a draft goes with the lock directory).
    }
  }

  /**
   * Unlinks a segment file if it is still the one this log created (same device and inode, in the
   * directory the channel opened). 'not-ours' when it is not: it is left alone and forgotten.
   * Throws the system error when the unlink fails.
   */
  private unlinkOurs(segment: Segment): 'removed' | 'not-ours' {
    if (!this.directory.intact()) {
      this.directory.verify();
      return 'not-ours';
    }
    let stat: nodeFs.Stats;
    try {
      stat = this.fs.lstatSync(segment.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'removed';
      throw err;
    }
    if (!stat.isFile() || stat.dev !== segment.dev || stat.ino !== segment.ino) return 'not-ours';
    try {
      this.fs.unlinkSync(segment.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return 'removed';
  }

  private seal(segment: Segment): void {
    segment.sealed = true;
    if (segment.writeFd !== undefined) {
      this.closeQuietly(segment.writeFd);
      segment.writeFd = undefined;
    }
    this.hooks.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records });
  }

  /**
   * Loads the next block from the files into `current`; false when every file has been read and
   * the next records are in the block being filled.
   */
  private loadBlock(): boolean {
    let segment = this.readSegment ?? this.startReading();
    if (segment === undefined) return false;
    while (this.readBlock >= segment.blockEnds.length) {
      // Caught up with the segment being written: what follows is in the block being filled.
      if (!segment.sealed) return false;
      this.removeSegment(segment);
      segment = this.startReading();
      if (segment === undefined) return false;
    }
    const blockOffset = this.readOffset;
    const blockEnd = segment.blockEnds[this.readBlock]!;
    const expectedCount = segment.blockCounts[this.readBlock]!;
    this.currentBlockOffset = blockOffset;
    const bytes = this.readBytes(segment, blockOffset, blockEnd - blockOffset);
    const frame = parseBlockHeader(bytes, 0, bytes.length);
    if (isProblem(frame)) throw new CorruptionFound(blockOffset + frame.offset, frame.problem, 'block');
    if (frame.end !== bytes.length) {
      throw new CorruptionFound(blockOffset, `the block size says ${frame.end} bytes with its framing, ${bytes.length} were written`, 'block');
    }
    if (frame.count !== expectedCount) {
      throw new CorruptionFound(blockOffset, `the block record count says ${frame.count}, ${expectedCount} were written`, 'block');
    }
    const badSync = checkSync(bytes, frame, segment.sync);
    if (badSync) throw new CorruptionFound(blockOffset + badSync.offset, badSync.problem, 'block');
    if (zlib.crc32(bytes.subarray(frame.dataStart, frame.dataEnd)) !== segment.blockChecksums[this.readBlock]) {
      throw new CorruptionFound(blockOffset + frame.dataStart, 'the block data changed since it was written (checksum mismatch)', 'block');
    }
    try {
      this.current = blockData(bytes, frame, this.options.codec);
    } catch (err) {
      const problem = err as FrameProblem;
      throw new CorruptionFound(blockOffset + problem.offset, problem.problem, 'block');
    }
    this.currentPos = 0;
    this.currentLeft = frame.count;
    this.readOffset = blockEnd;
    this.readBlock++;
    return true;
  }

  /** After the last record of a block: free the segment as soon as it has been read through. */
  private afterBlock(): void {
    const segment = this.readSegment!;
    // A block read alone (a large one) is let go with its last record; records that are views of
    // it keep it alive as long as they live.
    this.current = EMPTY;
    if (this.readAhead.length > READ_AHEAD_BYTES) this.readAhead = EMPTY;
    if (this.readBlock < segment.blockEnds.length) return;
    // A sealed segment goes once read through; the active one too once every disk record is read,
    // so an idle channel holds no files.
    if (segment.sealed || this.records === 0) this.removeSegment(segment);
  }

  /** Opens the oldest segment with blocks to read; undefined when there is none (the records are in the block being filled). */
  private startReading(): Segment | undefined {
    const segment = this.segments.find((s) => !s.removalFailed);
    if (segment === undefined || segment.blockEnds.length === 0) return undefined;
    // Through a directory that was swapped (for a symlink, or another directory), nothing is read.
    if (!this.directory.intact()) throw this.directory.verify() ?? ioError('opening a segment for reading', segment.file, new Error('the channel directory was replaced'));
    this.closeReadFd();
    this.readSegment = segment;
    this.readBlock = 0;
    this.readFromSegment = 0;
    this.readOffset = segment.header.length;
    this.currentLeft = 0;
    this.readAhead = Buffer.alloc(0);
    let fd: number;
    try {
      fd = this.fs.openSync(segment.file, READ_FLAGS);
    } catch (err) {
      this.readSegment = undefined;
      const errno = (err as NodeJS.ErrnoException).code;
      // Gone, or a symlink put in its place: retrying will not bring the file back.
      if (errno === 'ENOENT' || errno === 'ELOOP' || errno === 'ENXIO') {
        this.readSegment = segment;
        throw new CorruptionFound(0, errno === 'ENOENT' ? 'the segment file is gone' : 'the segment file was replaced by a symbolic link or a special file', 'rest-of-segment');
      }
      throw ioError('opening a segment for reading', segment.file, err);
    }
    this.readFd = fd;
    let stat: nodeFs.Stats;
    try {
      stat = this.fs.fstatSync(fd);
    } catch (err) {
      this.closeReadFd();
      this.readSegment = undefined;
      throw ioError('opening a segment for reading', segment.file, err);
    }
    if (!stat.isFile() || stat.dev !== segment.dev || stat.ino !== segment.ino) {
      this.closeReadFd();
      throw new CorruptionFound(0, `the segment file was replaced (by ${stat.isFile() ? 'another file' : 'a file that is not a regular file'})`, 'rest-of-segment');
    }
    const fileSize = stat.size;
    let header: Buffer;
    try {
      header = this.readBytes(segment, 0, segment.header.length);
    } catch (err) {
      if (err instanceof CorruptionFound) throw err;
      this.closeReadFd();
      this.readSegment = undefined;
      throw err;
    }
    if (!header.equals(segment.header)) {
      let at = 0;
      while (header[at] === segment.header[at]) at++;
      throw new CorruptionFound(at, 'the header is not the one written (not an Avro header any more)', 'rest-of-segment');
    }
    // Our writes end at the last block; bytes past that in a sealed file were put there by someone else.
    if (segment.sealed && fileSize > segment.size) {
      throw new CorruptionFound(segment.size, `${fileSize - segment.size} bytes follow the last block`, 'nothing');
    }
    return segment;
  }

  /**
   * `length` bytes of the segment at `offset`, served from a read-ahead buffer refilled with one
   * read; a large block is read on its own, into a buffer of its size. Each refill is a new buffer,
   * never written to again: records decoded from it may be views of it.
   */
  private readBytes(segment: Segment, offset: number, length: number): Buffer {
    const start = offset - this.readAheadStart;
    if (start >= 0 && start + length <= this.readAhead.length) return this.readAhead.subarray(start, start + length);
    const want = length >= READ_ALONE_BYTES ? length : Math.min(Math.max(length, READ_AHEAD_BYTES), segment.size - offset);
    const buffer = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      let n: number;
      try {
        n = this.fs.readSync(this.readFd!, buffer, got, want - got, offset + got);
      } catch (err) {
        throw ioError('reading a segment', segment.file, err);
      }
      if (n === 0) {
        if (got >= length) break;
        throw new CorruptionFound(offset + got, 'the file is shorter than what was written to it', 'rest-of-segment');
      }
      got += n;
    }
    this.readAhead = buffer.subarray(0, got);
    this.readAheadStart = offset;
    return buffer.subarray(0, length);
  }

  /**
   * Corruption found in the segment being read: with 'error', the error; with 'skip', step over
   * what is damaged (the rest of the block, or the whole segment when its header or length is
   * wrong) using the block index kept while writing, and report exactly how many records were lost.
   */
  private corruption(found: CorruptionFound): LostRecords {
    const segment = this.readSegment!;
    if (this.options.onCorrupt === 'error') {
      throw new HopperError(
        'ERR_HOPPER_CORRUPT_SEGMENT',
        `corrupt segment ${segment.file} at byte ${found.offset}: ${found.problem}`,
        { file: segment.file, offset: found.offset },
      );
    }
    let lost = 0;
    switch (found.loss) {
      case 'nothing':
        break;
      case 'block':
        lost = segment.blockCounts[this.readBlock]!;
        this.readOffset = segment.blockEnds[this.readBlock]!;
        this.readBlock++;
        break;
      case 'rest-of-block':
        lost = this.currentLeft;
        break;
      case 'rest-of-segment':
        lost = segment.records - this.readFromSegment;
        this.readBlock = segment.blockEnds.length;
        break;
    }
    this.currentLeft = 0;
    this.records -= lost;
    this.readFromSegment += lost;
    if (this.readBlock >= segment.blockEnds.length && (segment.sealed || this.records === 0)) {
      this.removeSegment(segment);
    }
    return new LostRecords(lost, segment.file, found.offset, found.problem);
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
      this.unlinkOurs(segment);
    } catch (err) {
      // Delivery goes on; the file keeps counting against the caps until a retry succeeds.
      segment.removalFailed = true;
      this.hooks.onFault({ operation: 'remove', file: segment.file, error: ioError('removing a segment', segment.file, err) });
      this.scheduleRetry();
      return;
    }
    this.forget(segment);
    this.retryRemovals();
  }

  private retryRemovals(): void {
    for (const segment of this.segments.filter((s) => s.removalFailed)) {
      try {
        this.unlinkOurs(segment);
      } catch {
        this.scheduleRetry();
        continue;
      }
      this.forget(segment);
    }
  }

  private forget(segment: Segment): void {
    const index = this.segments.indexOf(segment);
    if (index >= 0) this.segments.splice(index, 1);
    this.fileBytes -= segment.size;
    this.hooks.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
    // Room on disk may be what a failing write was waiting for.
    if (this.writeFault !== undefined) this.tryFlush();
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

  /**
   * Removes segment files a previous run of this channel left behind: only regular files named
   * like segments whose header carries this package's owner mark (a segment is never linked into
   * place without its whole header, see createSegment). Anything else (a symlink, a FIFO, a file
   * of someone else's) stays untouched and unopened for writing, and new segments are numbered
   * past every existing name.
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
      const identity = this.ourSegment(file);
      if (identity === undefined) continue;
      try {
        // Unlinked only if the name still holds the file whose header was checked.
        const stat = this.fs.lstatSync(file);
        if (stat.isFile() && stat.dev === identity.dev && stat.ino === identity.ino) this.fs.unlinkSync(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('removing a stale segment', file, err);
      }
    }
  }

  /** The identity of `file` when it is a regular file with this package's owner mark in its header. */
  private ourSegment(file: string): { dev: number; ino: number } | undefined {
    let fd: number | undefined;
    try {
      if (!this.fs.lstatSync(file).isFile()) return undefined;
      fd = this.fs.openSync(file, READ_FLAGS);
      const stat = this.fs.fstatSync(fd);
      if (!stat.isFile()) return undefined;
      const head = Buffer.alloc(Math.min(64 * 1024, stat.size));
      const n = this.fs.readSync(fd, head, 0, head.length, 0);
      return decodeHeader(head.subarray(0, n))?.meta[OWNER_KEY] !== undefined ? { dev: stat.dev, ino: stat.ino } : undefined;
    } catch {
      return undefined;
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
