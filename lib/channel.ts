import type { RecordCodec } from './codec.js';
import {
  destroyedError,
  fullError,
  producerFailedError,
  recordTooLargeError,
  refusedForFault,
  writeAfterEndError,
  type HopperError,
  type LimitOption,
} from './errors.js';
import { memoryCopy } from './plain-data.js';
import type { ResolvedOptions } from './options.js';
import { DiskRun, PlacementQueue } from './placements.js';
import type { AppendResult, DiskBehindEvent, FaultEvent, LostRecords, SegmentEvent } from './segments/index.js';

/** Counters of a channel at one moment. */
export interface HopperStats {
  /** Records held in memory. */
  memoryRecords: number;
  /** Estimated bytes of the records held in memory; never above `maxMemoryBytes`. */
  memoryBytes: number;
  /** Records waiting in segment files (or in the block being filled for them). */
  diskRecords: number;
  /** Bytes of the segment files, plus the block being filled. */
  diskBytes: number;
  /** Segment files that exist now. */
  segments: number;
  /** Records accepted since the channel opened. */
  recordsIn: number;
  /** Records handed to the reader since the channel opened. */
  recordsOut: number;
  /** Records that went to disk since the channel opened. */
  spilled: number;
  /** Times records started going to disk with no disk backlog (`'spill'` events). */
  spills: number;
  /** Times the disk backlog emptied again (`'caughtUp'` events). */
  caughtUps: number;
  /** Records dropped by a `'drop-newest'` or `'drop-oldest'` policy since the channel opened. */
  dropped: number;
  /** Records lost to damaged segment files and skipped over (`onCorrupt: 'skip'`). */
  corrupted: number;
  /** Bytes handed to the disk and not written yet (write-behind); see `maxPendingDiskBytes`. */
  pendingDiskBytes: number;
  /** Synchronous writes made because more than `maxPendingDiskBytes` waited for the disk. */
  syncWrites: number;
}

/** Payload of the `'corrupt'` event. */
export interface CorruptEvent {
  file: string;
  /** Byte offset in `file` where the damage was found. */
  offset: number;
  /** Records lost (skipped over). */
  count: number;
  problem: string;
}

/** Payload of the `'drop'` event. */
export interface DropEvent {
  /** Records dropped by this event. */
  count: number;
  policy: 'drop-newest' | 'drop-oldest';
  reason: string;
  /** With `'drop-oldest'`: the segment file deleted. */
  file?: string | undefined;
}

/** Events a channel reports, with their payloads. */
export interface ChannelEvents {
  /** Records started going to disk: the first record went to disk while the disk backlog was empty. */
  spill: [{ recordsIn: number; memoryBytes: number }];
  /** The disk backlog is empty again (after a `'spill'`): every record that went to disk has been read (or dropped, or lost). */
  caughtUp: [{ recordsIn: number; recordsOut: number }];
  /** A write met the cap: memory full and a disk cap reached. */
  full: [{ record: unknown; reason: string }];
  /** A segment file was sealed, or removed after being read (or dropped). */
  segment: [SegmentEvent];
  /** Records were dropped by the overflow policy. */
  drop: [DropEvent];
  /** A damaged segment was skipped over (`onCorrupt: 'skip'`). */
  corrupt: [CorruptEvent];
  /** A file operation failed and is being retried; nothing accepted is lost meanwhile. */
  fault: [FaultEvent];
  /** More than `maxPendingDiskBytes` waited for the disk, which was written synchronously; once per episode. */
  diskBehind: [DiskBehindEvent];
}

export type ChannelEmit = <K extends keyof ChannelEvents>(event: K, ...args: ChannelEvents[K]) => void;

/** Where the channel delivers records: a stream adapter's push, end and destroy. */
export interface ChannelReader {
  /** Takes a record; returns false when it wants no more for now. */
  push(record: unknown): boolean;
  /** Every record has been delivered and every writer has ended. */
  end(): void;
  /** Reading failed (a corrupt segment, an I/O error): the channel cannot go on. */
  fail(err: Error): void;
  /**
   * Called before a record is placed while the reader has not asked for records yet: a stream
   * whose consumer is already attached asks now, so records reach it inside `write()` instead
   * of piling up until the stream's first read on a later tick.
   */
  start?(): void;
  /** Every writer has ended: the input is complete (records may still wait to be delivered). */
  inputEnded?(): void;
  /**
   * Whether a record pushed now would wait in the reader's own buffer (a consumer in paused mode,
   * an async iterator) instead of reaching the consumer at once (a `'data'` listener, a pipe). A
   * record handed straight over is then copied first, as a record held in memory is: the producer
   * may reuse what it wrote once its write returned. Absent: it would always wait.
   */
  holds?(): boolean;
}

