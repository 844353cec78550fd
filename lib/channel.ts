import {
  ChannelWriter,
  type ChannelEmit,
  type ChannelParts,
  type ChannelReader,
  type HopperStats,
  type WriteCallback,
  type WriterChannel,
  type WriterHooks,
} from './channel-parts.js';
import type { RecordCodec } from './codec.js';
import { ackBeyondDeliveredError, ackModeError, destroyedError, notDurableError, producerFailedError, writeAfterEndError, type HopperError } from './errors.js';
import type { DurableLog } from './segments/durable-log.js';
import type { ResolvedOptions } from './options.js';
import { HeldWrites, failWrite } from './held-writes.js';
import { NOTHING, Tiers, type Refusal } from './tiers.js';

export { ChannelWriter } from './channel-parts.js';
export type { ChannelEmit, ChannelEvents, ChannelParts, ChannelReader, CorruptEvent, DiskTier, DropEvent, HopperStats } from './channel-parts.js';

const WAITING: Refusal = { reason: 'earlier writes are waiting for room' };

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
/** The reader wants records: it asked, and has not said "no more for now" since. */
const READER_WAITING = 1 << 4;
/** The reader has asked for records at least once. */
const READER_STARTED = 1 << 5;
/** update() is running: work that arrives meanwhile is picked up by it (UPDATE_AGAIN), never re-entered. */
const UPDATING = 1 << 6;
/** Something changed while update() ran: it goes round once more. */
const UPDATE_AGAIN = 1 << 7;
/**
 * The input has just ended: if nothing is left to deliver, the end goes to the reader whether it
 * waits or not (see finish()); otherwise it goes when the reader asks. Cleared by the next step.
 */
const END_DUE = 1 << 8;
/**
 * Closed after everything was delivered, but the files are kept: a durable channel with
 * `ack: 'manual'` still has delivered records to acknowledge. They go once every one is
 * acknowledged, or at the user's close() or destroy(), or at exit (see releaseKept()).
 */
const KEPT = 1 << 9;
/** Not open: ending or closed. */
const NOT_OPEN = ENDING | CLOSED;

/**
 * The engine: hopper's placement queue over a memory tier and a disk tier (tiers.ts), the
 * writers that feed it, and one reader it delivers to. Records leave only through
 * {@link update}, the one loop: it admits held writes, hands records to the reader while it
 * wants them, and ends or fails the reader once everything is delivered. Whatever asks for
 * work (a write, a read, a writer ending, the disk tier recovering) calls update(); a call
 * that arrives while it runs (from a consumer's listener, say) is picked up by the running
 * loop instead of entering it again. Knows nothing of stream classes.
 */
export class Channel implements WriterChannel {
  private readonly options: ResolvedOptions;
  private readonly codec: RecordCodec;
  private readonly tiers: Tiers;
  private readonly emit: ChannelEmit;
  private readonly release: () => void;
  /** The channel directory `<dataDir>/<name>`. */
  readonly path: string;
  /** Resolves once the disk tier has no file operation under way in the background. */
  readonly idle: () => Promise<void>;
  private readonly blocked = new HeldWrites();
  private readonly writers = new Set<ChannelWriter>();
  private reader: ChannelReader | undefined;
  private flags = 0;
  /** A producer failed before the input ended: the reader fails with this once everything is delivered. */
  private inputFailure: HopperError | undefined;
  /** Why reading failed (FAILED). */
  private failure: Error | undefined;
  /** The durable log, when the channel is durable. */
  private readonly durable: DurableLog | undefined;

  constructor(options: ResolvedOptions, parts: ChannelParts, emit: ChannelEmit) {
    this.options = options;
    this.codec = parts.codec;
    this.tiers = new Tiers(options, parts.codec, parts.disk, emit);
    this.path = parts.path;
    this.release = parts.release;
    this.idle = parts.idle;
    this.emit = emit;
    this.durable = parts.durable;
    if (parts.durable !== undefined) this.tiers.resume(parts.durable.recovered.records + parts.durable.damagePlaces);
  }

