import { createCodec, type RecordCodec } from './codec.js';
import { ChannelDirectory } from './directory.js';
import { HopperError, destroyedError, fullError, writeAfterEndError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { DiskRun, PlacementQueue } from './placements.js';
import { SegmentLog, type SegmentEvent, type SegmentFileSystem } from './segments.js';

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
}

/** Events a channel reports, with their payloads. */
export interface ChannelEvents {
  /** The first record of a run went to disk. */
  spill: [{ recordsIn: number; memoryBytes: number }];
  /** A write met the cap: memory full and a disk cap reached. */
  full: [{ record: unknown; reason: string }];
  /** A segment file was sealed, or removed after being read. */
  segment: [SegmentEvent];
}

export type ChannelEmit = <K extends keyof ChannelEvents>(event: K, ...args: ChannelEvents[K]) => void;

/** Returned by {@link Channel.read} when no record is ready. */
export const EMPTY: unique symbol = Symbol('hopper-streams.empty');

type WriteCallback = (err?: Error | null) => void;

interface BlockedWrite {
  record: unknown;
  size: number;
  callback: WriteCallback;
}

/** Channel life: open; ending (no more writes, still delivering); closed (files released). */
const OPEN = 0;
const ENDING = 1;
const CLOSED = 2;

/**
 * The engine: hopper's placement queue over a memory tier and a segment log.
 * A record goes to memory while the budget allows, else to the segment log, and the queue
 * records where each went (`Disk(n)` runs collapse), so the reader follows the write order
 * across both tiers. Knows nothing of stream classes.
 */
export class Channel {
  private readonly options: ResolvedOptions;
  private readonly codec: RecordCodec;
  private readonly emit: ChannelEmit;
  private readonly directory: ChannelDirectory;
  private readonly log: SegmentLog;
  private readonly queue = new PlacementQueue();
  private readonly blocked: BlockedWrite[] = [];

  private state = OPEN;
  private memoryBytes = 0;
  private memoryRecords = 0;
  private recordsIn = 0;
  private recordsOut = 0;
  private spilled = 0;
  private readerWaiting = false;
  /** The last error a write was called back with: the adapter tells it from errors of other origins. */
  lastWriteError: Error | undefined;

  /** Called when a record (or the end) becomes available after {@link read} returned EMPTY. */
  onReadable: () => void = () => {};
  /** Called when the channel fails on its own (a write of a block in the background). */
  onError: (err: Error) => void = () => {};

  constructor(options: ResolvedOptions, emit: ChannelEmit, fileSystem?: SegmentFileSystem) {
    this.options = options;
    this.emit = emit;
    this.codec = createCodec(options.schema);
    this.directory = ChannelDirectory.open(options.dataDir, options.name);
    try {
      this.log = new SegmentLog(
        this.directory.path,
        this.codec,
        { ...options, channel: options.name },
        { onSegment: (event) => this.emit('segment', event), onError: (err) => this.onError(err) },
        fileSystem,
      );
    } catch (err) {
      this.directory.release();
      throw err;
    }
    this.directory.onRelease(() => this.log.close());
  }

  /** The channel directory `<dataDir>/<name>`. */
  get path(): string {
    return this.directory.path;
  }

  /** True once end() was called and every accepted record has been read. */
  get finished(): boolean {
    return this.state !== OPEN && this.queue.length === 0 && this.blocked.length === 0;
  }

  get closed(): boolean {
    return this.state === CLOSED;
  }

  /**
   * Accepts a record or throws: `ERR_HOPPER_FULL` (with `.record`) when memory is full and a
   * disk cap is reached, `ERR_HOPPER_INVALID_RECORD`, `ERR_HOPPER_RECORD_TOO_LARGE`, or
   * Node's write-after-end / destroyed codes.
   */
  send(record: unknown): void {
    this.checkOpen();
    const size = this.codec.check(record);
    if (this.blocked.length > 0) {
      this.emit('full', { record, reason: 'earlier writes are waiting for room' });
      throw fullError(record, 'earlier writes are waiting for room');
    }
    const reason = this.place(this.codec.normalize(record), size);
    if (reason !== undefined) {
      this.emit('full', { record, reason });
      throw fullError(record, reason);
    }
  }

