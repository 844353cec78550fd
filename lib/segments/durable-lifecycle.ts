import { destroyedError } from '../errors.js';
import { asError, type DurableState } from './durable-state.js';
import type { FaultEvent } from './results.js';

// The lifecycle of the durable log: failing for good (a failed sync or ledger write), waiting for
// the background work to end, and the close (docs/durable-design.md §4.4), which asks each side to
// finish its part in order: write what waits, sync it, write the ledger file, remove what is
// acknowledged, close every fd.

/** What the lifecycle asks of the rest of the log. */
export interface DurableLifecyclePeers {
  /** The background operations under way (writes, loads, ledger writes, removals). */
  busy(): Array<Promise<void> | undefined>;
  /** The error disk writes are failing with, while they are retried. */
  writeFault(): Error | undefined;
  /** Stops a segment creation under way in the background (what it made so far goes). */
  stopCreating(): void;
  /** Writes the block being filled and every waiting block synchronously; the RN written to. Throws when one fails. */
  writeOutSync(): number;
  /** Stops the timer of the next ledger write. */
  stopLedgerTimer(): void;
  /** Syncs what is written, synchronously. Throws when one fails. */
  syncSync(): void;
  /** Writes the ledger file synchronously and removes the acknowledged segments; adds what failed. */
  closeLedger(faults: FaultEvent[]): void;
  /** Closes the reader's fd. */
  closeReadFd(): void;
}

export class DurableLifecycle {
  constructor(
    private readonly log: DurableState,
    private readonly peers: DurableLifecyclePeers,
  ) {}

  /** A sync or a ledger write failed: the channel fails for good (never retried). */
  fail(err: Error): void {
    const log = this.log;
    if (log.failed !== undefined) return;
    log.failed = err;
    log.committer.stop();
    log.committer.failAll(err);
    log.hooks.onFailed(err);
  }

  /** Resolves once no background operation is under way. */
  async idle(): Promise<void> {
    for (;;) {
      const busy = this.peers.busy().filter((p) => p !== undefined);
      if (busy.length === 0) return;
      await Promise.allSettled(busy);
    }
  }

  /**
   * Close, destroy and exit (§4.4): callbacks still waiting fail with ERR_STREAM_DESTROYED; the
   * bytes waiting are written, one synchronous commit (not with 'never'), the ledger file written
   * synchronously, acknowledged segments removed, fds closed. Unacknowledged records stay for the
   * next open. Never throws for a file operation: what failed is handed back.
   */
  close(): FaultEvent[] {
    const log = this.log;
    const peers = this.peers;
    if (log.closed) return [];
    const faults: FaultEvent[] = [];
    log.committer.stop();
    log.retry.stop();
    peers.stopLedgerTimer();
    peers.stopCreating();
    let intact = log.failed === undefined;
    if (intact) {
      // Only what reaches the disk here is settled: records still in the block (a segment that
      // could not be created) or in a block that could not be written are not durable.
      try {
        const written = peers.writeOutSync();
        if (log.options.fsync !== 'never') peers.syncSync();
        log.committer.settle(written);
        if (log.builder.count > 0 || peers.writeFault() !== undefined) intact = false;
      } catch (err) {
        intact = false;
        faults.push({ operation: 'write', file: log.directory.path, error: asError(err, 'writing at close', log.directory.path) });
      }
    }
    log.closed = true;
    log.committer.failAll(destroyedError());
    if (intact) peers.closeLedger(faults);
    for (const segment of log.segments) {
      if (segment.fd !== undefined) log.fds.close(segment.fd);
      segment.fd = undefined;
    }
    peers.closeReadFd();
    log.builder.clear();
    log.cache.clear();
    return faults;
  }
}
