import nodeFs from 'node:fs';
import type { RecordCodec } from '../codec.js';
import { HopperError, corruptSegmentError, ioError } from '../errors.js';
import { BLOCK_FRAMING_BYTES, compressionSlack } from '../ocf.js';
import type { OnCorrupt, SegmentCodec } from '../options.js';
import { BlockBuilder } from './block-builder.js';
import {
  CLOSE_ATTEMPTS,
  RetryPolicy,
  closeQuietly,
  isSystemError,
  plainDirectory,
  unlinkOurs,
  unlinkOursAsync,
  type SegmentDirectory,
  type SegmentFileSystem,
} from './io.js';
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
  /**
   * Bytes that may wait for the disk (write-behind) before the log writes synchronously, as the
   * last resort. 0: every block and every removal is a synchronous call, as before 0.6.0.
   */
  maxPendingDiskBytes: number;
}

/** Bytes gathered into one background write at most. */
const GATHER_BYTES = 1024 * 1024;

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
   * A retried operation went through, a read is worth retrying, or bytes a waiting reader needs
   * reached the disk: blocked writers and a waiting reader can go on. Called on a tick of its own,
   * never from inside a call into the log.
   */
  onRecovered(): void;
  /**
   * More than `maxPendingDiskBytes` waited for the disk, so the log wrote synchronously (the
   * last resort). Called once per episode: the next call comes after the waiting bytes fell to
   * half the bound again.
   */
  onDiskBehind?(event: DiskBehindEvent): void;
}

/** Payload of the `'diskBehind'` event. */
export interface DiskBehindEvent {
  /** Bytes that were waiting for the disk when the log wrote synchronously. */
  pendingDiskBytes: number;
  maxPendingDiskBytes: number;
}