/**
 * The disk tier as the channel sees it: the segment log (segments/index.ts), or anything that
 * keeps records in the same order with the same answers.
 */
export interface DiskTier {
  /** Records appended and not yet read (or dropped, or lost). */
  readonly records: number;
  readonly bytes: number;
  readonly segmentCount: number;
  /** Bytes handed to the disk and not written yet. */
  readonly pendingBytes: number;
  /** Synchronous writes made because the disk fell behind. */
  readonly syncWrites: number;
  /** The error disk writes are failing with, while they are retried. */
  readonly fault: Error | undefined;
  /** Keeps a record, or says which cap (or fault) is in the way; nothing is kept unless 'ok'. */
  append(record: unknown): AppendResult;
  /** The next record in write order; undefined when none can be read now (a failure being retried, or corruption skipped). */
  next(): unknown;
  /** The records the last next() skipped over as corrupt, once. */
  takeLost(): LostRecords | undefined;
  /** Deletes the oldest segment to make room: where its records stood, or undefined when none can go. */
  dropOldest(): { offset: number; count: number; file: string } | undefined;
}

/** What a channel is built from: see openChannel() in engine.ts, which builds them. */
export interface ChannelParts {
  codec: RecordCodec;
  disk: DiskTier;
  /** The channel directory, for `.path`. */
  path: string;
  /** Closes the disk tier, then releases the channel directory; called once, at close. */
  release(): void;
  /** Resolves once the disk tier has no file operation under way in the background. */
  idle(): Promise<void>;
}

type WriteCallback = (err?: Error | null) => void;

/** Why a record could not be placed: a cap, or disk writes failing (`fault`). */
interface Refusal {
  reason: string;
  fault?: Error;
  /** The disk cap that had no room. */
  option?: LimitOption;
}

const WAITING: Refusal = { reason: 'earlier writes are waiting for room' };

/** The size of a record that went straight to the segment log: not estimated (see SPILLING). */
const UNSIZED = -1;

/**
 * The reader's push() threw: a consumer's 'data' listener, run inside push(). Like a PassThrough,
 * the channel lets that exception reach whoever called write() or send(); the record was accepted
 * and delivered.
 */
class ConsumerThrew {
  constructor(readonly error: unknown) {}
}

interface BlockedWrite {
  writer: ChannelWriter | undefined;
  record: unknown;
  size: number;
  callback: WriteCallback;
}

// The channel's state, one integer of flags (as streamx keeps its streams' state). Life: open
// (neither ENDING nor CLOSED), ending, closed.
/** Every writer has ended: records are still delivered, none is accepted. */
const ENDING = 1 << 0;
/** The files are released: nothing is accepted or delivered any more. */
const CLOSED = 1 << 1;
/** Closed because everything was delivered, not destroyed: later writes are "after end". */
const DELIVERED = 1 << 2;
/** Reading failed (a corrupt segment, an I/O error), or the directory was lost: nothing more is accepted. */
const FAILED = 1 << 3;
/** The reader asked for records when there were none: the next placement wakes it. */
const READER_WAITING = 1 << 4;
/** The reader has asked for records at least once (deliver() ran). */
const READER_STARTED = 1 << 5;
/** Records are being pushed to the reader (the pump, or a hand-over): the pump does not start again inside. */
const DELIVERING = 1 << 6;
/** Held writes are being admitted: admission does not start again inside. */
const ADMITTING = 1 << 7;
/** The disk tier is dropping a segment for room (the 'drop-oldest' policy). */
const DROPPING = 1 << 8;
/** The disk tier recovered from a fault while the channel was inside it: the running loop resumes when it is done. */
const RECOVERED = 1 << 9;
/**
 * A record went to disk for want of room in memory, and the reader has taken nothing since: memory
 * has not freed room, so writes go to the segment log without being sized for memory. A smaller
 * record that might have fitted in what room is left goes to disk too; the first record the reader
 * takes (from either tier) ends this.
 */