  /**
   * Accepts a record and calls back at once, or, when full, as `onFull` says: `'block'` holds
   * the callback until the reader frees room; `'error'` calls back with `ERR_HOPPER_FULL`.
   */
  write(record: unknown, callback: WriteCallback): void {
    let size: number;
    try {
      this.checkOpen();
      size = this.codec.check(record);
    } catch (err) {
      this.failWrite(callback, err as Error);
      return;
    }
    let reason: string | undefined = 'earlier writes are waiting for room';
    if (this.blocked.length === 0) {
      try {
        reason = this.place(this.codec.normalize(record), size);
      } catch (err) {
        this.failWrite(callback, err as Error);
        return;
      }
    }
    if (reason === undefined) {
      callback();
      return;
    }
    this.emit('full', { record, reason });
    if (this.options.onFull === 'block') this.blocked.push({ record: this.codec.normalize(record), size, callback });
    else this.failWrite(callback, fullError(record, reason));
  }

  private failWrite(callback: WriteCallback, err: Error): void {
    this.lastWriteError = err;
    callback(err);
  }

  /** No more writes: the reader sees the end once everything accepted has been read. */
  end(): void {
    if (this.state !== OPEN) return;
    this.state = ENDING;
    this.wakeReader();
  }

  /**
   * The next record in write order, or {@link EMPTY} when none is ready (then `onReadable`
   * fires when one is, or when the channel has finished). Throws on a corrupt segment or an I/O failure.
   */
  read(): unknown {
    const head = this.queue.peek();
    if (head === undefined) {
      this.readerWaiting = true;
      return EMPTY;
    }
    let record: unknown;
    if (head instanceof DiskRun) {
      record = this.log.next();
      if (--head.count === 0) this.queue.shift();
    } else {
      record = head;
      this.memoryBytes -= this.queue.peekSize();
      this.memoryRecords--;
      this.queue.shift();
    }
    this.recordsOut++;
    if (this.blocked.length > 0) this.admitBlocked();
    return record;
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
    };
  }

  /**
   * Releases everything: drops records still held, removes the segment files and the lock,
   * then the directories this channel made. Blocked writes are called back with `ERR_STREAM_DESTROYED`.
   */
  close(): void {
    if (this.state === CLOSED) return;
    this.state = CLOSED;
    this.queue.clear();
    this.memoryBytes = 0;
    this.memoryRecords = 0;
    this.directory.release();
    for (const write of this.blocked.splice(0)) write.callback(destroyedError());
  }

  private checkOpen(): void {
    if (this.state === OPEN) return;
    throw this.state === CLOSED ? destroyedError() : writeAfterEndError();
  }

  /** Places a record in memory or on disk; returns why it could not, or undefined when placed. */
  private place(record: unknown, size: number): string | undefined {
    if (this.memoryBytes + size <= this.options.maxMemoryBytes) {
      this.queue.push(record, size);
      this.memoryBytes += size;
      this.memoryRecords++;
    } else {
      const result = this.log.append(record);
      if (result === 'too-large') {
        if (size > this.options.maxMemoryBytes) {
          throw new HopperError(
            'ERR_HOPPER_RECORD_TOO_LARGE',
            `record too large: it is bigger than maxMemoryBytes (${this.options.maxMemoryBytes}) and, encoded, than maxDiskBytes (${this.options.maxDiskBytes}) allows`,
            { record },
          );
        }
        return `memory holds ${this.memoryBytes} of ${this.options.maxMemoryBytes} bytes and the record does not fit in maxDiskBytes`;
      }
      if (result === 'full') {
        const cap = this.log.segmentCount >= this.options.maxSegments
          ? `maxSegments (${this.options.maxSegments})`
          : `maxDiskBytes (${this.options.maxDiskBytes})`;
        return `memory holds ${this.memoryBytes} of ${this.options.maxMemoryBytes} bytes and the disk cap ${cap} is reached`;
      }
      this.spilled++;
      const last = this.queue.last();
      if (last instanceof DiskRun) {
        last.count++;
      } else {
        this.queue.push(new DiskRun(1), 0);
        this.emit('spill', { recordsIn: this.recordsIn, memoryBytes: this.memoryBytes });
      }
    }
    this.recordsIn++;
    this.wakeReader();
    return undefined;
  }

  private admitBlocked(): void {
    while (this.blocked.length > 0) {
      const write = this.blocked[0]!;
      let reason: string | undefined;
      try {
        reason = this.place(write.record, write.size);
      } catch (err) {
        this.blocked.shift();
        this.failWrite(write.callback, err as Error);
        continue;
      }
      if (reason !== undefined) return;
      this.blocked.shift();
      write.callback();
    }
    if (this.state !== OPEN) this.wakeReader();
  }

  private wakeReader(): void {
    if (!this.readerWaiting) return;
    this.readerWaiting = false;
    this.onReadable();
  }
}
