import { systemClock, type RetryClock } from './io.js';

// Group commit of a durable channel (docs/durable-design.md §2.2): three watermarks, all record
// numbers (RNs): `appended` (accepted), `written` (every byte of those records handed to the OS),
// `durable` (covered by a completed fsync; with 'never', equal to `written`). The committer
// decides when the log syncs, and calls back those waiting for durability in RN order, never
// inside the call that moved a watermark. A failed sync fails it for good (never retried: after a
// failed fsync the kernel may have dropped the dirty pages, and a second one can succeed without them).

export type FsyncPolicy = 'always' | 'batch' | 'never';

export interface CommitterOptions {
  policy: FsyncPolicy;
  /** With 'batch': a commit starts at most this long after bytes became written and unsynced. */
  intervalMs: number;
  /** What the batch timer runs on: the log's clock. */
  clock?: RetryClock | undefined;
  /** Syncs everything written so far (data, and directories that gained entries); rejects with the system error. */
  sync(): Promise<void>;
  /** `durable` moved to `rn` (for the ledger file and the stats). */
  onDurable?(rn: number): void;
  /** A sync failed: the channel fails with `err`. Called once. */
  onFailed?(err: Error): void;
}

type Done = (err?: Error | null) => void;

export class Committer {
  private appended_ = 0;
  private written_ = 0;
  private durable_ = 0;
  private committing = false;
  private timer: unknown;
  private armed = false;
  /** A flush asked for a commit of everything up to this RN as soon as it is written. */
  private urgentTo = 0;
  private failed_: Error | undefined;
  private stopped = false;
  private notifying = false;
  /**
   * Callbacks waiting for `durable` to pass their RN, in RN order, from `head` on: `waitRns[i]`
   * is the RN `waitDone[i]` waits for. A queue taken from the front by index (one callback per
   * record, so shift() would make a burst quadratic), in two arrays rather than an object per
   * callback: a burst of a million writes holds a million of them until the next commit.
   */
  private waitRns: number[] = [];
  private waitDone: Done[] = [];
  private head = 0;
  /** Completed syncs. */
  fsyncs = 0;
  /** When the last sync completed (clock ms), 0 before the first. */
  lastFsyncAt = 0;
  private readonly clock: RetryClock;

  constructor(
    private readonly options: CommitterOptions,
    start = 0,
  ) {
    this.clock = options.clock ?? systemClock;
    this.appended_ = this.written_ = this.durable_ = start;
  }

  get appended(): number {
    return this.appended_;
  }
  get written(): number {
    return this.written_;
  }
  get durable(): number {
    return this.durable_;
  }
  /** The error the committer failed with, if a sync failed. */
  get failed(): Error | undefined {
    return this.failed_;
  }
  /** Accepted records whose durability is not reached yet. */
  get undurable(): number {
    return this.appended_ - this.durable_;
  }

  /** Records below `rn` are accepted. */
  append(rn: number): void {
    if (rn > this.appended_) this.appended_ = rn;
  }

  /** Every byte of the records below `rn` was handed to the OS. */
  wrote(rn: number): void {
    if (rn <= this.written_) return;
    this.written_ = rn;
    if (this.appended_ < rn) this.appended_ = rn;
    if (this.options.policy === 'never') {
      this.advance(rn);
      return;
    }
    this.schedule();
  }

  /**
   * Calls `done` with null once every record below `rn` is durable (at once, on a later tick, if
   * it is), or with the error the committer failed with (as Node calls a write callback).
   */
  whenDurable(rn: number, done: Done): void {
    const rns = this.waitRns;
    if (rns.length === this.head || rns[rns.length - 1]! <= rn) {
      rns.push(rn);
      this.waitDone.push(done);
    } else {
      let at = this.head;
      while (rns[at]! <= rn) at++;
      rns.splice(at, 0, rn);
      this.waitDone.splice(at, 0, done);
    }
    if (this.failed_ !== undefined || this.durable_ >= rn) this.notifySoon();
  }