const SPILLING = 1 << 10;
/** 'spill' was emitted and the disk backlog has not emptied since ('caughtUp' clears it). */
const ON_DISK = 1 << 11;
/** The channel is inside the disk tier or one of its loops: a recovery waits for it to finish. */
const BUSY = DELIVERING | ADMITTING | DROPPING;
/** Not open: ending or closed. */
const NOT_OPEN = ENDING | CLOSED;

/**
 * One producer of a channel (a Writable's write side). The channel ends its input when every
 * writer it opened has ended or been aborted.
 */
export class ChannelWriter {
  /** The last error a write of this writer was called back with. */
  lastError: Error | undefined;
  ended = false;
  /**
   * Called when the channel closes while this writer is open, before its held writes are failed:
   * the adapter destroys its stream first, so those failures are not reported as stream errors.
   */
  onChannelClose: () => void = () => {};
  /**
   * Called when reading fails while this writer is open: by default as {@link onChannelClose}.
   * A Duplex whose read side is the failing reader keeps its write side until it is destroyed.
   */
  onChannelFail: () => void = () => this.onChannelClose();

  constructor(private readonly channel: Channel) {}

  /** Accepts a record and calls back; see {@link Channel.write}. */
  write(record: unknown, callback: WriteCallback): void {
    this.channel.write(record, callback, this);
  }

  /** No more records from this writer. */
  end(): void {
    this.channel.closeWriter(this, false);
  }

  /**
   * The producer failed (the writable was destroyed before end(), `cause` its error if any): the
   * input ends, records accepted so far are still delivered, then the reader fails with
   * `ERR_HOPPER_PRODUCER_FAILED`. Held writes fail, as for {@link abort}.
   */
  fail(cause: Error | undefined): void {
    this.channel.cutShort(this, cause);
  }

  /** The writer is gone (destroyed): its held writes fail, and it counts as ended. */
  abort(): void {
    this.channel.closeWriter(this, true);
  }
}

/**
 * The engine: hopper's placement queue over a memory tier and a segment log.
 * A record goes to memory while the budget allows, else to the segment log, and the queue
 * records where each went (`Disk(n)` runs collapse), so the reader follows the write order
 * across both tiers. Knows nothing of stream classes: writers write with callbacks, and one
 * reader takes records through {@link ChannelReader}.
 */
export class Channel {
  private readonly options: ResolvedOptions;
  private readonly codec: RecordCodec;
  private readonly emit: ChannelEmit;
  private readonly log: DiskTier;
  private readonly release: () => void;
  /** Resolves once the disk tier has no file operation under way in the background. */
  readonly idle: () => Promise<void>;
  /** The channel directory `<dataDir>/<name>`. */
  readonly path: string;
  private readonly queue = new PlacementQueue();
  private readonly blocked: BlockedWrite[] = [];
  private readonly writers = new Set<ChannelWriter>();
  private reader: ChannelReader | undefined;

  private flags = 0;
  private memoryBytes = 0;
  private memoryRecords = 0;
  private recordsIn = 0;
  private recordsOut = 0;
  private spilled = 0;
  private dropped = 0;
  private corrupted = 0;
  private spills = 0;
  private caughtUps = 0;
  /** A producer failed before the input ended: the reader fails with this once everything is delivered. */
  private inputFailure: HopperError | undefined;
  /** Why reading failed (FAILED). */
  private failure: Error | undefined;
  /** The codec's copy, for records the memory tier holds that are not plain data (see memoryCopy). */
  private readonly copyOther: (record: unknown) => unknown;

  constructor(options: ResolvedOptions, parts: ChannelParts, emit: ChannelEmit) {
    this.options = options;
    this.emit = emit;
    this.codec = parts.codec;
    this.copyOther = (record) => parts.codec.copy(record);
    this.log = parts.disk;
    this.path = parts.path;
    this.release = parts.release;
    this.idle = parts.idle;
  }

  /** A failed disk operation went through on retry: blocked writers and a waiting reader can go on. */
  diskRecovered(): void {
    // Inside the disk tier (a read, or a segment dropped for room, removed a file a failing write
    // was waiting for): the log is not entered again from here; the loop running resumes after.
    if ((this.flags & BUSY) !== 0) {
      this.flags |= RECOVERED;
      return;
    }
    // A timer's callback: a consumer's exception has no write() to go to, and fails the channel.
    try {
      this.resume();
    } catch (err) {
      this.fail((err instanceof ConsumerThrew ? err.error : err) as Error);
    }
  }

