import { NO_DURABLE_STATS, type ChannelEmit, type DiskTier, type HopperStats } from './channel-parts.js';
import type { RecordCodec } from './codec.js';
import { fullError, recordTooLargeError, refusedForFault, type HopperError, type LimitOption } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { DiskRun, PlacementQueue } from './placements.js';
import { memoryCopy } from './plain-data.js';
import { LostRecords, WAIT, type AppendResult } from './segments/index.js';

// The two tiers of a channel behind hopper's placement queue: where a record goes (memory while
// the budget allows, else the disk tier), where the next one comes from, and what that costs and
// counts (memory accounting, spill and drop bookkeeping, records lost to damage). Called only by
// the channel (channel.ts), from its update loop or its write path; it calls nobody back but
// the event emitter (user listeners run there, as from any EventEmitter).

/** Why a record could not be placed: a cap, or disk writes failing (`fault`). */
export interface Refusal {
  reason: string;
  fault?: Error;
  /** The disk cap that had no room. */
  option?: LimitOption;
}

/** The size of a record that goes straight to the disk tier: not estimated (see spilling). */
export const UNSIZED = -1;

/** What {@link Tiers.take} gives when no record can be taken now. Module-private: no record is it. */
export const NOTHING: unknown = Object.freeze(new (class Nothing {})());

/** The placement queue over the memory tier and a disk tier. */
export class Tiers {
  private readonly queue = new PlacementQueue();
  private memoryBytes = 0;
  private memoryRecords = 0;
  private spilled = 0;
  private spills = 0;
  private caughtUps = 0;
  private dropped = 0;
  private corrupted = 0;
  /**
   * A record went to disk for want of room in memory, and nothing has been taken since: memory
   * has not freed room, so records go to the disk tier without being sized for memory. A smaller
   * record that might have fitted in what room is left goes to disk too; the first record taken
   * (from either tier) ends this.
   */
  private spilling = false;
  /** 'spill' was emitted and the disk backlog has not emptied since ('caughtUp' clears it). */
  private onDisk = false;
  /** Records accepted: placed, or handed over at once ({@link passedThrough}). */
  private recordsIn = 0;
  /** Records taken out (or handed over). */
  private recordsOut = 0;

  /** The codec's copy, for records the memory tier holds that are not plain data (see memoryCopy). */
  private readonly copyOther: (record: unknown) => unknown;

  constructor(
    private readonly options: ResolvedOptions,
    private readonly codec: RecordCodec,
    private readonly disk: DiskTier,
    private readonly emit: ChannelEmit,
  ) {
    this.copyOther = (record) => codec.copy(record);
  }

  /**
   * A record as the memory tier holds it: a copy, so that nothing the producer does to what it
   * wrote after its write returned changes what is delivered (see memoryCopy).
   */
  copy(record: unknown): unknown {
    return memoryCopy(record, this.copyOther);
  }

  /** Placements waiting (memory records and disk runs). */
  get length(): number {
    return this.queue.length;
  }

  /** A record went to a waiting reader without being placed: it counts as in and out. */
  passedThrough(): void {
    this.recordsIn++;
    this.recordsOut++;
  }

  /** Records held, in memory and on disk. */
  get held(): number {
    return this.memoryRecords + this.disk.records;
  }

  /**
   * Validates a record (throws as the codec's validate()); sizes it unless it is going straight to
   * disk (while spilling, or with a memory budget of 0).
   */
  checkAndSize(record: unknown): number {
    // A record bound for disk is encoded by place(), which the channel calls next: the codec may
    // keep what its check learnt for that (see placeHeld() for a write held in between).
    if (this.options.durable) {
      this.codec.validate(record, true);
      return UNSIZED;
    }
    if (!this.spilling && this.options.maxMemoryBytes !== 0) return this.codec.validateAndSize(record);
    this.codec.validate(record, true);
    return UNSIZED;
  }

  /** {@link place} for a write that was held: checked before the producer had its turn again. */
  placeHeld(record: unknown, size: number): Refusal | undefined {
    this.codec.forget?.();
    return this.place(record, size);
  }

