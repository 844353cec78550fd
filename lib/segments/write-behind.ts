import type { HopperError } from '../errors.js';
import type { LogState } from './log-state.js';

// Write-behind: when the block being filled goes to the writer (full, at the segment's end, or
// when the event loop turns), the last resort when the disk falls behind (a synchronous write,
// announced once per episode), and write faults: appends are refused while one lasts, and the
// waiting bytes are written again by the retry timer or when a removal makes room.

/** What write-behind asks of the rest of the log. */
export interface WriteBehindPeers {
  /** Segments read through while the writer used them go once it lets go of them. */
  removeLetGo(): void;
  /** Bytes reached the disk: a reader waiting for them is told. */
  wakeReader(): void;
}

export class WriteBehind {
  private flushScheduled = false;
  /** The disk fell behind and the log wrote synchronously; cleared when the waiting bytes fall to half the bound. */
  private behind = false;
  /** Synchronous writes made because the disk fell behind. */
  syncWrites = 0;
  /** Set while writing the pending block fails: appends are refused until a retry succeeds. */
  private writeFault: Error | undefined;

  constructor(
    private readonly log: LogState,
    private readonly peers: WriteBehindPeers,
  ) {}

  /** The error disk writes are failing with, while they are retried. */
  get fault(): Error | undefined {
    return this.writeFault;
  }

  /** A record was kept in the pending block: it goes to the writer now (`now`), else when the event loop turns. */
  kept(now: boolean): void {
    if (now) {
      this.tryFlush();
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushOnTurn);
    }
  }

  /**
   * Hands the block being filled to the writer, which writes it in the background (or now, when
   * the log writes through or the disk is behind); false when disk writes are failing (what waits
   * is written again by the retry).
   */
  tryFlush(): boolean {
    const log = this.log;
    if (log.closed) return true;
    if (log.block.count > 0) log.writer.enqueue(log.block);
    // Failing: the retry timer writes; nothing is started from here.
    if (this.writeFault !== undefined) return false;
    // The disk is behind when more than the bound waits while the background task writes. With
    // the task idle, what waits was just handed over (one large record can exceed the bound on its
    // own): the task takes it, and memory still holds the bound plus the one write in flight.
    if (log.writeThrough || (log.ledger.pendingBytes > log.options.maxPendingDiskBytes && log.writer.writing)) return this.writeBehindSync();
    log.writer.kick();
    return true;
  }

  /** The retry timer (or room made on disk) tries the failed writes again. */
  retryWrites(): void {
    const log = this.log;
    if (log.block.count > 0) log.writer.enqueue(log.block);
    // Nothing waits any more: no fault either.
    if (log.ledger.pendingBytes === 0) {
      this.recovered();
      return;
    }
    if (!log.writeThrough) {
      log.writer.resume();
      return;
    }
    try {
      // Calls `written`, which ends the fault.
      log.writer.writeSync();
    } catch (err) {
      this.failed(err as HopperError);
    }
  }

  /** Room was made on disk: it may be what a failing write was waiting for. */
  roomMade(): void {
    if (this.writeFault !== undefined) this.retryWrites();
  }

  /**
   * The disk is behind (or the log writes through): what waits, and is not being written in the
   * background, is written now, synchronously. Memory stays bounded and no record is refused; the
   * price is an event loop that waits for the disk while it is this slow.
   */
  private writeBehindSync(): boolean {
    const log = this.log;
    const pending = log.ledger.pendingBytes;
    try {
      if (log.writer.writeSync() === 0) {
        log.writer.kick();
        return true;
      }
    } catch (err) {
      // The writer throws ERR_HOPPER_IO for a failed system call. A bug would be taken for a write
      // fault too (announced with its message, and retried): this runs on timers, where throwing
      // it on would crash the process, and the log has no way yet to fail the channel from there.
      this.failed(err as HopperError);
      return false;
    }
    if (!log.writeThrough) {
      this.syncWrites++;
      if (!this.behind) {
        this.behind = true;
        log.hooks.onDiskBehind?.({ pendingDiskBytes: pending, maxPendingDiskBytes: log.options.maxPendingDiskBytes });
      }
    }
    log.writer.kick();
    return true;
  }

  /** Bytes reached the disk (the writer's `written` event). */
  written = (background: boolean): void => {
    const log = this.log;
    this.peers.removeLetGo();
    // The episode ends when the disk itself has caught up, not when the last resort emptied the queue.
    if (background && this.behind && log.ledger.pendingBytes <= log.options.maxPendingDiskBytes / 2) this.behind = false;
    if (this.writeFault !== undefined) {
      this.recovered();
      log.writer.resume();
      return;
    }
    this.peers.wakeReader();
  };

  /** A write failed (the writer's `failed` event, or the last resort's). */
  failed = (err: HopperError): void => {
    const log = this.log;
    this.peers.removeLetGo();
    const first = this.writeFault === undefined;
    this.writeFault = err;
    if (first) log.hooks.onFault({ operation: 'write', file: err.file ?? log.directory.path, error: err });
    log.retry.schedule();
  };

  private recovered(): void {
    this.writeFault = undefined;
    this.log.retry.writesWork();
    this.log.news();
  }

  private flushOnTurn = (): void => {
    this.flushScheduled = false;
    if (this.writeFault === undefined) this.tryFlush();
  };
}
