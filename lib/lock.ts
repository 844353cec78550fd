import path from 'node:path';
import { Claim, removeLeftoverClaims } from './lock-claim.js';

// The lock of a channel directory: a claim (lock-claim.ts) on `<channel dir>/hopper.lock` naming
// this process and thread, kept alive by a heartbeat. Whether a holder lives is lock-holder.ts's
// to say. It knows nothing of segments or streams; directory.ts takes the lock for a channel
// directory. See docs/locking.md for the protocol.

export { LEDGER_DRAFT, SEGMENT_DRAFT, SEGMENT_DRAFT_SYNC } from './lock-claim.js';

/**
 * The lock on a channel directory: a claim on `<channel dir>/hopper.lock` naming this process and
 * thread, kept alive by a heartbeat. One channel, one owner: across hosts, processes and threads.
 */
export class Lock {
  private heartbeat: NodeJS.Timeout | undefined;
  /** The heartbeat runs (not stopped). */
  private beating = false;

  private constructor(
    private readonly claim: Claim,
    private readonly staleMs: number,
  ) {}

  /**
   * Takes the lock `lockPath`, taking over a stale one, and removes leftovers of claims beside it.
   * Throws `ERR_HOPPER_LOCKED` naming the holder and saying when the lock can be taken, or
   * `ERR_HOPPER_IO` (its `cause` the system error) when the directory cannot be written.
   */
  static take(lockPath: string, staleMs: number): Lock {
    const lock = new Lock(Claim.take(lockPath, staleMs), staleMs);
    removeLeftoverClaims(path.dirname(lockPath), path.basename(lockPath), staleMs);
    return lock;
  }

  /** The lock directory. */
  get path(): string {
    return this.claim.dir;
  }

  /** True while the lock is still this one (not taken over by someone who found it stale). */
  held(): boolean {
    return this.claim.held();
  }

  /** {@link held} off the event loop. */
  heldAsync(): Promise<boolean> {
    return this.claim.heldAsync();
  }

  /**
   * Starts the heartbeat: every third of the staleness window, `alive()` is asked whether the
   * holder still stands (it stops the heartbeat when it does not), and the owner file is touched,
   * both off the event loop (a beat still under way when the next is due lets it pass). The timer
   * does not keep the process alive.
   */
  startHeartbeat(alive: () => Promise<boolean>): void {
    const interval = Math.max(50, Math.floor(this.staleMs / 3));
    this.beating = true;
    let beat: Promise<void> | undefined;
    this.heartbeat = setInterval(() => {
      if (beat !== undefined) return;
      beat = this.beat(alive).finally(() => {
        beat = undefined;
      });
    }, interval);
    this.heartbeat.unref();
  }

  private async beat(alive: () => Promise<boolean>): Promise<void> {
    try {
      // Stopped meanwhile (released, or lost): the owner file may be another holder's by now.
      if (!(await alive()) || !this.beating) return;
      await this.claim.touchAsync();
    } catch {
      // A missed heartbeat is retried at the next beat; only a lock taken over stops the channel.
    }
  }

  stopHeartbeat(): void {
    this.beating = false;
    clearInterval(this.heartbeat);
  }

  /** Stops the heartbeat and removes the lock if it is still ours. Never throws. */
  release(): void {
    this.stopHeartbeat();
    this.claim.release(this.staleMs);
  }
}
