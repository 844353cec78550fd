import nodeFs from 'node:fs';
import type { RecordCodec } from '../codec.js';
import { HopperError, corruptSegmentError, ioError } from '../errors.js';
import { BLOCK_FRAMING_BYTES, compressionSlack } from '../ocf.js';
import type { OnCorrupt, SegmentCodec } from '../options.js';
import { BlockBuilder } from './block-builder.js';
import { CLOSE_ATTEMPTS, RetryPolicy, closeQuietly, isSystemError, plainDirectory, unlinkOurs, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import { Ledger, type Segment } from './ledger.js';
import { SegmentReader } from './reader.js';
import { removeStaleSegments } from './stale.js';
import { Corruption, LostRecords, WAIT, type AppendResult, type DroppedSegment, type FaultEvent } from './results.js';
import { SegmentWriter } from './writer.js';

// The segment log: an append-only sequence of Avro Object Container Files in the channel
// directory, read front to back and deleted once read. Who does what:
// - the block builder (block-builder.ts) encodes appended records into the block being filled;
// - the writer (writer.ts) creates segment files and writes blocks to them, and seals them;
// - the reader (reader.ts) reads blocks back through the block reader (block-reader.ts, shared
//   with `verify`), checks them, and decodes records;
// - the ledger (ledger.ts) is the index of segments and blocks that all of them consult;
// - io.ts holds the file operations and the one retry policy;
// - stale.ts removes, at open, the segments a previous run left;
// - results.ts says how each part fails, and what this facade answers the channel.
// This facade owns the caps, the record count, the corruption policy, failure handling and the
// removal of segments. It knows nothing of memory placements or streams.

export type { RetryClock, SegmentDirectory, SegmentFileSystem } from './io.js';
export { segmentFileName } from './ledger.js';
export { LostRecords, WAIT, type AppendResult, type DroppedSegment, type FaultEvent } from './results.js';

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

export interface SegmentLogHooks {
  onSegment(event: SegmentEvent): void;
  /**
   * A file operation failed (see FaultEvent): the log retries it, or leaves the file and says so.
   * Never called from close(), which hands its leftovers back instead.
   */
  onFault(event: FaultEvent): void;
  /**
   * A retried operation went through (or a read is worth retrying): blocked writers and a waiting
   * reader can go on. Called on a tick of its own, never from inside a call into the log.
   */
  onRecovered(): void;
}

/**
 * The segment log. Records are encoded into a block in memory; a block is written with one
 * `writev` when it reaches its target size or when the event loop turns. The reader reads whole
 * blocks only, checks them against the framing and against what was written, and decodes records
 * one at a time. Failed file operations are retried with backoff.
 */
export class SegmentLog {
  private readonly dir: string;
  private readonly directory: SegmentDirectory;
  private readonly options: SegmentLogOptions;
  private readonly fs: SegmentFileSystem;
  private readonly hooks: SegmentLogHooks;
  private readonly headerBytes: number;
  /**
   * Size past which a segment is sealed: maxSegmentBytes, but at most a quarter of maxDiskBytes,
   * so that segments read through free the disk cap in steps instead of one segment holding it.
   */
  private readonly sealAt: number;
  private readonly ledger = new Ledger();
  private readonly block: BlockBuilder;
  private readonly writer: SegmentWriter;
  private readonly reader: SegmentReader;
  private readonly retry: RetryPolicy;

  private flushScheduled = false;
  /** Set while removing a segment to make room fails ('drop-oldest'): announced once per run. */
  private dropFailing = false;
  /** Set while writing the pending block fails: appends are refused until a retry succeeds. */
  private writeFault: Error | undefined;

  /** Records appended and not yet read (or dropped, or lost), pending block included. */
  records = 0;
  private closed = false;
  /** onRecovered is due on the next tick. */
  private recoveryScheduled = false;

  constructor(dir: string | SegmentDirectory, codec: RecordCodec, options: SegmentLogOptions, hooks: SegmentLogHooks, fileSystem: SegmentFileSystem = nodeFs) {
    this.directory = typeof dir === 'string' ? plainDirectory(dir) : dir;
    this.dir = this.directory.path;
    this.options = options;
    this.fs = fileSystem;
    this.hooks = hooks;
    // Large Buffers can be written by reference when the codec says which, and blocks are not
    // compressed (deflate needs all the bytes in one place).
    const byReference = options.codec === 'null' && codec.largeRecord !== undefined && codec.encodeLargeHead !== undefined && codec.largeValue !== undefined;
    this.block = new BlockBuilder(codec, byReference);
    this.sealAt = Math.max(1, Math.min(options.maxSegmentBytes, Math.floor(options.maxDiskBytes / 4)));
    this.writer = new SegmentWriter(
      fileSystem,
      this.directory,
      this.ledger,
      codec.type.schema({ exportAttrs: true }),
      { codec: options.codec, channel: options.channel, sealAt: this.sealAt },
      (segment) => hooks.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records }),
    );
    this.headerBytes = this.writer.headerBytes;
    this.reader = new SegmentReader(fileSystem, codec, options.codec);
    this.retry = new RetryPolicy(this.retryFailed, fileSystem.retryClock);
    removeStaleSegments(fileSystem, this.dir, this.ledger, hooks.onFault);
  }

  /** Segment files that exist now. */
  get segmentCount(): number {
    return this.ledger.segments.length;
  }

  /** Bytes of memory held for I/O: the block being filled, the block being read, the read-ahead. */
  get bufferBytes(): number {
    return this.block.bufferBytes + this.reader.bufferBytes;
  }

  /** Bytes of all segment files plus the block being filled. */
  get bytes(): number {
    if (this.block.count === 0) return this.ledger.fileBytes;
    return this.ledger.fileBytes + this.block.pending + BLOCK_FRAMING_BYTES + (this.ledger.active() === undefined ? this.headerBytes : 0);
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
    const block = this.block;
    const size = block.stage(record);
    const { codec, maxDiskBytes } = this.options;
    const alone = this.headerBytes + size + BLOCK_FRAMING_BYTES + compressionSlack(size, codec);
    if (alone > maxDiskBytes) return this.refused('too-large');
    // A pending block with no active segment will open one when it is written: count its header.
    const ledger = this.ledger;
    const active = ledger.active();
    if (active === undefined && block.count === 0 && ledger.segments.length >= this.options.maxSegments) return this.refused('full');
    const pending = block.stagedPending;
    const after = ledger.fileBytes + (active === undefined ? this.headerBytes : 0) + pending + BLOCK_FRAMING_BYTES + compressionSlack(pending, codec);
    if (after > maxDiskBytes) return this.refused('full');

    const full = block.keep();
    this.records++;
    const room = this.sealAt - (active !== undefined ? active.size : this.headerBytes);
    if (full || pending >= room) {
      this.tryFlush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushOnTurn);
    }
    return 'ok';
  }

  /** An append that kept nothing. */
  private refused(result: 'full' | 'too-large'): AppendResult {
    this.block.drop();
    return result;
  }

  /** Writes the pending block now; false when the write failed (it will be retried). */
  tryFlush(): boolean {
    if (this.closed) return true;
    if (this.block.count === 0) {
      // Nothing left to write (the reader may have taken the block's records): no fault either.
      if (this.writeFault !== undefined) this.recovered();
      return true;
    }
    try {
      this.writer.write(this.block);
    } catch (err) {
      // The writer throws ERR_HOPPER_IO for a failed system call. A bug would be taken for a write
      // fault too (announced with its message, and retried): this runs on timers, where throwing
      // it on would crash the process, and the log has no way yet to fail the channel from there.
      this.writeFailed(err as HopperError);
      return false;
    }
    if (this.writeFault !== undefined) this.recovered();
    return true;
  }

  /**
   * The next record in write order (the caller knows one exists: `records > 0`), or what stands
   * in its way: {@link WAIT} when it cannot be read now (a failed read is being retried; the log
   * calls `onRecovered` when it is worth asking again), or, with `onCorrupt: 'skip'`, the
   * {@link LostRecords} skipped over (ask again at once). Records are never undefined. Throws
   * `ERR_HOPPER_CORRUPT_SEGMENT` (with 'error') or `ERR_HOPPER_IO` when reads keep failing.
   */
  next(): unknown {
    const reader = this.reader;
    try {
      if (reader.left === 0 && !this.loadBlock()) return this.nextFromBlock();
      const value = reader.next();
      this.records--;
      if (reader.left === 0) {
        reader.endBlock();
        this.afterBlock();
      }
      if (this.retry.failingReads !== 0) this.readsWork();
      return value;
    } catch (err) {
      // The segment reader's Corruption is its typed failure: it becomes a loss (or, with
      // 'error', ERR_HOPPER_CORRUPT_SEGMENT) here and goes no further.
      if (err instanceof Corruption) return this.corruption(err);
      if (HopperError.is(err, 'ERR_HOPPER_IO')) return this.readFailed(err);
      throw err;
    }
  }

  /** The next record, from the front of the block being filled: the reader has read every file. */
  private nextFromBlock(): unknown {
    const value = this.block.shift();
    this.records--;
    if (this.retry.failingReads !== 0) this.readsWork();
    // Everything is read: a segment still open for writing holds nothing unread, so it can go.
    const active = this.ledger.active();
    if (this.records === 0 && active !== undefined) this.removeSegment(active);
    return value;
  }

  /**
   * Has the reader load the next block from the files; false when every file has been read and
   * the next records are in the block being filled.
   */
  private loadBlock(): boolean {
    const reader = this.reader;
    let segment = reader.segment ?? this.startReading();
    if (segment === undefined) return false;
    while (!reader.hasBlock()) {
      // Caught up with the segment being written: what follows is in the block being filled.
      if (!segment.sealed) return false;
      this.removeSegment(segment);
      segment = this.startReading();
      if (segment === undefined) return false;
    }
    reader.loadBlock();
    return true;
  }

  /** After the last record of a block: free the segment as soon as it has been read through. */
  private afterBlock(): void {
    const reader = this.reader;
    if (reader.hasBlock()) return;
    const segment = reader.segment!;
    // A sealed segment goes once read through; the active one too once every disk record is read,
    // so an idle channel holds no files.
    if (segment.sealed || this.records === 0) this.removeSegment(segment);
  }

  /** Opens the oldest segment with blocks to read; undefined when there is none (the records are in the block being filled). */
  private startReading(): Segment | undefined {
    const segment = this.ledger.oldestUnread();
    if (segment === undefined || segment.blockEnds.length === 0) return undefined;
    // Through a directory that was swapped (for a symlink, or another directory), nothing is read.
    if (!this.directory.intact())
      throw this.directory.verify() ?? ioError('opening a segment for reading', segment.file, new Error('the channel directory was replaced'));
    this.reader.open(segment);
    return segment;
  }

  /**
   * Corruption found in the segment being read: with 'error', the error; with 'skip', step over
   * what is damaged (the rest of the block, or the whole segment when its header or length is
   * wrong) using the block index kept while writing, and report exactly how many records were lost.
   */
  private corruption(found: Corruption): LostRecords {
    const reader = this.reader;
    const segment = reader.segment!;
    if (this.options.onCorrupt === 'error') throw corruptSegmentError(segment.file, found.offset, found.problem);
    const lost = reader.skip(found);
    this.records -= lost;
    if (!reader.hasBlock() && (segment.sealed || this.records === 0)) {
      this.removeSegment(segment);
    }
    return new LostRecords(lost, segment.file, found.offset, found.problem);
  }

  /**
   * Deletes the oldest sealed segment the reader is not reading, to make room (the `'drop-oldest'`
   * policy). Returns where its records stood among the records still in the log (`offset`
   * records come before them), or undefined when no segment can go.
   */
  dropOldest(): DroppedSegment | undefined {
    const reading = this.reader.segment;
    const victim = this.ledger.oldestDroppable(reading);
    if (victim === undefined) return undefined;
    // Only the segment being read can come before the victim with records still unread.
    const { segments } = this.ledger;
    const offset = reading !== undefined && segments.indexOf(reading) < segments.indexOf(victim) ? reading.records - this.reader.fromSegment : 0;
    try {
      unlinkOurs(this.fs, this.directory, victim);
    } catch (err) {
      if (!isSystemError(err)) throw err;
      // Safe to answer "nothing can go": nothing was removed, the segment keeps its records, and
      // the caller applies its policy as for a full log. The next write that needs room tries
      // again; a run of such failures is announced once.
      if (!this.dropFailing) {
        this.dropFailing = true;
        this.hooks.onFault({ operation: 'remove', file: victim.file, error: ioError('removing a segment to make room', victim.file, err) });
      }
      return undefined;
    }
    this.dropFailing = false;
    this.records -= victim.records;
    this.forget(victim);
    return { offset, count: victim.records, file: victim.file };
  }

  /**
   * Closes every file and removes every segment this log created. Idempotent. Returns what it could
   * not remove, for the caller to announce once it has released the rest (a 'fault' listener runs
   * user code, which must not run while files are half closed).
   */
  close(): FaultEvent[] {
    if (this.closed) return [];
    this.closed = true;
    this.retry.stop();
    this.reader.closeFile();
    const leftovers: FaultEvent[] = [];
    for (const segment of this.ledger.clear()) {
      if (segment.writeFd !== undefined) closeQuietly(this.fs, segment.writeFd);
      const left = this.removeAtClose(segment);
      if (left !== undefined) leftovers.push(left);
    }
    this.block.clear();
    this.records = 0;
    return leftovers;
  }

  /** Removes a file at close, trying a few times; returns the fault when it cannot go (it is left). */
  private removeAtClose(segment: Segment): FaultEvent | undefined {
    const { file } = segment;
    let error: unknown;
    for (let attempt = 0; attempt < CLOSE_ATTEMPTS; attempt++) {
      try {
        unlinkOurs(this.fs, this.directory, segment);
        return undefined;
      } catch (err) {
        // A system error (EBUSY, EIO...) leaves the file for the next open, which removes it as
        // stale; anything else is a bug, and goes on to the caller.
        if (!isSystemError(err)) throw err;
        error = err;
      }
    }
    return { operation: 'remove', file, error: ioError('removing a segment at close', file, error) };
  }

  private flushOnTurn = (): void => {
    this.flushScheduled = false;
    if (this.writeFault === undefined) this.tryFlush();
  };

  private removeSegment(segment: Segment): void {
    if (segment === this.reader.segment) this.reader.close();
    if (segment.writeFd !== undefined) {
      closeQuietly(this.fs, segment.writeFd);
      segment.writeFd = undefined;
      segment.sealed = true;
    }
    try {
      unlinkOurs(this.fs, this.directory, segment);
    } catch (err) {
      // Delivery goes on; the file keeps counting against the caps until a retry succeeds.
      segment.removalFailed = true;
      this.hooks.onFault({ operation: 'remove', file: segment.file, error: ioError('removing a segment', segment.file, err) });
      this.retry.schedule();
      return;
    }
    this.forget(segment);
    this.retryRemovals();
  }

  private retryRemovals(): void {
    for (const segment of this.ledger.failedRemovals()) {
      try {
        unlinkOurs(this.fs, this.directory, segment);
      } catch (err) {
        if (!isSystemError(err)) throw err;
        // Still failing: announced at its first failure (removeSegment); the timer tries again.
        this.retry.schedule();
        continue;
      }
      this.forget(segment);
    }
  }

  private forget(segment: Segment): void {
    this.ledger.forget(segment);
    this.hooks.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
    // Room on disk may be what a failing write was waiting for.
    if (this.writeFault !== undefined) this.tryFlush();
  }

  private writeFailed(err: HopperError): void {
    const first = this.writeFault === undefined;
    this.writeFault = err;
    if (first) this.hooks.onFault({ operation: 'write', file: err.file ?? this.dir, error: err });
    this.retry.schedule();
  }

  private readFailed(err: HopperError): typeof WAIT {
    if (this.retry.readFailed()) throw err;
    this.hooks.onFault({ operation: 'read', file: err.file ?? this.dir, error: err });
    this.retry.schedule();
    return WAIT;
  }

  private readsWork(): void {
    this.retry.readsWork(this.writeFault !== undefined);
  }

  private recovered(): void {
    this.writeFault = undefined;
    this.retry.writesWork();
    this.scheduleRecovered();
  }

  /**
   * Tells the channel on a tick of its own: a recovery is found inside an append, a read or a
   * drop (a removed segment freed the room a failing write waited for), while the channel is in
   * the middle of placing or delivering; it picks the news up once it is done, never re-entered.
   */
  private scheduleRecovered(): void {
    if (this.recoveryScheduled) return;
    this.recoveryScheduled = true;
    process.nextTick(this.reportRecovered);
  }

  private reportRecovered = (): void => {
    this.recoveryScheduled = false;
    if (!this.closed) this.hooks.onRecovered();
  };

  /** The retry timer fired: try again whatever failed. */
  private retryFailed = (): void => {
    this.retryRemovals();
    if (this.writeFault !== undefined) this.tryFlush();
    // A waiting reader tries again (a read that fails again schedules the next retry).
    else this.scheduleRecovered();
  };
}
