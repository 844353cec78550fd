import type { ChannelWriter, WriteCallback } from './channel-parts.js';
import type { Refusal } from './tiers.js';

// Writes held by `onFull: 'block'`: the queue of writes that met the cap, in the order made,
// admitted once the tiers have room. Used by the channel's loop (channel.ts) only.

interface HeldWrite {
  writer: ChannelWriter | undefined;
  record: unknown;
  /** The record's size for memory, or UNSIZED (tiers.ts). */
  size: number;
  callback: WriteCallback;
}

/** Calls a write back with its failure, and remembers it as the writer's last. */
export function failWrite(writer: ChannelWriter | undefined, callback: WriteCallback, err: Error): void {
  if (writer) writer.lastError = err;
  callback(err);
}

export class HeldWrites {
  private readonly writes: HeldWrite[] = [];

  get length(): number {
    return this.writes.length;
  }

  hold(writer: ChannelWriter | undefined, record: unknown, size: number, callback: WriteCallback): void {
    this.writes.push({ writer, record, size, callback });
  }

  /**
   * Places held writes, in the order made, while `place` finds room; calls each back once placed
   * (or with the error `place` threw for it). Stops early once `stop()` says so (the channel closed).
   */
  admit(place: (record: unknown, size: number) => Refusal | undefined, stop: () => boolean): void {
    const writes = this.writes;
    while (writes.length > 0 && !stop()) {
      const write = writes[0]!;
      let refusal: Refusal | undefined;
      try {
        refusal = place(write.record, write.size);
      } catch (err) {
        writes.shift();
        failWrite(write.writer, write.callback, err as Error);
        continue;
      }
      if (refusal !== undefined) return;
      writes.shift();
      write.callback();
    }
  }

  /**
   * Fails, in the order made, the held writes of `writer` (its writable is gone: its last error
   * stays its own), or all of them without one (the channel closed).
   */
  fail(err: () => Error, writer?: ChannelWriter): void {
    const failing = writer === undefined ? this.writes.splice(0) : this.writes.filter((write) => write.writer === writer);
    if (writer !== undefined) this.writes.splice(0, this.writes.length, ...this.writes.filter((write) => write.writer !== writer));
    for (const write of failing) {
      if (writer === undefined) failWrite(write.writer, write.callback, err());
      else write.callback(err());
    }
  }
}