  /** True once every writer has ended and every accepted record has been read. */
  get finished(): boolean {
    return (this.flags & NOT_OPEN) !== 0 && this.queue.length === 0 && this.blocked.length === 0;
  }

  get closed(): boolean {
    return (this.flags & CLOSED) !== 0;
  }

  /** The reader has asked for records at least once: records placed now are on their way to a consumer. */
  get readerAttached(): boolean {
    return (this.flags & READER_STARTED) !== 0;
  }

  /** Records accepted and not yet handed to the reader (memory and disk); 0 once reading failed. */
  get waiting(): number {
    return (this.flags & (CLOSED | FAILED)) !== 0 ? 0 : this.memoryRecords + this.log.records;
  }

  /** Opens a writer; the input ends when every opened writer has ended. */
  openWriter(): ChannelWriter {
    this.checkOpen();
    const writer = new ChannelWriter(this);
    this.writers.add(writer);
    return writer;
  }

  /** Sets where records go. There is one reader per channel. */
  attachReader(reader: ChannelReader): void {
    this.reader = reader;
  }

  /**
   * Accepts a record or throws: `ERR_HOPPER_FULL` (with `.record`) when memory is full, a disk
   * cap is reached and the policy is `'block'` or `'error'`; `ERR_HOPPER_IO` (with `.record`)
   * when memory is full and disk writes are failing; `ERR_HOPPER_INVALID_RECORD`;
   * `ERR_HOPPER_RECORD_TOO_LARGE`; or Node's write-after-end / destroyed codes.
   * With a drop policy, a record that finds no room is dropped and counted instead.
   */
  send(record: unknown): void {
    this.checkOpen();
    let refusal: Refusal | undefined;
    try {
      if (this.tryHandOver(record)) return;
      const size = this.checkAndSize(record);
      refusal = this.blocked.length > 0 ? WAITING : this.place(record, size);
    } catch (err) {
      throw err instanceof ConsumerThrew ? err.error : err;
    }
    if (refusal === undefined) return;
    this.emit('full', { record, reason: refusal.reason });
    if (!this.countDropped(refusal.reason)) throw this.refusalError(record, refusal);
  }

  /**
   * Accepts a record and calls back at once, or, when full, as `onFull` says: `'block'` holds
   * the callback until the reader frees room; `'error'` calls back with `ERR_HOPPER_FULL`; a drop
   * policy drops (and counts) the record and calls back at once.
   */
  write(record: unknown, callback: WriteCallback, writer?: ChannelWriter): void {
    let size: number;
    let refusal: Refusal | undefined;
    let handed: boolean;
    try {
      if (writer?.ended) throw writeAfterEndError();
      // A writer still open while reading fails shares the failure (a Duplex is destroyed with it).
      if (this.failure !== undefined && writer !== undefined) throw this.failure;
      this.checkOpen();
      handed = this.tryHandOver(record);
      if (!handed) {
        size = this.checkAndSize(record);
        refusal = this.blocked.length > 0 ? WAITING : this.place(record, size);
      }
    } catch (err) {
      if (err instanceof ConsumerThrew) {
        // Accepted and delivered: the write succeeded, and the consumer's exception goes to the caller.
        callback();
        throw err.error;
      }
      this.failWrite(writer, callback, err as Error);
      return;
    }
    if (handed || refusal === undefined) {
      callback();
      return;
    }
    this.emit('full', { record, reason: refusal.reason });
    if (this.options.onFull === 'block') this.blocked.push({ writer, record, size: size!, callback });
    else if (this.countDropped(refusal.reason)) callback();
    else this.failWrite(writer, callback, this.refusalError(record, refusal));
  }

  /**
   * Validates a record (throws as the codec's validate()); sizes it unless it is going straight to
   * disk (while spilling, or with a memory budget of 0).
   */
  private checkAndSize(record: unknown): number {
    if ((this.flags & SPILLING) === 0 && this.options.maxMemoryBytes !== 0) return this.codec.validateAndSize(record);
    this.codec.validate(record);
    return UNSIZED;
  }

