import type { WriteCallback } from './channel-parts.js';
import { ackBeyondDeliveredError, ackModeError, invalidArgumentType, invalidArgumentValue } from './errors.js';
import type { ResolvedOptions } from './options.js';
import type { DurableLog } from './segments/durable-log.js';

// The durable side of a channel (docs/durable-design.md): write callbacks that wait for the
// group commit, flush(), acknowledgements, and the files kept after delivery ended for
// acknowledgements that come late. The channel (channel.ts) owns one when it is durable, and
// calls it only on its durable branches: a channel that is not durable never reaches this file
// per record. It reports back only through what it is given at construction.

/**
 * Calls `done` once every record accepted so far is durable (a durable channel's write
 * callback); at once in a channel that is not durable.
 */
export function whenDurable(durable: Durability | undefined, done: WriteCallback): void {
  if (durable === undefined) done();
  else durable.whenDurable(done);
}

/** The callback of a write held by `onFull: 'block'`: admitted later, its durability is waited for from then on. */
export function whenAdmitted(durable: Durability | undefined, callback: WriteCallback, done: WriteCallback): WriteCallback {
  return (err) => {
    if (!err) whenDurable(durable, done);
    callback(err);
  };
}

export class Durability {
  private readonly log: DurableLog;
  private readonly ackMode: ResolvedOptions['ack'];
  /** Releases the channel's files (ChannelParts.release); called once. */
  private readonly release: () => void;
  /** The channel is closed. */
  private readonly closed: () => boolean;
  /**
   * Closed after everything was delivered, but the files are kept: `ack: 'manual'` still has
   * delivered records to acknowledge. They go once every one is acknowledged, or at the user's
   * close() or destroy(), or at exit (see releaseKept()).
   */
  private kept = false;

  constructor(log: DurableLog, ackMode: ResolvedOptions['ack'], release: () => void, closed: () => boolean) {
    this.log = log;
    this.ackMode = ackMode;
    this.release = release;
    this.closed = closed;
  }

  /** See {@link whenDurable}. */
  whenDurable(done: WriteCallback): void {
    this.log.committer.whenDurable(this.log.appended, done);
  }

  /**
   * Resolves once every record accepted before the call is durable under the fsync policy and the
   * acknowledged position is on disk; rejects with the failure of a failed channel.
   */
  flush(failure: Error | undefined): Promise<void> {
    if (failure !== undefined) return Promise.reject(failure);
    return this.log.flush();
  }

  /**
   * Acknowledges the oldest `count` delivered, unacknowledged records (`ack: 'manual'`), also
   * once delivery has ended (the files are kept for it). Throws ERR_HOPPER_ACK_MODE,
   * ERR_HOPPER_ACK_BEYOND_DELIVERED (nothing acknowledged), or ERR_HOPPER_INVALID_ARGUMENT (a
   * TypeError or RangeError with Node's messages) for a count that is not a safe integer from 0 up. Once the files are
   * released (the user's close() or destroy(), a failure), it does nothing: the records stay
   * unacknowledged on disk and the next open delivers them again. Throwing there would crash a
   * process from a sink's 'ack' listener during a shutdown.
   */
  ack(count: number): void {
    if (typeof count !== 'number') {
      throw invalidArgumentType('count', count, `The "count" argument must be of type number. Received ${typeof count}`);
    }
    if (!Number.isSafeInteger(count) || count < 0) {
      throw invalidArgumentValue('count', count, `The value of "count" is out of range. It must be a safe integer >= 0. Received ${count}`);
    }
    if (this.ackMode !== 'manual') throw ackModeError();
    if (this.closed() && !this.kept) return;
    const unacknowledged = this.log.acks.unacknowledged;
    if (!this.log.ack(count)) throw ackBeyondDeliveredError(count, unacknowledged);
    // Delivery has ended and everything delivered is acknowledged: nothing keeps the files.
    if (this.kept && this.log.acks.unacknowledged === 0) this.releaseKept();
  }

  /**
   * The channel closes: its files are released, unless everything was delivered (`delivered`)
   * with `ack: 'manual'` and some of it is not acknowledged yet. Then the files stay (lock,
   * segments, ledger writes) so that ack() still counts, as a sink acknowledges the last batches
   * after the readable ended.
   */
  close(delivered: boolean): void {
    if (delivered && this.ackMode === 'manual' && this.log.acks.unacknowledged > 0) this.kept = true;
    else this.release();
  }

  /**
   * Releases files kept for acknowledgements after delivery ended (the ledger file is written
   * with the acknowledgements made so far); called once the channel is closed. Idempotent.
   */
  releaseKept(): void {
    if (!this.kept) return;
    this.kept = false;
    this.release();
  }
}
