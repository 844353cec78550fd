import nodeFs from 'node:fs';
import type { RecordCodec } from '../codec.js';
import type { HopperError } from '../errors.js';
import { BLOCK_FRAMING_BYTES, compressionSlack } from '../ocf.js';
import { BlockBuilder } from './block-builder.js';
import { Closer, RetryPolicy, plainDirectory, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import { Ledger } from './ledger.js';
import type { LogState, SegmentLogHooks, SegmentLogOptions } from './log-state.js';
import { ReadPath } from './read-path.js';
import { SegmentReader } from './reader.js';
import { Removals } from './removals.js';
import type { AppendResult, DroppedSegment, FaultEvent } from './results.js';
import { removeStaleSegments } from './stale.js';
import { WriteBehind } from './write-behind.js';
import { SegmentWriter } from './writer.js';

// The facade of the segment log: what the channel calls (its DiskTier). It owns the caps, the
// record count and the close, and wires the parts that do the rest: write-behind.ts (when blocks
// go to the writer, the last resort, write faults), read-path.ts (the next record, corruption and
// read faults), removals.ts (segments read through, drop-oldest, close), and the one retry timer
// that tries again whatever failed.

/** Bytes gathered into one background write at most. */
const GATHER_BYTES = 1024 * 1024;

/**
 * The segment log. Records are encoded into a block in memory; a block is handed to the writer
 * when it reaches its target size or when the event loop turns, and written behind the caller's
 * back (libuv's thread pool), gathered into large writes. The reader reads whole blocks only, once
 * they are on disk, checks them against the framing and against what was written, and decodes
 * records one at a time. Failed file operations are retried with backoff.
 */
export class SegmentLog {
  private readonly state: LogState;
  private readonly headerBytes: number;
  /**
   * Size past which a segment is sealed: maxSegmentBytes, but at most a quarter of maxDiskBytes,
   * so that segments read through free the disk cap in steps instead of one segment holding it.
   */
  private readonly sealAt: number;
  private readonly flushing: WriteBehind;
  private readonly reads: ReadPath;
  private readonly removals: Removals;
  /** onRecovered is due on the next tick. */
  private recoveryScheduled = false;

  constructor(dir: string | SegmentDirectory, codec: RecordCodec, options: SegmentLogOptions, hooks: SegmentLogHooks, fileSystem: SegmentFileSystem = nodeFs) {
    const directory = typeof dir === 'string' ? plainDirectory(dir) : dir;
    const ledger = new Ledger();
    const closer = new Closer(fileSystem);
    // Large Buffers can be written by reference when the codec says which, and blocks are not
    // compressed (deflate needs all the bytes in one place).
    const byReference = options.codec === 'null' && codec.largeRecord !== undefined && codec.encodeLargeHead !== undefined && codec.largeValue !== undefined;
    this.sealAt = Math.max(1, Math.min(options.maxSegmentBytes, Math.floor(options.maxDiskBytes / 4)));
    const writer = new SegmentWriter(
      fileSystem,
      directory,
      ledger,
      codec.type.schema({ exportAttrs: true }),
      { codec: options.codec, channel: options.channel, sealAt: this.sealAt, gatherBytes: Math.max(1, Math.min(GATHER_BYTES, options.maxPendingDiskBytes)) },
      {
        sealed: (segment) => hooks.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records }),
        written: (background) => this.flushing.written(background),
        failed: (err) => this.flushing.failed(err as HopperError),
      },
      closer,
    );
    this.headerBytes = writer.headerBytes;
    this.state = {
      fs: fileSystem,
      directory,
      options,
      hooks,
      ledger,
      block: new BlockBuilder(codec, byReference),
      writer,
      reader: new SegmentReader(fileSystem, codec, options.codec, directory, closer),
      retry: new RetryPolicy(this.retryFailed, fileSystem.retryClock),
      closer,
      writeThrough: options.maxPendingDiskBytes === 0,
      records: 0,
      closed: false,
      news: () => this.scheduleRecovered(),
    };
    this.flushing = new WriteBehind(this.state, {
      removeLetGo: () => this.removals.removeLetGo(),
      wakeReader: () => this.reads.wakeReader(),
    });
    this.removals = new Removals(this.state, {
      // Room made on disk is news for the channel too: a write held by onFull 'block' may fit now.
      roomMade: () => {
        this.flushing.roomMade();
        this.state.news();
      },
    });
    this.reads = new ReadPath(this.state, {
      removeSegment: (segment) => this.removals.removeSegment(segment),
      writesFailing: () => this.flushing.fault !== undefined,
    });
    removeStaleSegments(fileSystem, directory.path, ledger, hooks.onFault);
  }

  /** Records appended and not yet read (or dropped, or lost), pending block included. */
  get records(): number {
    return this.state.records;
  }

  /** Segment files that exist now. */
  get segmentCount(): number {
    return this.state.ledger.segments.length;
  }

  /** Bytes of memory held for I/O: the block being filled, the block being read, the read-ahead. */
  get bufferBytes(): number {
    return this.state.block.bufferBytes + this.state.reader.bufferBytes;
  }

  /** Bytes of all segment files plus the block being filled. */
  get bytes(): number {
    const { block, ledger } = this.state;
    if (block.count === 0) return ledger.fileBytes;
    return ledger.fileBytes + block.pending + BLOCK_FRAMING_BYTES + (ledger.active() === undefined ? this.headerBytes : 0);
  }

  /** The error disk writes are failing with, while they are retried. */
  get fault(): Error | undefined {
    return this.flushing.fault;
  }

  /** Bytes of blocks handed to the writer and not on disk yet. */
  get pendingBytes(): number {
    return this.state.ledger.pendingBytes;
  }

  /** Synchronous writes made because the disk fell behind. */
  get syncWrites(): number {
    return this.flushing.syncWrites;
  }

  /** Resolves once no background file operation is under way (a close that waits; tests). */
  async idle(): Promise<void> {
    for (;;) {
      await this.state.writer.idle();
      await this.state.reader.idle();
      const removals = this.removals.settled();
      if (removals !== undefined) {
        await removals;
        continue;
      }
      const closes = this.state.closer.settled();
      if (closes === undefined) return;
      await closes;
    }
  }

  /**
   * Encodes a record into the pending block, unless that would pass `maxDiskBytes` or need a
   * segment beyond `maxSegments`, or disk writes are failing. Nothing is kept when the answer is
   * not 'ok'. A record that is kept is never lost to a failed write: its block is retried.
   */
  append(record: unknown): AppendResult {
    if (this.flushing.fault !== undefined) return 'fault';
    const { block, ledger, options } = this.state;
    const size = block.stage(record);
    const { codec, maxDiskBytes } = options;
    const alone = this.headerBytes + size + BLOCK_FRAMING_BYTES + compressionSlack(size, codec);
    if (alone > maxDiskBytes) return this.refused('too-large');
    // A pending block with no active segment will open one when it is written: count its header.
    const active = ledger.active();
    if (active === undefined && block.count === 0 && ledger.segments.length >= options.maxSegments) return this.refused('full');
    const pending = block.stagedPending;
    const after = ledger.fileBytes + (active === undefined ? this.headerBytes : 0) + pending + BLOCK_FRAMING_BYTES + compressionSlack(pending, codec);
    if (after > maxDiskBytes) return this.refused('full');

    const full = block.keep();
    this.state.records++;
    const room = this.sealAt - (active !== undefined ? active.size : this.headerBytes);
    this.flushing.kept(full || pending >= room);
    return 'ok';
  }

  /** An append that kept nothing. */
  private refused(result: 'full' | 'too-large'): AppendResult {
    this.state.block.drop();
    return result;
  }

  /**
   * Hands the block being filled to the writer, which writes it in the background (or now, when
   * the log writes through or the disk is behind); false when disk writes are failing (what waits
   * is written again by the retry).
   */
  tryFlush(): boolean {
    return this.flushing.tryFlush();
  }

  /**
   * The next record in write order (the caller knows one exists: `records > 0`), or what stands
   * in its way: {@link WAIT} when it cannot be read now (a failed read is being retried; the log
   * calls `onRecovered` when it is worth asking again), or, with `onCorrupt: 'skip'`, the
   * {@link LostRecords} skipped over (ask again at once). Records are never undefined. Throws
   * `ERR_HOPPER_CORRUPT_SEGMENT` (with 'error') or `ERR_HOPPER_IO` when reads keep failing.
   */
  next(): unknown {
    return this.reads.next();
  }

  /**
   * Deletes the oldest sealed segment the reader is not reading, to make room (the `'drop-oldest'`
   * policy). Returns where its records stood among the records still in the log (`offset`
   * records come before them), or undefined when no segment can go.
   */
  dropOldest(): DroppedSegment | undefined {
    return this.removals.dropOldest();
  }

  /**
   * Closes every file and removes every segment this log created. Idempotent. Returns what it could
   * not remove, for the caller to announce once it has released the rest (a 'fault' listener runs
   * user code, which must not run while files are half closed).
   */
  close(): FaultEvent[] {
    const state = this.state;
    if (state.closed) return [];
    state.closed = true;
    state.retry.stop();
    state.writer.close();
    state.reader.closeFile();
    const { leftovers, readThrough } = this.removals.removeAll();
    state.block.clear();
    state.records = 0;
    // Segments read through whose removal was under way in the background are gone now: they are
    // announced as removed, as they would have been, once every file is closed.
    for (const segment of readThrough) this.removals.announce(segment);
    return leftovers;
  }

  /**
   * Tells the channel on a tick of its own: a recovery is found inside an append, a read or a
   * drop, or a removed segment freed room (which a failing write or a held one waited for), while the channel is in
   * the middle of placing or delivering; it picks the news up once it is done, never re-entered.
   */
  private scheduleRecovered(): void {
    if (this.recoveryScheduled) return;
    this.recoveryScheduled = true;
    process.nextTick(this.reportRecovered);
  }

  private reportRecovered = (): void => {
    this.recoveryScheduled = false;
    if (!this.state.closed) this.state.hooks.onRecovered();
  };

  /** The retry timer fired: try again whatever failed. */
  private retryFailed = (): void => {
    this.removals.retry();
    if (this.flushing.fault !== undefined) this.flushing.retryWrites();
    // A waiting reader tries again (a read that fails again schedules the next retry).
    else this.scheduleRecovered();
  };
}