  private refusalError(record: unknown, refusal: Refusal): HopperError {
    return refusal.fault ? refusedForFault(record, refusal.fault) : fullError(record, refusal.reason, refusal.option);
  }

  /** A writer's producer failed: see {@link ChannelWriter.fail}. The first failure is the one reported. */
  cutShort(writer: ChannelWriter, cause: Error | undefined): void {
    if (writer.ended) return;
    this.inputFailure ??= producerFailedError(cause);
    this.closeWriter(writer, true);
  }

  /** Ends a writer (`aborted`: it was destroyed, so its held writes fail). Idempotent. */
  closeWriter(writer: ChannelWriter, aborted: boolean): void {
    if (writer.ended) return;
    writer.ended = true;
    this.writers.delete(writer);
    if (aborted) {
      for (let i = this.blocked.length - 1; i >= 0; i--) {
        const write = this.blocked[i]!;
        if (write.writer !== writer) continue;
        this.blocked.splice(i, 1);
        write.callback(destroyedError());
      }
    }
    if (this.writers.size === 0 && (this.flags & NOT_OPEN) === 0) {
      this.flags |= ENDING;
      this.reader?.inputEnded?.();
    }
    try {
      // Held writes of other writers may now be first in line.
      if (this.blocked.length > 0) this.admitBlocked();
      this.wakeReader();
    } catch (err) {
      throw err instanceof ConsumerThrew ? err.error : err;
    }
    // Nothing left to deliver: the end goes to the reader now, as a PassThrough's end() pushes its
    // end at once, whether or not anything reads. A failed input waits for a reader instead: its
    // error must not reach a readable nobody listens to yet.
    if (this.reader !== undefined && this.inputFailure === undefined && this.finished && (this.flags & (CLOSED | FAILED)) === 0) {
      this.flags |= DELIVERED;
      this.close();
      this.reader.end();
    }
  }

  /**
   * Hands records to the reader, in write order, until its push() returns false or none is ready;
   * then the next record placed (or the end) wakes it. Failures go to the reader's fail().
   */
  deliver(): void {
    try {
      this.pump();
    } catch (err) {
      throw err instanceof ConsumerThrew ? err.error : err;
    }
  }

  /**
   * {@link deliver}, with a consumer's exception as a {@link ConsumerThrew}; then what a recovery
   * of the disk tier during it asks for.
   */
  private pump(): void {
    this.deliverAll();
    if ((this.flags & RECOVERED) !== 0) this.settle();
  }

  private deliverAll(): void {
    const reader = this.reader;
    if (reader === undefined || (this.flags & (DELIVERING | CLOSED | FAILED)) !== 0) return;
    this.flags |= READER_STARTED | DELIVERING;
    try {
      for (;;) {
        const head = this.queue.peek();
        if (head instanceof DiskRun && head.count > 0 && this.blocked.length === 0) {
          // A run of disk records, read straight through: the per-record bookkeeping of next() is
          // for the run's edges (its end, lost records, held writes), checked again after it.
          const more = this.deliverRun(reader, head);
          if (more === false || (this.flags & CLOSED) !== 0) return;
          if (more === true) continue;
          this.flags |= READER_WAITING;
          return;
        }
        let record: unknown;
        try {
          record = this.next();
        } catch (err) {
          this.fail(err as Error);
          return;
        }
        if (record === undefined) {
          if (!this.finished) {
            this.flags |= READER_WAITING;
            return;
          }
          // Everything is delivered: release the files before the reader sees the end.
          this.flags |= DELIVERED;
          this.close();
          if (this.inputFailure === undefined) reader.end();
          else reader.fail(this.inputFailure);
          return;
        }
        if (!this.push(reader, record) || (this.flags & CLOSED) !== 0) return;
      }
    } finally {
      this.flags &= ~DELIVERING;
    }
  }