  /** The disk tier can go on (a retried operation went through); called on a tick of its own. */
  diskRecovered(): void {
    // A tick's callback: a consumer's exception has no write() to go to, and fails the channel.
    try {
      this.update();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  /** True once every writer has ended and every accepted record has been read. */
  get finished(): boolean {
    return (this.flags & NOT_OPEN) !== 0 && this.tiers.length === 0 && this.blocked.length === 0;
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
    return (this.flags & (CLOSED | FAILED)) !== 0 ? 0 : this.tiers.held;
  }

  /** Opens a writer; the input ends when every opened writer has ended. */
  openWriter(hooks: WriterHooks): ChannelWriter {
    this.checkOpen();
    const writer = new ChannelWriter(this, hooks);
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
    if (this.canHandOver()) {
      this.codec.validate(record);
      this.update(record);
      return;
    }
    const tiers = this.tiers;
    const refusal = this.blocked.length > 0 ? WAITING : tiers.place(record, tiers.checkAndSize(record));
    if (refusal === undefined) {
      // Placed: only a reader that waits can take it now (nothing is held: it would have waited).
      if ((this.flags & READER_WAITING) !== 0) this.update();
      return;
    }
    this.emit('full', { record, reason: refusal.reason });
    if (!tiers.countDropped(refusal.reason)) throw tiers.refusalError(record, refusal);
  }

  /**
   * Accepts a record and calls back at once, or, when full, as `onFull` says: `'block'` holds
   * the callback until the reader frees room; `'error'` calls back with `ERR_HOPPER_FULL`; a drop
   * policy drops (and counts) the record and calls back at once. As into a PassThrough, a
   * consumer's exception while the record is delivered comes out of write(), after the callback.
   */
  write(record: unknown, callback: WriteCallback, writer?: ChannelWriter, durable?: WriteCallback): void {
    const tiers = this.tiers;
    let size = 0;
    let refusal: Refusal | undefined;
    let handed = false;
    try {
      if (writer?.ended) throw writeAfterEndError();
      // A writer still open while reading fails shares the failure (a Duplex is destroyed with it).
      if (this.failure !== undefined && writer !== undefined) throw this.failure;
      this.checkOpen();
      handed = this.canHandOver();
      if (handed) {
        this.codec.validate(record);
      } else {
        size = tiers.checkAndSize(record);
        refusal = this.blocked.length > 0 ? WAITING : tiers.place(record, size);
      }
    } catch (err) {
      failWrite(writer, callback, err as Error);
      return;
    }
    if (handed || refusal === undefined) {
      if (durable !== undefined) this.whenDurable(durable);
      // Placed, with no reader waiting: nothing can move now, so the loop is not run (a burst
      // written while the reader is paused costs a placement per record, and no more).
      if (!handed && (this.flags & READER_WAITING) === 0) {
        callback();
        return;
      }
      try {
        this.update(handed ? record : undefined);
      } finally {
        callback();
      }
      return;
    }
    this.emit('full', { record, reason: refusal.reason });
    if (this.options.onFull === 'block') {
      // Admitted later: its durability is waited for from then on.
      const admitted: WriteCallback =
        durable === undefined
          ? callback
          : (err) => {
              if (!err) this.whenDurable(durable);
              callback(err);
            };
      this.blocked.hold(writer, record, size, admitted);
    } else if (tiers.countDropped(refusal.reason)) {
      callback();
      durable?.(null);
    } else failWrite(writer, callback, tiers.refusalError(record, refusal));
  }

  /** Calls `done` once every record accepted so far is durable (a durable channel's write callback). */
  private whenDurable(done: WriteCallback): void {
    if (this.durable === undefined) done();
    else this.durable.committer.whenDurable(this.durable.appended, done);
  }

  /** The producer's failure that cut the input short (ERR_HOPPER_PRODUCER_FAILED), if one did. */
  get producerFailure(): HopperError | undefined {
    return this.inputFailure;
  }

  /** True for a durable channel. */
  get isDurable(): boolean {
    return this.durable !== undefined;
  }

  /**
   * Resolves once every record accepted before the call is durable under the fsync policy and the
   * acknowledged position is on disk; rejects with ERR_HOPPER_NOT_DURABLE on a channel that is not
   * durable, and with the failure of a failed channel.
   */
  flush(): Promise<void> {
    if (this.durable === undefined) return Promise.reject(notDurableError('flush()'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return this.durable.flush();
  }

  /**
   * Acknowledges the oldest `count` delivered, unacknowledged records (`ack: 'manual'`), also
   * once delivery has ended (the files are kept for it). Throws ERR_HOPPER_NOT_DURABLE,
   * ERR_HOPPER_ACK_MODE, ERR_HOPPER_ACK_BEYOND_DELIVERED (nothing acknowledged), or Node's
   * ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE for a count that is not a safe integer from 0 up.
   * Once the files are released (the user's close() or destroy(), a failure), it does nothing:
   * the records stay unacknowledged on disk and the next open delivers them again. Throwing there
   * would crash a process from a sink's 'ack' listener during a shutdown.
   */
  ack(count: number): void {
    if (this.durable === undefined) throw notDurableError('ack()');
    if (typeof count !== 'number') {
      throw Object.assign(new TypeError(`The "count" argument must be of type number. Received ${typeof count}`), { code: 'ERR_INVALID_ARG_TYPE' });
    }
    if (!Number.isSafeInteger(count) || count < 0) {
      throw Object.assign(new RangeError(`The value of "count" is out of range. It must be a safe integer >= 0. Received ${count}`), {
        code: 'ERR_OUT_OF_RANGE',
      });
    }
    if (this.options.ack !== 'manual') throw ackModeError();
    if ((this.flags & (CLOSED | KEPT)) === CLOSED) return;
    const unacknowledged = this.durable.acks.unacknowledged;
    if (!this.durable.ack(count)) throw ackBeyondDeliveredError(count, unacknowledged);
    // Delivery has ended and everything delivered is acknowledged: nothing keeps the files.
    if ((this.flags & KEPT) !== 0 && this.durable.acks.unacknowledged === 0) this.releaseKept();
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
    if (aborted) this.blocked.fail(destroyedError, writer);
    if (this.writers.size === 0 && (this.flags & NOT_OPEN) === 0) {
      this.flags |= ENDING | END_DUE;
      this.reader?.inputEnded?.();
    }
    // Held writes of other writers may now be first in line, and the end may be due.
    if ((this.flags & CLOSED) === 0) this.update();
  }

  /**
   * The reader asks for records: they are handed to it, in write order, until its push() returns
   * false or none is ready; then the next record placed (or the end) goes to it. Failures go to
   * the reader's fail().
   */
  deliver(): void {
    if (this.reader === undefined || (this.flags & (CLOSED | FAILED)) !== 0) return;
    this.flags |= READER_WAITING | READER_STARTED;
    this.update();
  }

  /**
   * The one loop (streamx's update()). `incoming` is a record accepted for a waiting reader with
   * nothing queued before it: the hand-over is this loop with an empty queue, so the record is
   * pushed without being sized or queued. A consumer's exception comes out of it, with the
   * state consistent: the record counts as delivered and the reader as still wanting records.
   */
  private update(incoming: unknown = NOTHING): void {
    if ((this.flags & UPDATING) !== 0) {
      this.flags |= UPDATE_AGAIN;
      return;
    }
    this.flags |= UPDATING;
    try {
      if (incoming !== NOTHING) {
        this.tiers.passedThrough();
        // Copied only when the reader's own buffer would hold it (see ChannelReader.holds).
        const reader = this.reader!;
        this.out(reader.holds === undefined || reader.holds() ? this.tiers.copy(incoming) : incoming);
        // The pass-through's common case, where a round would find nothing to do: return at once.
        if ((this.flags & (UPDATE_AGAIN | NOT_OPEN)) === 0 && this.tiers.length === 0 && this.blocked.length === 0) return;
      }
      do {
        this.flags &= ~UPDATE_AGAIN;
        this.step();
      } while ((this.flags & (UPDATE_AGAIN | CLOSED)) === UPDATE_AGAIN);
    } finally {
      this.flags &= ~(UPDATING | UPDATE_AGAIN);
    }
  }

  /** One round of the loop: held writes in, records out, and the end once nothing is left. */
  private step(): void {
    if (this.blocked.length > 0) this.blocked.admit(this.place, this.isClosed);
    const tiers = this.tiers;
    while ((this.flags & (READER_WAITING | CLOSED | FAILED)) === READER_WAITING) {
      let record: unknown;
      try {
        record = tiers.take();
      } catch (err) {
        this.fail(err as Error);
        return;
      }
      if (record === NOTHING) break;
      this.out(record);
      // Room was freed: held writes go next, behind the records already queued.
      if (this.blocked.length > 0) {
        this.flags |= UPDATE_AGAIN;
        return;
      }
    }
    const flags = this.flags;
    this.flags &= ~END_DUE;
    if ((flags & (CLOSED | FAILED)) === 0 && (flags & (READER_WAITING | END_DUE)) !== 0 && this.finished) this.finish();
  }

  /** Hands a record to the reader; a false push means it wants no more for now. */
  private out(record: unknown): void {
    if (!this.reader!.push(record)) this.flags &= ~READER_WAITING;
  }

  /**
   * Everything is delivered: the files are released before the reader sees the end, at once (a
   * PassThrough's end() pushes its end whether or not anything reads). A producer's failure
   * waits until the reader asks, so that it never reaches a readable nobody listens to yet.
   */
  private finish(): void {
    const failure = this.inputFailure;
    if (failure !== undefined && (this.flags & READER_WAITING) === 0) return;
    this.flags |= DELIVERED;
    this.close();
    if (failure === undefined) this.reader?.end();
    else this.reader?.fail(failure);
  }

  private readonly place = (record: unknown, size: number): Refusal | undefined => this.tiers.place(record, size);
  private readonly isClosed = (): boolean => (this.flags & CLOSED) !== 0;

  /**
   * A record can go straight to the reader: it wants records and nothing is queued or held
   * before this one, and the loop is not running (a record written from inside it, by a
   * consumer, queues behind what the loop is delivering). A readable whose consumer is attached
   * but has not asked yet is asked first (see {@link ChannelReader.start}). A budget of 0 keeps
   * every record on the disk tier's path.
   */
  private canHandOver(): boolean {
    if ((this.flags & READER_STARTED) === 0) this.reader?.start?.();
    return (
      (this.flags & (READER_WAITING | UPDATING)) === READER_WAITING &&
      this.tiers.length === 0 &&
      this.blocked.length === 0 &&
      this.options.maxMemoryBytes !== 0 &&
      // A durable channel's every record goes to the log first.
      this.durable === undefined
    );
  }

  stats(): HopperStats {
    return this.tiers.stats();
  }

  /**
   * Releases everything: drops records still held, removes the segment files and the lock,
   * then the directories this channel made. Held writes are called back with `ERR_STREAM_DESTROYED`.
   */
  close(): void {
    if ((this.flags & CLOSED) !== 0) return;
    this.flags |= CLOSED;
    for (const writer of [...this.writers]) writer.hooks.onChannelClose();
    this.tiers.clear();
    if (this.keepsFiles()) this.flags |= KEPT;
    else this.release();
    this.blocked.fail(destroyedError);
  }

  /**
   * Everything was delivered in a durable channel with `ack: 'manual'` and some of it is not
   * acknowledged yet: the files stay (lock, segments, ledger writes) so that ack() still counts,
   * as a sink acknowledges the last batches after the readable ended.
   */
  private keepsFiles(): boolean {
    return (this.flags & DELIVERED) !== 0 && this.durable !== undefined && this.options.ack === 'manual' && this.durable.acks.unacknowledged > 0;
  }

  /**
   * The user's close() or destroy(): closes the channel, and releases files kept for
   * acknowledgements after delivery ended (the ledger file is written with the acknowledgements
   * made so far). Idempotent.
   */
  releaseKept(): void {
    this.close();
    if ((this.flags & KEPT) === 0) return;
    this.flags &= ~KEPT;
    this.release();
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
    for (const writer of [...this.writers]) (writer.hooks.onChannelFail ?? writer.hooks.onChannelClose)();
    if (this.reader) this.reader.fail(err);
    else this.close();
  }

  private checkOpen(): void {
    const flags = this.flags;
    if ((flags & (FAILED | NOT_OPEN)) === 0) return;
    if ((flags & FAILED) !== 0) throw destroyedError();
    throw (flags & (CLOSED | DELIVERED)) === CLOSED ? destroyedError() : writeAfterEndError();
  }
}
