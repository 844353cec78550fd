import { CLOSED, ChannelLoop, READER_STARTED } from './channel-loop.js';
import type { ChannelReader, ChannelWriter, HopperStats, WriterHooks } from './channel-parts.js';
import { notDurableError, type HopperError } from './errors.js';

export { ChannelWriter } from './channel-parts.js';
export type { ChannelEmit, ChannelEvents, ChannelParts, ChannelReader, CorruptEvent, DiskTier, DropEvent, HopperStats } from './channel-parts.js';

/**
 * The engine as the stream adapters see it: the loop (channel-loop.ts: records in and out, the
 * state word, ending, closing, failing) and what the adapters ask of it besides records: opening
 * writers, attaching the reader, its state, stats, and a durable channel's flush() and ack()
 * (channel-durable.ts). Nothing here runs per record.
 */
export class Channel extends ChannelLoop {
  /** The disk tier can go on (a retried operation went through); called on a tick of its own. */
  diskRecovered(): void {
    // A tick's callback: a consumer's exception has no write() to go to, and fails the channel.
    try {
      this.update();
    } catch (err) {
      this.fail(err as Error);
    }
  }

  get closed(): boolean {
    return (this.flags & CLOSED) !== 0;
  }

  /** The reader has asked for records at least once: records placed now are on their way to a consumer. */
  get readerAttached(): boolean {
    return (this.flags & READER_STARTED) !== 0;
  }

  /** Opens a writer; the input ends when every opened writer has ended. */
  openWriter(hooks: WriterHooks): ChannelWriter {
    this.checkOpen();
    return this.writers.add(hooks);
  }

  /** Sets where records go. There is one reader per channel. */
  attachReader(reader: ChannelReader): void {
    this.reader = reader;
  }

  /** The producer's failure that cut the input short (ERR_HOPPER_PRODUCER_FAILED), if one did. */
  get producerFailure(): HopperError | undefined {
    return this.writers.failure;
  }

  /** True for a durable channel. */
  get isDurable(): boolean {
    return this.durable !== undefined;
  }

  /** See {@link Durability.flush}; rejects with ERR_HOPPER_NOT_DURABLE on a channel that is not durable. */
  flush(): Promise<void> {
    if (this.durable === undefined) return Promise.reject(notDurableError('flush()'));
    return this.durable.flush(this.failure);
  }

  /** See {@link Durability.ack}; throws ERR_HOPPER_NOT_DURABLE on a channel that is not durable. */
  ack(count: number): void {
    if (this.durable === undefined) throw notDurableError('ack()');
    this.durable.ack(count);
  }

  stats(): HopperStats {
    return this.tiers.stats();
  }

  /**
   * The user's close() or destroy(): closes the channel, and releases files kept for
   * acknowledgements after delivery ended (see {@link Durability.releaseKept}). Idempotent.
   */
  releaseKept(): void {
    this.close();
    this.durable?.releaseKept();
  }
}