  /**
   * Pushes the records of `run` (the head placement) while the reader wants them and no write is
   * held. Returns false when the reader wants no more (or reading failed); true when deliverAll
   * goes on (the run ended, a write is now held, or lost records were skipped over); undefined
   * when the log has no record to give now (a failed read is being retried).
   */
  private deliverRun(reader: ChannelReader, run: DiskRun): boolean | undefined {
    const log = this.log;
    for (;;) {
      let record: unknown;
      try {
        record = log.next();
      } catch (err) {
        this.fail(err as Error);
        return false;
      }
      if (record === undefined) {
        const lost = log.takeLost();
        if (lost === undefined) return undefined;
        this.skipLost(lost);
        return true;
      }
      this.recordsOut++;
      this.flags &= ~SPILLING;
      if (--run.count === 0) {
        this.queue.shift();
        this.checkCaughtUp();
        return this.push(reader, record);
      }
      if (!this.push(reader, record)) return false;
      if (this.blocked.length > 0 || (this.flags & CLOSED) !== 0) return true;
    }
  }

  /** Held writes first, then the reader: what a recovery of the disk tier makes possible. */
  private resume(): void {
    if (this.blocked.length > 0) this.admitBlocked();
    this.wakeReader();
  }

  /** Resumes after recoveries deferred while the channel was busy, once nothing runs below. */
  private settle(): void {
    while ((this.flags & (RECOVERED | BUSY)) === RECOVERED) {
      this.flags &= ~RECOVERED;
      this.resume();
    }
  }

  /** Pushes a record; an exception from the consumer comes out as a {@link ConsumerThrew}. */
  private push(reader: ChannelReader, record: unknown): boolean {
    try {
      return reader.push(record);
    } catch (err) {
      // The record was taken; the reader still wants records (its next push wakes the flow again).
      this.flags |= READER_WAITING;
      throw new ConsumerThrew(err);
    }
  }

  stats(): HopperStats {
    return {
      memoryRecords: this.memoryRecords,
      memoryBytes: this.memoryBytes,
      diskRecords: this.log.records,
      diskBytes: this.log.bytes,
      segments: this.log.segmentCount,
      recordsIn: this.recordsIn,
      recordsOut: this.recordsOut,
      spilled: this.spilled,
      spills: this.spills,
      caughtUps: this.caughtUps,
      dropped: this.dropped,
      corrupted: this.corrupted,
      pendingDiskBytes: this.log.pendingBytes,
      syncWrites: this.log.syncWrites,
    };
  }

  /**
   * Releases everything: drops records still held, removes the segment files and the lock,
   * then the directories this channel made. Held writes are called back with `ERR_STREAM_DESTROYED`.
   */
  close(): void {
    if ((this.flags & CLOSED) !== 0) return;
    this.flags |= CLOSED;
    for (const writer of [...this.writers]) writer.onChannelClose();
    this.queue.clear();
    this.memoryBytes = 0;
    this.memoryRecords = 0;
    this.release();
    for (const write of this.blocked.splice(0)) this.failWrite(write.writer, write.callback, destroyedError());
  }

  /** The next record in write order, or undefined when none is ready. Records are never undefined. */
  private next(): unknown {
    let head: unknown;
    let record: unknown;
    for (;;) {
      head = this.queue.peek();
      // Runs emptied by 'drop-oldest' or by skipped corruption stay queued with a count of 0 until they reach the head.
      if (head instanceof DiskRun && head.count === 0) {
        this.queue.shift();
        continue;
      }
      if (!(head instanceof DiskRun)) break;
      record = this.log.next();
      if (record === undefined) {
        const lost = this.log.takeLost();
        if (lost === undefined) return undefined;
        this.skipLost(lost);
        continue;
      }
      if (--head.count === 0) {
        this.queue.shift();
        this.checkCaughtUp();
      }
      break;
    }
    if (head === undefined) return undefined;
    if (!(head instanceof DiskRun)) {
      record = head;
      this.memoryBytes -= this.queue.peekSize();
      this.memoryRecords--;
      this.queue.shift();
    }
    this.recordsOut++;
    this.flags &= ~SPILLING;
    if (this.blocked.length > 0) this.admitBlocked();
    return record;
  }

  /**
   * Reading failed, or the channel directory is no longer ours: no write is accepted any more,
   * and the reader fails (records it already holds still reach its consumer first); the channel
   * closes when the reader is destroyed.
   */
  fail(err: Error): void {
    if ((this.flags & FAILED) !== 0) return;
    this.flags |= FAILED;
    this.failure = err;
    for (const writer of [...this.writers]) writer.onChannelFail();
    if (this.reader) this.reader.fail(err);
    else this.close();
  }