  /**
   * Places a record in memory or on disk; returns why it could not, or undefined when placed.
   * Throws `ERR_HOPPER_RECORD_TOO_LARGE` for a record that fits in neither tier.
   */
  place(record: unknown, size: number): Refusal | undefined {
    if (this.options.durable) return this.placeDurable(record, size);
    const { maxMemoryBytes } = this.options;
    // A write held while spilling, admitted after the reader freed room, is sized now.
    if (size === UNSIZED && !this.spilling && maxMemoryBytes !== 0) size = this.codec.validateAndSize(record);
    if (size !== UNSIZED && this.memoryBytes + size <= maxMemoryBytes) {
      this.queue.push(this.copy(record), size);
      this.memoryBytes += size;
      this.memoryRecords++;
      this.recordsIn++;
      return undefined;
    }
    let result = this.disk.append(record);
    // Not kept past the append: a record refused here may come back changed.
    this.codec.forget?.();
    if (result === 'full' && this.options.onFull === 'drop-oldest') result = this.appendDroppingOldest(record);
    if (result !== 'ok') return this.refusal(record, size, result);
    this.spilled++;
    this.spilling = true;
    const last = this.queue.last();
    if (last instanceof DiskRun) last.count++;
    else this.queue.push(new DiskRun(1), 0);
    if (!this.onDisk) {
      this.onDisk = true;
      this.spills++;
      this.emit('spill', { recordsIn: this.recordsIn, memoryBytes: this.memoryBytes });
    }
    this.recordsIn++;
    return undefined;
  }

  /**
   * A durable channel: every record goes to the log (write-through), which keeps its own read
   * cache within maxMemoryBytes; the queue holds disk runs only.
   */
  private placeDurable(record: unknown, size: number): Refusal | undefined {
    const result = this.disk.append(record);
    this.codec.forget?.();
    if (result !== 'ok') return this.refusal(record, size, result);
    const last = this.queue.last();
    if (last instanceof DiskRun) last.count++;
    else this.queue.push(new DiskRun(1), 0);
    this.recordsIn++;
    return undefined;
  }

  /** Records a durable channel found at open: delivered first, before any new write. */
  resume(count: number): void {
    if (count > 0) this.queue.push(new DiskRun(count), 0);
  }

  private refusal(record: unknown, size: number, result: Exclude<AppendResult, 'ok'>): Refusal {
    const { maxMemoryBytes, maxDiskBytes, maxSegments } = this.options;
    const holds = `memory holds ${this.memoryBytes} of ${maxMemoryBytes} bytes`;
    if (result === 'too-large') {
      if (this.options.durable) {
        throw recordTooLargeError(record, `encoded, it is bigger than maxDiskBytes (${maxDiskBytes}) allows, and a durable channel keeps every record on disk`);
      }
      if ((size === UNSIZED ? this.codec.validateAndSize(record) : size) > maxMemoryBytes) {
        throw recordTooLargeError(record, `it is bigger than maxMemoryBytes (${maxMemoryBytes}) and, encoded, than maxDiskBytes (${maxDiskBytes}) allows`);
      }
      return { reason: `${holds} and the record does not fit in maxDiskBytes`, option: 'maxDiskBytes' };
    }
    if (result === 'fault') {
      const fault = this.disk.fault!;
      return { reason: `${holds} and disk writes are failing (${fault.message})`, fault };
    }
    const option: LimitOption = this.disk.segmentCount >= maxSegments ? 'maxSegments' : 'maxDiskBytes';
    return { reason: `${holds} and the disk cap ${option} (${this.options[option]}) is reached`, option };
  }

  /** The error a refusal becomes when it is not held or dropped. */
  refusalError(record: unknown, refusal: Refusal): HopperError {
    return refusal.fault ? refusedForFault(record, refusal.fault) : fullError(record, refusal.reason, refusal.option);
  }

  /** With `'drop-newest'` (or `'drop-oldest'` that found nothing to delete), counts the record as dropped. */
  countDropped(reason: string): boolean {
    const policy = this.options.onFull;
    if (policy !== 'drop-newest' && policy !== 'drop-oldest') return false;
    this.dropped++;
    this.emit('drop', { count: 1, policy, reason });
    return true;
  }