/**
 * The segment log. Records are encoded into a block in memory; a block is handed to the writer
 * when it reaches its target size or when the event loop turns, and written behind the caller's
 * back (libuv's thread pool), gathered into large writes. The reader reads whole blocks only, once
 * they are on disk, checks them against the framing and against what was written, and decodes
 * records one at a time. Failed file operations are retried with backoff.
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
  /** maxPendingDiskBytes is 0: every block and removal is written synchronously. */
  private readonly writeThrough: boolean;
  /** The reader asked for a block still waiting for the disk: tell the channel when bytes land. */
  private readerWaiting = false;
  /** The disk fell behind and the log wrote synchronously; cleared when the waiting bytes fall to half the bound. */
  private behind = false;
  /** Synchronous writes made because the disk fell behind. */
  syncWrites = 0;
  /** Background removals under way. */
  private readonly removals = new Set<Promise<void>>();
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
    this.writeThrough = options.maxPendingDiskBytes === 0;
    this.writer = new SegmentWriter(
      fileSystem,
      this.directory,
      this.ledger,
      codec.type.schema({ exportAttrs: true }),
      { codec: options.codec, channel: options.channel, sealAt: this.sealAt, gatherBytes: Math.max(1, Math.min(GATHER_BYTES, options.maxPendingDiskBytes)) },
      {
        sealed: (segment) => hooks.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records }),
        written: this.written,
        failed: (err) => this.writeFailed(err as HopperError),
      },
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

  /** Bytes of blocks handed to the writer and not on disk yet. */
  get pendingBytes(): number {
    return this.ledger.pendingBytes;
  }

  /** Resolves once no background file operation is under way (a close that waits; tests). */
  async idle(): Promise<void> {
    for (;;) {
      await this.writer.idle();
      await this.reader.idle();
      if (this.removals.size === 0) return;
      await Promise.all(this.removals);
    }
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

  /**
   * Hands the block being filled to the writer, which writes it in the background (or now, when
   * the log writes through or the disk is behind); false when disk writes are failing (what waits
   * is written again by the retry).
   */
  tryFlush(): boolean {
    if (this.closed) return true;
    if (this.block.count > 0) this.writer.enqueue(this.block);
    // Failing: the retry timer writes; nothing is started from here.
    if (this.writeFault !== undefined) return false;
    // The disk is behind when more than the bound waits while the background task writes. With
    // the task idle, what waits was just handed over (one large record can exceed the bound on its
    // own): the task takes it, and memory still holds the bound plus the one write in flight.
    if (this.writeThrough || (this.ledger.pendingBytes > this.options.maxPendingDiskBytes && this.writer.writing)) return this.writeBehindSync();
    this.writer.kick();
    return true;
  }

  /** The retry timer (or room made on disk) tries the failed writes again. */
  private retryWrites(): void {
    if (this.block.count > 0) this.writer.enqueue(this.block);
    // Nothing waits any more: no fault either.
    if (this.ledger.pendingBytes === 0) {
      this.recovered();
      return;
    }
    if (!this.writeThrough) {
      this.writer.resume();
      return;
    }
    try {
      // Calls `written`, which ends the fault.
      this.writer.writeSync();
    } catch (err) {
      this.writeFailed(err as HopperError);
    }
  }

  /**
   * The disk is behind (or the log writes through): what waits, and is not being written in the
   * background, is written now, synchronously. Memory stays bounded and no record is refused; the
   * price is an event loop that waits for the disk while it is this slow.
   */
  private writeBehindSync(): boolean {
    const pending = this.ledger.pendingBytes;
    try {
      if (this.writer.writeSync() === 0) {
        this.writer.kick();
        return true;
      }
    } catch (err) {
      // The writer throws ERR_HOPPER_IO for a failed system call. A bug would be taken for a write
      // fault too (announced with its message, and retried): this runs on timers, where throwing
      // it on would crash the process, and the log has no way yet to fail the channel from there.
      this.writeFailed(err as HopperError);
      return false;
    }
    if (!this.writeThrough) {
      this.syncWrites++;
      if (!this.behind) {
        this.behind = true;
        this.hooks.onDiskBehind?.({ pendingDiskBytes: pending, maxPendingDiskBytes: this.options.maxPendingDiskBytes });
      }
    }
    this.writer.kick();
    return true;
  }

  /** A read ahead ended: a reader waiting for it is told. */
  private readLanded = (): void => {
    if (!this.closed) this.wakeReader();
  };

  /** Segments read through while the writer used them go once it lets go of them. */
  private removeLetGo(): void {
    for (const segment of [...this.ledger.segments]) if (segment.readThrough && !this.writer.busy(segment)) this.removeSegment(segment);
  }

  /** Bytes reached the disk. */
  private written = (background: boolean): void => {
    this.removeLetGo();
    // The episode ends when the disk itself has caught up, not when the last resort emptied the queue.
    if (background && this.behind && this.ledger.pendingBytes <= this.options.maxPendingDiskBytes / 2) this.behind = false;
    if (this.writeFault !== undefined) {
      this.recovered();
      this.writer.resume();
      return;
    }
    this.wakeReader();
  };

  /**
   * A reader waiting for bytes on their way to the disk is told, on the next tick: the news may
   * come from inside an append, and the channel is not entered again from there.
   */
  private wakeReader(): void {
    if (!this.readerWaiting) return;
    this.readerWaiting = false;
    this.scheduleRecovered();
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
      if (reader.left === 0) {
        const loaded = this.loadBlock();
        if (loaded === 'wait') {
          this.readerWaiting = true;
          return WAIT;
        }
        if (loaded === 'in-block') return this.nextFromBlock();
      }
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
   * Has the reader load the next block from the files: 'in-block' when every block has been read
   * and the next records are in the block being filled; 'wait' when the next block is still on its
   * way to the disk (the reader is told when it lands).
   */
  private loadBlock(): 'loaded' | 'in-block' | 'wait' {
    const reader = this.reader;
    let segment = reader.segment ?? this.startReading();
    if (segment === 'wait') return 'wait';
    if (segment === undefined) return 'in-block';
    while (!reader.hasBlock()) {
      // Caught up with the segment being written: what follows is in the block being filled.
      if (!segment.sealed) return 'in-block';
      this.removeSegment(segment);
      segment = this.startReading();
      if (segment === 'wait') return 'wait';
      if (segment === undefined) return 'in-block';
    }
    const end = segment.blockEnds[reader.block]!;
    // Still waiting for the disk (or being written): read from memory, as the writer holds it.
    const pending = Ledger.pendingBlock(segment, reader.blockStart, end);
    if (pending !== undefined) reader.loadBlockFrom(pending);
    else if (this.writeThrough) reader.loadBlock();
    // Read ahead on the thread pool: waited for only when the reader is faster than the disk.
    else return reader.loadBlockAhead(this.readLanded);
    return 'loaded';
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

  /**
   * Opens the oldest segment with blocks to read; undefined when there is none (the records are in
   * the block being filled), 'wait' when its file is not created yet.
   */
  private startReading(): Segment | undefined | 'wait' {
    const segment = this.ledger.oldestUnread();
    if (segment === undefined || segment.blockEnds.length === 0) return undefined;
    // Not created yet: its blocks are read from memory; the file is opened once one is on disk.
    if (!segment.created) {
      this.reader.begin(segment);
      return segment;
    }
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
    // Not one the background task is writing: its bytes are on their way to the file.
    const victim = this.ledger.oldestDroppable(reading, (segment) => this.writer.busy(segment));
    if (victim === undefined) return undefined;
    // Records still unread before the victim: in the segment being read, and in segments the
    // background task is writing (they were skipped as victims); those read through hold none.
    let offset = 0;
    for (const segment of this.ledger.segments) {
      if (segment === victim) break;
      if (segment.removing || segment.removalFailed || segment.readThrough) continue;
      offset += segment === reading ? segment.records - this.reader.fromSegment : segment.records;
    }
    try {
      if (victim.writeFd !== undefined) {
        closeQuietly(this.fs, victim.writeFd);
        victim.writeFd = undefined;
      }
      // A segment still waiting for the disk as a whole has no file: its bytes are let go.
      if (victim.created) unlinkOurs(this.fs, this.directory, victim);
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
    this.writer.close();
    this.reader.closeFile();
    const leftovers: FaultEvent[] = [];
    const readThrough: Segment[] = [];
    for (const segment of this.ledger.clear()) {
      // A descriptor a background write is using is closed by the writer when that write ends:
      // closed now, its number could be reused by another file before the write lands.
      if (segment.writeFd !== undefined && !this.writer.busy(segment)) {
        closeQuietly(this.fs, segment.writeFd);
        segment.writeFd = undefined;
      }
      // A segment whose file was never created has nothing on disk.
      if (!segment.created) continue;
      const left = this.removeAtClose(segment);
      if (left !== undefined) leftovers.push(left);
      else if (segment.removing) readThrough.push(segment);
    }
    this.block.clear();
    this.records = 0;
    // Segments read through whose removal was under way in the background are gone now: they are
    // announced as removed, as they would have been, once every file is closed.
    for (const segment of readThrough) this.hooks.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
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

  /**
   * Removes a segment read through: at once when the log writes through, else in the background
   * (it counts against the caps, and is not read, until it is gone).
   */
  private removeSegment(segment: Segment): void {
    if (segment === this.reader.segment) this.reader.close();
    // Read through: no block goes to it any more.
    segment.sealed = true;
    // The writer is writing to it: removed once it lets go.
    if (this.writer.busy(segment)) {
      segment.readThrough = true;
      return;
    }
    segment.readThrough = false;
    // What still waits for the disk was read from memory: it need not be written any more.
    this.ledger.discard(segment);
    if (!segment.created) {
      // It never reached the disk: nothing to remove, and nothing to announce.
      this.ledger.forget(segment);
      if (this.writeFault !== undefined) this.retryWrites();
      return;
    }
    if (segment.writeFd !== undefined) {
      // Nothing writes to the descriptor (the writer let go). Closed at once, as once per segment:
      // a descriptor closed in the background could outlive the channel's close.
      closeQuietly(this.fs, segment.writeFd);
      segment.writeFd = undefined;
      segment.sealed = true;
    }
    if (!this.writeThrough) {
      this.removeInBackground(segment, true);
      return;
    }
    try {
      unlinkOurs(this.fs, this.directory, segment);
    } catch (err) {
      this.removalFailed(segment, err, true);
      return;
    }
    this.forget(segment);
    this.retryRemovals();
  }

  /** Unlinks `segment` on the thread pool; forgets it once gone. `first`: a failure is announced. */
  private removeInBackground(segment: Segment, first: boolean): void {
    segment.removing = true;
    const removal = unlinkOursAsync(this.fs, this.directory, segment).then(
      () => {
        segment.removing = false;
        if (this.closed) return;
        this.forget(segment);
        if (first) this.retryRemovals();
      },
      (err: unknown) => {
        segment.removing = false;
        if (this.closed) return;
        this.removalFailed(segment, err, first);
      },
    );
    this.removals.add(removal);
    void removal.finally(() => this.removals.delete(removal));
  }

  /** Delivery goes on; the file keeps counting against the caps until a retry succeeds. */
  private removalFailed(segment: Segment, err: unknown, first: boolean): void {
    segment.removalFailed = true;
    // Still failing: announced at its first failure; the timer tries again.
    if (first) this.hooks.onFault({ operation: 'remove', file: segment.file, error: ioError('removing a segment', segment.file, err) });
    this.retry.schedule();
  }

  private retryRemovals(): void {
    for (const segment of this.ledger.failedRemovals()) {
      if (segment.removing) continue;
      if (!this.writeThrough) {
        this.removeInBackground(segment, false);
        continue;
      }
      try {
        unlinkOurs(this.fs, this.directory, segment);
      } catch (err) {
        if (!isSystemError(err)) throw err;
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
    if (this.writeFault !== undefined) this.retryWrites();
  }

  private writeFailed(err: HopperError): void {
    this.removeLetGo();
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
    if (this.writeFault !== undefined) this.retryWrites();
    // A waiting reader tries again (a read that fails again schedules the next retry).
    else this.scheduleRecovered();
  };
}