  private failWrite(writer: ChannelWriter | undefined, callback: WriteCallback, err: Error): void {
    if (writer) writer.lastError = err;
    callback(err);
  }

  private checkOpen(): void {
    const flags = this.flags;
    if ((flags & (FAILED | NOT_OPEN)) === 0) return;
    if ((flags & FAILED) !== 0) throw destroyedError();
    throw (flags & (CLOSED | DELIVERED)) === CLOSED ? destroyedError() : writeAfterEndError();
  }

  /** With `'drop-newest'` (or `'drop-oldest'` that found nothing to delete), counts the record as dropped. */
  private countDropped(reason: string): boolean {
    const policy = this.options.onFull;
    if (policy !== 'drop-newest' && policy !== 'drop-oldest') return false;
    this.dropped++;
    this.emit('drop', { count: 1, policy, reason });
    return true;
  }

  /** Places a record in memory or on disk; returns why it could not, or undefined when placed. */
  private place(record: unknown, size: number): Refusal | undefined {
    // A write held while spilling, admitted after the reader freed room, is sized now.
    if (size === UNSIZED && (this.flags & SPILLING) === 0 && this.options.maxMemoryBytes !== 0) size = this.codec.validateAndSize(record);
    if (size !== UNSIZED && this.memoryBytes + size <= this.options.maxMemoryBytes) {
      this.queue.push(memoryCopy(record, this.copyOther), size);
      this.memoryBytes += size;
      this.memoryRecords++;
    } else {
      let result = this.log.append(record);
      if (result === 'full' && this.options.onFull === 'drop-oldest') result = this.appendDroppingOldest(record);
      if (result === 'too-large') {
        if (size === UNSIZED) size = this.codec.validateAndSize(record);
        if (size > this.options.maxMemoryBytes) {
          throw recordTooLargeError(
            record,
            `it is bigger than maxMemoryBytes (${this.options.maxMemoryBytes}) and, encoded, than maxDiskBytes (${this.options.maxDiskBytes}) allows`,
          );
        }
        return {
          reason: `memory holds ${this.memoryBytes} of ${this.options.maxMemoryBytes} bytes and the record does not fit in maxDiskBytes`,
          option: 'maxDiskBytes',
        };
      }
      if (result === 'fault') {
        const fault = this.log.fault!;
        return { reason: `memory holds ${this.memoryBytes} of ${this.options.maxMemoryBytes} bytes and disk writes are failing (${fault.message})`, fault };
      }
      if (result === 'full') {
        const option: LimitOption = this.log.segmentCount >= this.options.maxSegments ? 'maxSegments' : 'maxDiskBytes';
        return {
          reason: `memory holds ${this.memoryBytes} of ${this.options.maxMemoryBytes} bytes and the disk cap ${option} (${this.options[option]}) is reached`,
          option,
        };
      }
      this.spilled++;
      this.flags |= SPILLING;
      const last = this.queue.last();
      if (last instanceof DiskRun) last.count++;
      else this.queue.push(new DiskRun(1), 0);
      if ((this.flags & ON_DISK) === 0) {
        this.flags |= ON_DISK;
        this.spills++;
        this.emit('spill', { recordsIn: this.recordsIn, memoryBytes: this.memoryBytes });
      }
    }
    this.recordsIn++;
    this.wakeReader();
    return undefined;
  }

  /** Appends with the 'drop-oldest' policy: deletes the oldest segments while that makes room. */
  private appendDroppingOldest(record: unknown): AppendResult {
    let result: AppendResult = 'full';
    const busy = this.flags & DROPPING;
    this.flags |= DROPPING;
    try {
      while (result === 'full' && this.dropOldestSegment()) result = this.log.append(record);
    } finally {
      this.flags = (this.flags & ~DROPPING) | busy;
    }
    if ((this.flags & RECOVERED) !== 0) this.settle();
    return result;
  }

  /**
   * Deletes the oldest sealed segment the reader is not in, and takes its records out of the
   * disk runs that held them. The runs cover the records still in the log, in order, so the
   * dropped ones are those at positions [offset, offset + count) of that sequence.
   */
  private dropOldestSegment(): boolean {
    const gone = this.log.dropOldest();
    if (gone === undefined) return false;
    this.removeFromRuns(gone.offset, gone.count);
    this.dropped += gone.count;
    this.emit('drop', { count: gone.count, policy: 'drop-oldest', reason: 'the disk cap was reached', file: gone.file });
    this.checkCaughtUp();
    return true;
  }