  /**
   * The next record in write order, taken out of the tiers, or {@link NOTHING} when none can be
   * taken now (none is waiting, or the disk tier says to wait). Records lost to damage are
   * skipped over and announced. Throws what the disk tier throws when reading fails for good.
   */
  take(): unknown {
    const queue = this.queue;
    for (;;) {
      const head = queue.peek();
      if (head === undefined) return NOTHING;
      if (!(head instanceof DiskRun)) {
        this.memoryBytes -= queue.peekSize();
        this.memoryRecords--;
        queue.shift();
        this.spilling = false;
        this.recordsOut++;
        return head;
      }
      // Runs emptied by 'drop-oldest' or by skipped damage stay queued with a count of 0 until they reach the head.
      if (head.count === 0) {
        queue.shift();
        continue;
      }
      const read = this.disk.next();
      if (read === WAIT) return NOTHING;
      if (read instanceof LostRecords) {
        this.skipLost(read);
        continue;
      }
      this.spilling = false;
      this.recordsOut++;
      if (--head.count === 0) {
        queue.shift();
        this.checkCaughtUp();
      }
      return read;
    }
  }

  /** Drops everything held (the channel is closing). */
  clear(): void {
    this.queue.clear();
    this.memoryBytes = 0;
    this.memoryRecords = 0;
  }

  /** The counters these tiers keep, with the disk tier's. */
  stats(): HopperStats {
    return {
      memoryRecords: this.memoryRecords,
      memoryBytes: this.memoryBytes,
      diskRecords: this.disk.records,
      diskBytes: this.disk.bytes,
      ioBufferBytes: this.disk.bufferBytes,
      pendingDiskBytes: this.disk.pendingBytes,
      syncWrites: this.disk.syncWrites,
      segments: this.disk.segmentCount,
      recordsIn: this.recordsIn,
      recordsOut: this.recordsOut,
      spilled: this.spilled,
      spills: this.spills,
      caughtUps: this.caughtUps,
      dropped: this.dropped,
      corrupted: this.corrupted,
      ...(this.disk.stats?.() ?? NO_DURABLE_STATS),
    };
  }

  /** Appends with the 'drop-oldest' policy: deletes the oldest segments while that makes room. */
  private appendDroppingOldest(record: unknown): AppendResult {
    let result: AppendResult = 'full';
    while (result === 'full' && this.dropOldestSegment()) result = this.disk.append(record);
    return result;
  }

  /**
   * Deletes the oldest sealed segment the reader is not in, and takes its records out of the
   * disk runs that held them. The runs cover the records still on disk, in order, so the
   * dropped ones are those at positions [offset, offset + count) of that sequence.
   */
  private dropOldestSegment(): boolean {
    const gone = this.disk.dropOldest();
    if (gone === undefined) return false;
    this.removeFromRuns(gone.offset, gone.count);
    this.dropped += gone.count;
    this.emit('drop', { count: gone.count, policy: 'drop-oldest', reason: 'the disk cap was reached', file: gone.file });
    this.checkCaughtUp();
    return true;
  }

  /** Records lost to a damaged segment are the next ones on disk: take them out of the runs, and say so. */
  private skipLost(lost: LostRecords): void {
    this.removeFromRuns(0, lost.count);
    this.corrupted += lost.count;
    this.emit('corrupt', { file: lost.file, offset: lost.offset, count: lost.count, problem: lost.problem });
    this.checkCaughtUp();
  }

  /** After records left the disk tier: once its backlog is empty, the spill is over ('caughtUp'). */
  private checkCaughtUp(): void {
    if (!this.onDisk || this.disk.records !== 0) return;
    this.onDisk = false;
    this.caughtUps++;
    this.emit('caughtUp', { recordsIn: this.recordsIn, recordsOut: this.recordsOut });
  }

  /**
   * Takes `count` records out of the disk runs, starting `offset` records into the sequence of
   * records still on disk: the runs cover that sequence in order.
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
}
