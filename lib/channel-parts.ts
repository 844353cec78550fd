import type { RecordCodec } from './codec.js';
import type { DurableLog, DurableStats, RecoveredEvent } from './segments/durable-log.js';
import type { AppendResult, DiskBehindEvent, FaultEvent, LostRecords, SegmentEvent, WAIT } from './segments/index.js';
import type { TornReport } from './segments/recovery.js';

// What the channel (channel.ts) is made of and talks to: its counters and events, the reader it
// delivers to, the disk tier it pages to, and the writers that feed it. docs/design.md says who
// may call whom.
//
// How the engine fails, in one place. Inside it, nothing is thrown as control flow:
// - a disk append answers with an {@link AppendResult} ('ok', or the cap or fault in the way);
// - a disk read answers with a record, {@link WAIT} (a failed read is being retried; the tier
//   says when to ask again, on a tick of its own) or a {@link LostRecords} (damage skipped under
//   `onCorrupt: 'skip'`); the segment reader's own `Corruption` never leaves the segment log;
// - a record that finds no room is a `Refusal` (channel.ts) until the channel turns it into
//   what `onFull` says.
// What reaches the user is a HopperError (errors.ts): thrown by send(), passed to a write's
// callback, or given to the reader's fail(). An exception from user code (a 'data' listener, an
// event listener, a write callback) is not the engine's: it goes out to whoever called in, as
// out of a PassThrough, and the engine's state stays consistent around it.

/** Counters of a channel at one moment (the durable ones, 0 in a channel that is not durable, are {@link DurableStats}'). */
export interface HopperStats extends DurableStats {
  /** Records held in memory. */
  memoryRecords: number;
  /** Estimated bytes of the records held in memory; never above `maxMemoryBytes`. */
  memoryBytes: number;
  /** Records waiting in segment files (or in the block being filled for them). */
  diskRecords: number;
  /** Bytes of the segment files, plus the block being filled. */
  diskBytes: number;
  /**
   * Bytes of memory the disk tier holds for its I/O, besides the records counted in
   * `memoryBytes`: the block being filled (with the large records it holds by reference), the
   * block being read, the reads ahead, and copies of large Buffer records kept for reuse (up to
   * 1 MiB while Buffers of 16 KiB or more are written). About 256 KiB to 1 MiB; more only while a single
   * larger record passes, and back once it has.
   */
  ioBufferBytes: number;
  /** Bytes handed to the disk and not written yet (write-behind); see `maxPendingDiskBytes`. */
  pendingDiskBytes: number;
  /** Synchronous writes made because more than `maxPendingDiskBytes` waited for the disk. */
  syncWrites: number;
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
}

/** The durable fields of {@link HopperStats}, all 0 for a channel that is not durable. */
export const NO_DURABLE_STATS: DurableStats = {
  unacknowledged: 0,
  acknowledged: 0,
  redelivered: 0,
  recovered: 0,
  torn: 0,
  tornBlocks: 0,
  undurable: 0,
  fsyncs: 0,
  lastFsyncAt: 0,
};

/** Payload of the `'torn'` event: a block cut short by a crash, cut off at open (not corruption). */
export type TornEvent = TornReport;
export type { RecoveredEvent };

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
  /** Durable channels: a block torn by a crash was cut off at open (one event per block), with the count of records it held when known. */
  torn: [TornEvent];
  /** Durable channels: the open resumed what a previous run left (records to deliver, files removed, what is missing). */
  recovered: [RecoveredEvent];
}

export type ChannelEmit = <K extends keyof ChannelEvents>(event: K, ...args: ChannelEvents[K]) => void;

