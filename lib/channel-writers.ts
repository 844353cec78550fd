import { ChannelWriter, type WriterChannel, type WriterHooks } from './channel-parts.js';
import { destroyedError, producerFailedError, type HopperError } from './errors.js';
import type { HeldWrites } from './held-writes.js';

// The writers that feed a channel (channel.ts) and how its input ends: once every writer it
// opened has ended, cut short when a producer failed first. Owned by the channel, which calls it
// when a writer opens or ends and when the channel closes or fails, never per record.

export class ChannelWriters {
  private readonly channel: WriterChannel;
  private readonly blocked: HeldWrites;
  private readonly open = new Set<ChannelWriter>();
  /** A producer failed before the input ended: the reader fails with this once everything is delivered. */
  private inputFailure: HopperError | undefined;

  constructor(channel: WriterChannel, blocked: HeldWrites) {
    this.channel = channel;
    this.blocked = blocked;
  }

  /** The producer's failure that cut the input short (ERR_HOPPER_PRODUCER_FAILED), if one did. */
  get failure(): HopperError | undefined {
    return this.inputFailure;
  }

  /** Opens a writer; the input ends when every opened writer has ended. */
  add(hooks: WriterHooks): ChannelWriter {
    const writer = new ChannelWriter(this.channel, hooks);
    this.open.add(writer);
    return writer;
  }

  /** A writer's producer failed: see {@link ChannelWriter.fail}. The first failure is the one reported. */
  cutShort(cause: Error | undefined): void {
    this.inputFailure ??= producerFailedError(cause);
  }

  /**
   * Ends an open writer (`aborted`: it was destroyed, so its held writes fail). True once no
   * writer is open any more.
   */
  end(writer: ChannelWriter, aborted: boolean): boolean {
    writer.ended = true;
    this.open.delete(writer);
    if (aborted) this.blocked.fail(destroyedError, writer);
    return this.open.size === 0;
  }

  /** Tells the owner of every open writer that the channel closed, or (`failed`) that reading failed. */
  tell(failed: boolean): void {
    if (failed) for (const writer of [...this.open]) (writer.hooks.onChannelFail ?? writer.hooks.onChannelClose)();
    else for (const writer of [...this.open]) writer.hooks.onChannelClose();
  }
}
