import { EventEmitter } from 'node:events';
import type { Readable as NodeReadable, Writable as NodeWritable } from 'node:stream';
import { Readable, Writable, finished } from 'readable-stream';
import { Channel, EMPTY, type ChannelEvents, type HopperStats } from './channel.js';
import { writeAfterEndError } from './errors.js';
import { resolveOptions, type HopperOptions } from './options.js';

/**
 * The objectMode Writable side of a hopper: accepts records without backpressure until the disk cap.
 * Its `write()` keeps Node's signature so that `source.pipe(hopper.writable)` and `pipeline()`
 * type-check; `T` is what `send()` takes and what the readable yields.
 */
export interface HopperWritable<T> extends NodeWritable {}

/** The objectMode Readable side of a hopper: yields every accepted `T`, in order. */
export interface HopperReadable<T> extends NodeReadable {
  read(size?: number): T | null;
  [Symbol.asyncIterator](): NodeJS.AsyncIterator<T>;
}

/** Events of a hopper object, with their payloads. */
export type HopperEvents = ChannelEvents;

/**
 * A hopper: an objectMode Writable and Readable joined by a bounded-memory channel that pages
 * its overflow to Avro segment files. Records come out in the order they were accepted.
 * An EventEmitter of `'spill'`, `'full'` and `'segment'` (see {@link HopperEvents}).
 */
export class HopperStreams<T = unknown> extends EventEmitter<HopperEvents> {
  /** Feeds the channel. `write()` returns true and calls back at once until memory is full and a disk cap is reached. */
  readonly writable: HopperWritable<T>;
  /** Drains the channel: memory records as they are, disk records decoded, all in write order. */
  readonly readable: HopperReadable<T>;
  private readonly channel: Channel;
  private pumping = false;

  constructor(options?: HopperOptions) {
    super();
    const channel = new Channel(resolveOptions(options), (event, ...args) => {
      this.emit(event, ...(args as never));
    });
    this.channel = channel;

    const writable = new Writable({
      objectMode: true,
      write: (record: unknown, _encoding: string, callback: (err?: Error | null) => void) => {
        channel.write(record, callback);
      },
      final: (callback: (err?: Error | null) => void) => {
        channel.end();
        callback();
      },
      destroy: (err: Error | null, callback: (err?: Error | null) => void) => {
        // A write we refused ends the input; any other error (a failed source in a pipeline,
        // destroy(err)) fails the whole channel.
        if (err && err !== channel.lastWriteError) this.teardown(err);
        else channel.end();
        callback(err);
      },
    });

    const readable = new Readable({
      objectMode: true,
      read: () => this.pump(),
      destroy: (err: Error | null, callback: (err: Error | null) => void) => {
        channel.close();
        // A consumer that stops early (break, return) aborts the readable: the producer's
        // writes now fail with ERR_STREAM_DESTROYED, but that is no error of the writable's.
        if (!writable.destroyed) writable.destroy(err && err.name !== 'AbortError' ? err : undefined);
        callback(err);
      },
    });

    channel.onReadable = () => this.pump();
    channel.onError = (err) => this.teardown(err);
    this.writable = writable as unknown as HopperWritable<T>;
    this.readable = readable as unknown as HopperReadable<T>;
  }

  /** The channel directory, `<dataDir>/<name>`. */
  get path(): string {
    return this.channel.path;
  }

  /**
   * Hopper's `Sender::send`: accepts the record at once, or throws a `HopperError`:
   * `ERR_HOPPER_FULL` (its `.record` is the refused record) when memory is full and a disk
   * cap is reached, whatever `onFull` says; `ERR_HOPPER_INVALID_RECORD` when it does not match the schema.
   */
  send(record: T): void {
    if (this.writable.writableEnded && !this.channel.closed) throw writeAfterEndError();
    this.channel.send(record);
  }

  /** Counters of the channel now. */
  stats(): HopperStats {
    return this.channel.stats();
  }

  /**
   * Ends the writable side and resolves once the readable side has delivered everything and
   * ended, and the channel's files are removed. Rejects if the hopper is destroyed with an error first.
   * Something must be reading the readable side for this to resolve.
   */
  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      const readable = this.readable as unknown as Readable;
      if (readable.destroyed) {
        const err = readable.errored;
        if (err) reject(err);
        else resolve();
        return;
      }
      finished(readable, { writable: false }, (err?: Error | null) => {
        if (err && !(readable.readableEnded && this.channel.closed)) reject(err);
        else resolve();
      });
      if (!this.writable.writableEnded && !this.writable.destroyed) this.writable.end();
      else this.channel.end();
    });
  }

  /** Tears down both sides at once (with `err`, if given) and removes the channel's files. */
  destroy(err?: Error): void {
    this.teardown(err);
  }

  private teardown(err: Error | undefined): void {
    this.channel.close();
    if (!this.writable.destroyed) this.writable.destroy(err);
    if (!this.readable.destroyed) this.readable.destroy(err);
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    const readable = this.readable as unknown as Readable;
    try {
      for (;;) {
        if (readable.destroyed) return;
        const record = this.channel.read();
        if (record === EMPTY) {
          if (this.channel.finished) readable.push(null);
          return;
        }
        if (!readable.push(record)) return;
      }
    } catch (err) {
      this.teardown(err as Error);
    } finally {
      this.pumping = false;
    }
  }
}

/**
 * Creates a hopper: `{ writable, readable, send, stats, close, destroy }`, an EventEmitter.
 *
 * @example
 * ```ts
 * const hopper = createHopperStreams<Event>({ schema, maxMemoryBytes: 8 * 1024 ** 2 });
 * source.pipe(hopper.writable);
 * for await (const event of hopper.readable) await slowSink(event);
 * ```
 */
export function createHopperStreams<T = unknown>(options?: HopperOptions): HopperStreams<T> {
  return new HopperStreams<T>(options);
}
