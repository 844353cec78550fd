import { Readable, type Writable, finished } from 'node:stream';
import type { StreamSide } from './adapter.js';
import type { Channel, ChannelReader } from './channel.js';

// The channel's side of a node:stream readable (a pair's readable, or the Duplex): how its
// _read() asks the channel, how records, the end and a failure are pushed into it, and how the
// core sees it. The readable classes (streams.ts) call in through read(), afterRead() and length().

/** Node's own readableLength: the records in a readable's buffer. */
export const bufferedRecords = Object.getOwnPropertyDescriptor(Readable.prototype, 'readableLength')!.get! as (this: Readable) => number;

/** Where the channel is delivering from: outside the stream's `_read()`, in its first, or in a later one. */
type InRead = 'no' | 'first' | 'later';

/** The channel's reader for a Node readable. */
export class NodeReader implements ChannelReader {
  private scheduled = false;
  private inRead: InRead = 'no';
  private reads = 0;
  /** A 'readable' listener was attached when the input ended. */
  private listenedAtEnd = false;
  /** A failure that waits for the records already in the readable's buffer to be read. */
  private failure: Error | undefined;

  /** `teardown` destroys the hopper with an error (the core's teardown). */
  constructor(
    private readonly readable: Readable,
    private readonly channel: Channel,
    private readonly teardown: (err: Error) => void,
  ) {}

  /**
   * The readable's `_read()`. A flowing readable with records waiting gets them from a tick of
   * its own: Node buffers what is pushed inside `read()` and takes it out again for the `'data'`
   * listeners, but hands what is pushed outside it, into an empty buffer, straight to them. That
   * took about a tenth off the per-record cost of draining a backlog. Otherwise (paused, or
   * nothing waiting, so that the next write is handed over) records are pushed at once.
   */
  read(): void {
    if (this.readable.readableFlowing !== true || this.channel.waiting === 0) {
      this.inRead = this.reads++ === 0 ? 'first' : 'later';
      try {
        this.channel.deliver();
      } finally {
        this.inRead = 'no';
      }
    } else if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.drain);
    }
  }

  private drain = (): void => {
    this.scheduled = false;
    if (this.readable.destroyed) return;
    try {
      this.channel.deliver();
    } catch (err) {
      // A 'data' listener threw: as inside read(), the readable is destroyed with it.
      this.readable.destroy(err as Error);
    }
  };

  /**
   * After each `read()` of the readable (its class calls this): a failure waiting for the
   * buffered records goes once the last of them is read. Every way of consuming a Node readable
   * ('data', pipe, async iteration, read()) goes through its read().
   */
  afterRead(): void {
    if (this.failure === undefined || bufferedRecords.call(this.readable) !== 0) return;
    const err = this.failure;
    this.failure = undefined;
    // After the caller has the last record: a 'data' listener, or an iterator's next().
    process.nextTick(this.teardown, err);
  }

  /**
   * The readable's `readableLength`: the records in its buffer and those waiting in the channel
   * (memory and disk), as a PassThrough's lengths count its waiting records. Node's stream
   * internals read their state, not this property.
   */
  length(): number {
    return bufferedRecords.call(this.readable) + this.channel.waiting;
  }

  push(record: unknown): boolean {
    return this.readable.push(record);
  }

  /**
   * Whether a record pushed now would wait in the readable's buffer: Node emits 'data' inside
   * push() only when the readable flows, holds nothing, and has a 'data' listener (Readable's
   * addChunk). A record that waits is copied first by the channel (the producer may reuse it).
   */
  holds(): boolean {
    const readable = this.readable;
    return !(readable.readableFlowing === true && bufferedRecords.call(readable) === 0 && readable.listenerCount('data') > 0);
  }

  inputEnded(): void {
    this.listenedAtEnd = this.readable.listenerCount('readable') > 0;
  }

  /**
   * Ends the readable as a PassThrough's end would, which pushes its end at once, behind the
   * records it holds, and outside a read emits 'readable' there and then. So the end is pushed at
   * once (a paused readable then knows it has ended, and emits 'end' once emptied, paused or not:
   * a pipe into a destination that needs drain pauses it no more often than a PassThrough),
   * except where a 'readable' listener would then count its events differently:
   * - a listener attached when the input ended got a PassThrough's event at its end besides the
   *   one its records had: the end is pushed on a later tick, which gives the same two;
   * - in a later read (a listener reading what an earlier event announced), a push inside the
   *   read would add an event: the end goes on a later tick too.
   * In the first read, records and end were waiting together, and a push inside the read shares
   * the event already due for them (Node's onEofChunk), as a PassThrough's one event does.
   */
  end(): void {
    const readable = this.readable;
    const listening = readable.listenerCount('readable') > 0;
    if (bufferedRecords.call(readable) === 0 || !listening || (this.inRead === 'first' && !this.listenedAtEnd)) readable.push(null);
    else process.nextTick(() => readable.push(null));
  }

  /**
   * Fails the readable once the records already pushed into it are read: destroy() alone would
   * discard them, though the channel counted them as delivered.
   */
  fail(err: Error): void {
    if (this.readable.destroyed) return;
    if (bufferedRecords.call(this.readable) === 0) this.teardown(err);
    else this.failure = err;
  }

  /**
   * A readable piped (or given a 'data' listener) flows only from its first read, on a later
   * tick; until then every push is buffered. Reading now, while nothing is queued, makes the next
   * push go straight to the consumer: a synchronous producer then feeds a keeping-up consumer
   * record by record instead of filling memory and spilling before the consumer's first turn.
   * This is the one call from the channel back into it through the stream (read(0) → _read() →
   * deliver()), before the write is placed and outside the channel's loop. Node leaves no other
   * way: a readable starts with its `sync` flag set (Node 20 lib/internal/streams/readable.js:265,
   * `kEmitClose | kAutoDestroy | kConstructed | kSync`), only a read() clears it (line 743), and
   * while it is set addChunk() buffers a push instead of emitting 'data' (line 551).
   */
  start(): void {
    if (this.readable.readableFlowing === true && !this.readable.destroyed) this.readable.read(0);
  }
}

/** A Node readable (with the writable that feeds it: the Duplex itself, or a pair's writable) as the core sees it. */
export function nodeSide(readable: Readable, writable: Writable): StreamSide {
  return {
    isGone: () => readable.destroyed,
    destroy: (err) => readable.destroy(err),
    endIfIdle: (channel) => {
      // Nothing left to deliver and close() asked: the channel hands over its end (and removes its
      // files), and a read(0) of the ended, empty readable emits 'end', which a paused readable
      // would otherwise wait for a reader to see.
      if (!channel.finished || readable.destroyed || readable.readableLength > 0) return;
      channel.deliver();
      if (!readable.destroyed) readable.read(0);
    },
    whenClosed: (channel, done) => {
      if (readable.destroyed) {
        done(readable.errored ?? undefined);
        return false;
      }
      // A pair's readable has no write side to wait for; a Duplex's has.
      finished(readable, (err?: Error | null) => {
        done(err && !(readable.readableEnded && channel.closed) ? err : undefined);
      });
      return true;
    },
    endWrites: () => {
      if (!writable.writableEnded && !writable.destroyed) writable.end();
    },
    buffered: () => bufferedRecords.call(readable),
    writesGone: () => writable.destroyed,
  };
}
