import type { ChannelEmit, ChannelParts, ChannelReader, ChannelWriter, WriteCallback, WriterChannel } from './channel-parts.js';
import { Durability, whenAdmitted, whenDurable } from './channel-durable.js';
import { ChannelWriters } from './channel-writers.js';
import type { RecordCodec } from './codec.js';
import { destroyedError, writeAfterEndError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { HeldWrites, failWrite } from './held-writes.js';
import { NOTHING, Tiers, type Refusal } from './tiers.js';

const WAITING: Refusal = { reason: 'earlier writes are waiting for room' };

// The channel's state, one integer of flags (as streamx keeps its streams' state). Life: open
// (neither ENDING nor CLOSED), ending, closed. Module constants, read where they are declared:
// the per-record code is in this file (an imported binding costs a load and a check per use).
/** Every writer has ended: records are still delivered, none is accepted. */
const ENDING = 1 << 0;
/** The files are released: nothing is accepted or delivered any more. */
export const CLOSED = 1 << 1;
/** Closed because everything was delivered, not destroyed: later writes are "after end". */
const DELIVERED = 1 << 2;
/** Reading failed (a corrupt segment, an I/O error), or the directory was lost: nothing more is accepted. */
const FAILED = 1 << 3;
/** The reader wants records: it asked, and has not said "no more for now" since. */
const READER_WAITING = 1 << 4;
/** The reader has asked for records at least once. */
export const READER_STARTED = 1 << 5;
/** update() is running: work that arrives meanwhile is picked up by it (UPDATE_AGAIN), never re-entered. */
const UPDATING = 1 << 6;
/** Something changed while update() ran: it goes round once more. */
const UPDATE_AGAIN = 1 << 7;
/**
 * The input has just ended: if nothing is left to deliver, the end goes to the reader whether it
 * waits or not (see finish()); otherwise it goes when the reader asks. Cleared by the next step.
 */
const END_DUE = 1 << 8;
/** Not open: ending or closed. */
const NOT_OPEN = ENDING | CLOSED;

/**
 * The engine's loop: hopper's placement queue over a memory tier and a disk tier (tiers.ts), the
 * writers that feed it, and one reader it delivers to, under one state word. Records leave only
 * through {@link update}, the one loop: it admits held writes, hands records to the reader while
 * it wants them, and ends or fails the reader once everything is delivered. Whatever asks for
 * work (a write, a read, a writer ending, the disk tier recovering) calls update(); a call that
 * arrives while it runs (from a consumer's listener, say) is picked up by the running loop
 * instead of entering it again. Knows nothing of stream classes. Channel (channel.ts) adds what
 * the adapters ask besides records; this class never calls it.
 */
export class ChannelLoop implements WriterChannel {
  private readonly options: ResolvedOptions;
  private readonly codec: RecordCodec;
  protected readonly tiers: Tiers;
  private readonly emit: ChannelEmit;
  private readonly release: () => void;
  /** The channel directory `<dataDir>/<name>`. */
  readonly path: string;
  /** Resolves once the disk tier has no file operation under way in the background. */
  readonly idle: () => Promise<void>;
  private readonly blocked = new HeldWrites();
  protected readonly writers = new ChannelWriters(this, this.blocked);
  protected reader: ChannelReader | undefined;
  protected flags = 0;
  /** Why reading failed (FAILED). */
  protected failure: Error | undefined;
  /** The durable side (channel-durable.ts), when the channel is durable. */
  protected readonly durable: Durability | undefined;

  constructor(options: ResolvedOptions, parts: ChannelParts, emit: ChannelEmit) {
    this.options = options;
    this.codec = parts.codec;
    this.tiers = new Tiers(options, parts.codec, parts.disk, emit);
    this.path = parts.path;
    this.release = parts.release;
    this.idle = parts.idle;
    this.emit = emit;
    this.durable = parts.durable === undefined ? undefined : new Durability(parts.durable, options.ack, parts.release, this.isClosed);
    if (parts.durable !== undefined) this.tiers.resume(parts.durable.recovered.records + parts.durable.damagePlaces);
  }

  /** True once every writer has ended and every accepted record has been read. */
  get finished(): boolean {
    return (this.flags & NOT_OPEN) !== 0 && this.tiers.length === 0 && this.blocked.length === 0;
  }

  /** Records accepted and not yet handed to the reader (memory and disk); 0 once reading failed. */
  get waiting(): number {
    return (this.flags & (CLOSED | FAILED)) !== 0 ? 0 : this.tiers.held;
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
      if (durable !== undefined) whenDurable(this.durable, durable);
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
      this.blocked.hold(writer, record, size, durable === undefined ? callback : whenAdmitted(this.durable, callback, durable));
    } else if (tiers.countDropped(refusal.reason)) {
      callback();
      durable?.(null);
    } else failWrite(writer, callback, tiers.refusalError(record, refusal));
  }

  /** A writer's producer failed: see {@link ChannelWriter.fail}. The first failure is the one reported. */
  cutShort(writer: ChannelWriter, cause: Error | undefined): void {
    if (writer.ended) return;
    this.writers.cutShort(cause);
    this.closeWriter(writer, true);
  }

  /** Ends a writer (`aborted`: it was destroyed, so its held writes fail). Idempotent. */
  closeWriter(writer: ChannelWriter, aborted: boolean): void {
    if (writer.ended) return;
    if (this.writers.end(writer, aborted) && (this.flags & NOT_OPEN) === 0) {
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
  protected update(incoming: unknown = NOTHING): void {
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
    const failure = this.writers.failure;
    if (failure !== undefined && (this.flags & READER_WAITING) === 0) return;
    this.flags |= DELIVERED;
    this.close();
    if (failure === undefined) this.reader?.end();
    else this.reader?.fail(failure);
  }

  private readonly place = (record: unknown, size: number): Refusal | undefined => this.tiers.placeHeld(record, size);
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

  /**
   * Releases everything: drops records still held, removes the segment files and the lock,
   * then the directories this channel made. Held writes are called back with `ERR_STREAM_DESTROYED`.
   */
  close(): void {
    if ((this.flags & CLOSED) !== 0) return;
    this.flags |= CLOSED;
    this.writers.tell(false);
    this.tiers.clear();
    if (this.durable === undefined) this.release();
    else this.durable.close((this.flags & DELIVERED) !== 0);
    this.blocked.fail(destroyedError);
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
    this.writers.tell(true);
    if (this.reader) this.reader.fail(err);
    else this.close();
  }

  protected checkOpen(): void {
    const flags = this.flags;
    if ((flags & (FAILED | NOT_OPEN)) === 0) return;
    if ((flags & FAILED) !== 0) throw destroyedError();
    throw (flags & (CLOSED | DELIVERED)) === CLOSED ? destroyedError() : writeAfterEndError();
  }
}