/** Where the channel delivers records: a stream adapter's push, end and destroy. */
export interface ChannelReader {
  /** Takes a record; returns false when it wants no more for now. */
  push(record: unknown): boolean;
  /** Every record has been delivered and every writer has ended. */
  end(): void;
  /** Reading failed (a corrupt segment, an I/O error, a producer's failure): the channel cannot go on. */
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
 * The disk tier as the channel sees it: the segment log (segments/log.ts), or anything that
 * keeps records in the same order with the same answers.
 */
export interface DiskTier {
  /** Records appended and not yet read (or dropped, or lost). */
  readonly records: number;
  readonly bytes: number;
  readonly segmentCount: number;
  /** Bytes of memory held for I/O (see HopperStats.ioBufferBytes). */
  readonly bufferBytes: number;
  /** Bytes handed to the disk and not written yet. */
  readonly pendingBytes: number;
  /** Synchronous writes made because the disk fell behind. */
  readonly syncWrites: number;
  /** The error disk writes are failing with, while they are retried. */
  readonly fault: Error | undefined;
  /** Keeps a record, or says which cap (or fault) is in the way; nothing is kept unless 'ok'. */
  append(record: unknown): AppendResult;
  /**
   * The next record in write order (the caller knows one exists: `records > 0`); {@link WAIT}
   * when none can be read now (the tier calls the channel's `diskRecovered()` on a later tick
   * when it is worth asking again); or the {@link LostRecords} skipped over (ask again at once).
   * Throws a HopperError when reading has failed for good.
   */
  next(): unknown;
  /** Deletes the oldest segment to make room: where its records stood, or undefined when none can go. */
  dropOldest(): { offset: number; count: number; file: string } | undefined;
  /** A durable log's counters. */
  stats?(): DurableStats;
}

/** What a channel is built from: see openChannel() in engine.ts, which builds them. */
export interface ChannelParts {
  codec: RecordCodec;
  disk: DiskTier;
  /** The channel directory, for `.path`. */
  path: string;
  /** Closes the disk tier, then releases the channel directory; called once, at close. */
  release(): void;
  /**
   * Resolves once the disk tier has no file operation under way in the background, and the
   * directories that release() found still in use then are removed.
   */
  idle(): Promise<void>;
  /** The durable log, when the channel is durable (the same object as `disk`). */
  durable?: DurableLog | undefined;
}

export type WriteCallback = (err?: Error | null) => void;

/** What a writer's owner is told: the channel closed, or reading failed, while the writer was open. */
export interface WriterHooks {
  /**
   * The channel closes while this writer is open, before its held writes are failed: the
   * adapter destroys its stream first, so those failures are not reported as stream errors.
   */
  onChannelClose(): void;
  /**
   * Reading failed while this writer is open: by default as {@link onChannelClose}. A Duplex
   * whose read side is the failing reader keeps its write side until it is destroyed.
   */
  onChannelFail?(): void;
}

/** The channel as its writers see it. */
export interface WriterChannel {
  write(record: unknown, callback: WriteCallback, writer: ChannelWriter, durable?: WriteCallback): void;
  closeWriter(writer: ChannelWriter, aborted: boolean): void;
  cutShort(writer: ChannelWriter, cause: Error | undefined): void;
}

/**
 * One producer of a channel (a Writable's write side). The channel ends its input when every
 * writer it opened has ended or been aborted.
 */
export class ChannelWriter {
  /** The last error a write of this writer was called back with. */
  lastError: Error | undefined;
  ended = false;

  constructor(
    private readonly channel: WriterChannel,
    readonly hooks: WriterHooks,
  ) {}

  /**
   * Accepts a record and calls back; see Channel.write. In a durable channel, `durable` is called
   * once the record is durable under the fsync policy (or with the error), `callback` as before.
   */
  write(record: unknown, callback: WriteCallback, durable?: WriteCallback): void {
    this.channel.write(record, callback, this, durable);
  }

  /** No more records from this writer. */
  end(): void {
    this.channel.closeWriter(this, false);
  }

  /** The writer is gone (destroyed): its held writes fail, and it counts as ended. */
  abort(): void {
    this.channel.closeWriter(this, true);
  }

  /**
   * The producer failed (the writable was destroyed before end(), `cause` its error if any): the
   * input ends, records accepted so far are still delivered, then the reader fails with
   * `ERR_HOPPER_PRODUCER_FAILED`. Held writes fail, as for {@link abort}.
   */
  fail(cause: Error | undefined): void {
    this.channel.cutShort(this, cause);
  }
}