  /**
   * Resolves once every record accepted before the call is durable: with 'batch' the commit starts
   * as soon as they are written rather than at the timer. Rejects with the sync's error.
   */
  flush(): Promise<void> {
    const target = this.appended_;
    if (this.options.policy !== 'never' && target > this.durable_) {
      this.urgentTo = Math.max(this.urgentTo, target);
      this.schedule();
    }
    return new Promise((resolve, reject) => this.whenDurable(target, (err) => (err ? reject(err) : resolve())));
  }

  /** No more timers or commits; waiting callbacks are left to {@link failAll} or {@link settle}. */
  stop(): void {
    this.stopped = true;
    this.disarm();
  }

  /** Everything written is durable (a synchronous commit at close, or 'never'): waiters below it are called. */
  settle(rn = this.written_): void {
    if (rn > this.written_) this.written_ = rn;
    this.advance(rn);
  }

  /** Calls every waiting callback with `err` (the channel failed or was destroyed), but those already durable without. */
  failAll(err: Error): void {
    const rns = this.waitRns;
    const dones = this.waitDone;
    const head = this.head;
    this.waitRns = [];
    this.waitDone = [];
    this.head = 0;
    for (let i = head; i < rns.length; i++) {
      try {
        dones[i]!(this.failed_ === undefined && rns[i]! <= this.durable_ ? null : err);
      } catch (thrown) {
        process.nextTick(() => {
          throw thrown;
        });
      }
    }
  }

  private schedule(): void {
    if (this.stopped || this.failed_ !== undefined || this.committing || this.written_ <= this.durable_) return;
    const now = this.options.policy === 'always' || (this.urgentTo > this.durable_ && this.written_ >= Math.min(this.urgentTo, this.appended_));
    if (now) {
      this.disarm();
      void this.commit();
    } else if (!this.armed) {
      this.armed = true;
      this.timer = this.clock.setTimeout(this.fire, this.options.intervalMs);
    }
  }

  private fire = (): void => {
    this.armed = false;
    this.timer = undefined;
    if (!this.stopped && !this.committing && this.written_ > this.durable_) void this.commit();
  };

  private disarm(): void {
    if (this.armed) this.clock.clearTimeout(this.timer);
    this.armed = false;
    this.timer = undefined;
  }

  private async commit(): Promise<void> {
    this.committing = true;
    const rn = this.written_;
    try {
      await this.options.sync();
    } catch (err) {
      this.committing = false;
      this.fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.committing = false;
    this.fsyncs++;
    this.lastFsyncAt = this.clock.now();
    if (this.stopped) return;
    this.advance(rn);
    this.schedule();
  }

  private advance(rn: number): void {
    if (rn <= this.durable_) return;
    this.durable_ = rn;
    this.options.onDurable?.(rn);
    this.notifySoon();
  }

  private fail(err: Error): void {
    if (this.failed_ !== undefined) return;
    this.failed_ = err;
    this.disarm();
    this.options.onFailed?.(err);
    this.notifySoon();
  }

  /** Calls back, on a tick of its own, the waiters whose records are durable (all of them, with the error, once failed). */
  private notifySoon(): void {
    if (this.notifying) return;
    this.notifying = true;
    process.nextTick(() => {
      this.notifying = false;
      const err = this.failed_;
      while (this.head < this.waitRns.length && (err !== undefined || this.waitRns[this.head]! <= this.durable_)) {
        const done = this.waitDone[this.head]!;
        this.waitDone[this.head++] = undefined as unknown as Done;
        if (this.head === this.waitRns.length) {
          this.waitRns = [];
          this.waitDone = [];
          this.head = 0;
        } else if (this.head >= 1024 && this.head * 2 >= this.waitRns.length) {
          this.waitRns = this.waitRns.slice(this.head);
          this.waitDone = this.waitDone.slice(this.head);
          this.head = 0;
        }
        try {
          done(err ?? null);
        } catch (thrown) {
          // A user's callback that throws must not stop the others; it surfaces as Node would.
          process.nextTick(() => {
            throw thrown;
          });
        }
      }
    });
  }
}