  /** Records lost to a damaged segment are the next ones in the log: take them out of the runs, and say so. */
  private skipLost(lost: LostRecords): void {
    this.removeFromRuns(0, lost.count);
    this.corrupted += lost.count;
    this.emit('corrupt', { file: lost.file, offset: lost.offset, count: lost.count, problem: lost.problem });
    this.checkCaughtUp();
  }

  /** After records left the disk tier: once its backlog is empty, the spill is over ('caughtUp'). */
  private checkCaughtUp(): void {
    if ((this.flags & ON_DISK) === 0 || this.log.records !== 0) return;
    this.flags &= ~ON_DISK;
    this.caughtUps++;
    this.emit('caughtUp', { recordsIn: this.recordsIn, recordsOut: this.recordsOut });
  }

  /**
   * Takes `count` records out of the disk runs, starting `offset` records into the sequence of
   * records still in the log: the runs cover that sequence in order.
   */
  private removeFromRuns(offset: number, count: number): void {
    const end = offset + count;
    let position = 0;
    this.queue.forEach((item) => {
      if (!(item instanceof DiskRun) || position >= end) return;
      const start = position;
      position += item.count;
      const overlap = Math.min(position, end) - Math.max(start, offset);
      if (overlap > 0) item.count -= overlap;
    });
  }

  private admitBlocked(): void {
    // Placing a record wakes the reader, whose reads free room and would admit again from inside
    // this loop, placing (and calling back) the head write twice: the outer loop goes on instead.
    if ((this.flags & ADMITTING) !== 0) return;
    this.flags |= ADMITTING;
    try {
      while (this.blocked.length > 0) {
        const write = this.blocked[0]!;
        let refusal: Refusal | undefined;
        try {
          refusal = this.place(write.record, write.size);
        } catch (err) {
          this.blocked.shift();
          if (err instanceof ConsumerThrew) {
            write.callback();
            throw err;
          }
          this.failWrite(write.writer, write.callback, err as Error);
          continue;
        }
        if (refusal !== undefined) return;
        this.blocked.shift();
        write.callback();
      }
    } finally {
      this.flags &= ~ADMITTING;
    }
    if ((this.flags & RECOVERED) !== 0) this.settle();
  }

  /**
   * The memory tier's fast path: a reader waiting with nothing queued before this record takes it
   * at once, validated but neither sized nor queued (it is never held; it is copied only when the
   * reader's own buffer would hold it, see {@link ChannelReader.holds}). A readable whose consumer
   * is attached but has not asked yet is asked first (see {@link ChannelReader.start}). A budget
   * of 0 keeps every record on the segment log's path. Throws what the codec's validate() throws.
   */
  private tryHandOver(record: unknown): boolean {
    if ((this.flags & READER_STARTED) === 0) this.reader?.start?.();
    if ((this.flags & READER_WAITING) === 0 || this.queue.length > 0 || this.blocked.length > 0 || this.options.maxMemoryBytes === 0) return false;
    this.codec.validate(record);
    this.recordsIn++;
    this.handOver(record);
    return true;
  }

  /**
   * Gives a record to the waiting reader; same contract as a deliver() of one record. Not deliver()
   * itself: its loop would ask next() for another record after each one, which cost the
   * pass-through about a tenth of its rate when tried.
   */
  private handOver(record: unknown): void {
    this.flags = (this.flags & ~READER_WAITING) | DELIVERING;
    this.recordsOut++;
    let more: boolean;
    const reader = this.reader!;
    try {
      more = this.push(reader, reader.holds === undefined || reader.holds() ? memoryCopy(record, this.copyOther) : record);
    } finally {
      this.flags &= ~DELIVERING;
    }
    const flags = this.flags;
    if (!more || (flags & CLOSED) !== 0) return;
    // The reader wants more: records written meanwhile (by its consumer, re-entrantly) go first.
    if (this.queue.length > 0 || (flags & NOT_OPEN) !== 0) this.pump();
    else this.flags = flags | READER_WAITING;
  }

  private wakeReader(): void {
    if ((this.flags & READER_WAITING) === 0) return;
    this.flags &= ~READER_WAITING;
    this.pump();
  }
}
