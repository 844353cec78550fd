import { EventEmitter } from 'node:events';
import type { Duplex as NodeDuplex, Readable as NodeReadable, Writable as NodeWritable } from 'node:stream';
import { Duplex, Readable, Writable, finished } from 'node:stream';
import { HopperCore, type HopperEvents, type HopperInternals, type HopperListener, type StreamSide } from './adapter.js';
import type { Channel, ChannelReader, ChannelWriter, HopperStats } from './channel.js';
import type { HopperOptions } from './options.js';

type WriteCallback = (error: Error | null | undefined) => void;
type NodeWriteCallback = (err?: Error | null) => void;

/**
 * The objectMode Writable side of a hopper (a `Writable` of `node:stream`): accepts records
 * without backpressure until the disk cap. `write()` and `end()` take a `T`.
 */
export interface HopperWritable<T> extends NodeWritable {
  /**
   * Not callable (nothing is a `never`): this makes the writable fit `NodeJS.WritableStream`,
   * whose string and `Uint8Array` writes are what `pipe()` and `pipeline()` ask of a destination.
   * It comes first because TypeScript 7 reports a failed call against the last overload: a record
   * of the wrong shape is then told what a `T` lacks ("Property 'id' is missing"), not "never".
   */
  write(chunk: never, encoding?: BufferEncoding | NodeWriteCallback, callback?: NodeWriteCallback): boolean;
  write(chunk: T, callback?: WriteCallback): boolean;
  write(chunk: T, encoding: BufferEncoding, callback?: WriteCallback): boolean;
  /** Not callable: see the first `write()`. */
  end(chunk: never, encoding?: BufferEncoding | (() => void), callback?: () => void): this;
  end(callback?: () => void): this;
  end(chunk: T, callback?: () => void): this;
  end(chunk: T, encoding: BufferEncoding, callback?: () => void): this;
}

/** The objectMode Readable side of a hopper (a `Readable` of `node:stream`): yields every accepted `T`, in order. */
export interface HopperReadable<T> extends NodeReadable {
  read(size?: number): T | null;
  [Symbol.asyncIterator](): NodeJS.AsyncIterator<T>;
}

export type { HopperEvents, HopperListener } from './adapter.js';

type Callback = (err?: Error | null) => void;

/**
 * Once close() has been asked for and nothing is left to deliver, ends a readable that nobody
 * reads: the channel hands over its end (and removes its files), and a read(0) of the ended,
 * empty readable emits 'end', which a paused readable would otherwise wait for a reader to see.
 */
function endIfIdle(channel: Channel, readable: NodeReadable): void {
  if (!channel.finished || readable.destroyed || readable.readableLength > 0) return;
  channel.deliver();
  if (!readable.destroyed) readable.read(0);
}

/**
 * A readable piped (or given a 'data' listener) flows only from its first read, on a later tick;
 * until then every push is buffered. Reading now, while nothing is queued, makes the next push
 * go straight to the consumer: a synchronous producer then feeds a keeping-up consumer record
 * by record instead of filling memory and spilling before the consumer's first turn.
 */
function startFlowing(readable: { readableFlowing: boolean | null; destroyed: boolean; read(size: number): unknown }): void {
  if (readable.readableFlowing === true && !readable.destroyed) readable.read(0);
}

/**
 * The `read()` of a hopper's readable. A flowing readable with records waiting gets them from a
 * tick of its own: Node buffers what is pushed inside `read()` and takes it out again for the
 * `'data'` listeners, but hands what is pushed outside it, into an empty buffer, straight to them.
 * That took about a tenth off the per-record cost of draining a backlog. Otherwise (paused, or
 * nothing waiting, so that the next write is handed over) records are pushed at once.
 * `inRead()` says whether the channel is inside the stream's `_read()`, and which.
 */
function readFromChannel(readable: Readable, channel: Channel): { read: () => void; inRead: () => InRead } {
  let scheduled = false;
  let inRead: InRead = 'no';
  let reads = 0;
  const drain = (): void => {
    scheduled = false;
    if (readable.destroyed) return;
    try {
      channel.deliver();
    } catch (err) {
      // A 'data' listener threw: as inside read(), the readable is destroyed with it.
      readable.destroy(err as Error);
    }
  };
  return {
    read: () => {
      if (readable.readableFlowing !== true || channel.waiting === 0) {
        inRead = reads++ === 0 ? 'first' : 'later';
        try {
          channel.deliver();
        } finally {
          inRead = 'no';
        }
      } else if (!scheduled) {
        scheduled = true;
        process.nextTick(drain);
      }
    },
    inRead: () => inRead,
  };
}

/** Node's own readableLength: the records in a readable's buffer. */
const bufferedRecords = Object.getOwnPropertyDescriptor(Readable.prototype, 'readableLength')!.get! as (this: Readable) => number;

/**
 * Makes a readable's `readableLength` count the records waiting in the channel (memory and disk)
 * as well as those in its buffer: what a PassThrough's counts, and what monitoring reads.
 * Node's stream internals read their state, not this property.
 */
function countWaiting(readable: Readable, channel: Channel): void {
  Object.defineProperty(readable, 'readableLength', {
    configurable: true,
    get(this: Readable): number {
      return bufferedRecords.call(this) + channel.waiting;
    },
  });
}

/**
 * Fails a readable once the records already pushed into it are read: destroy() alone would
 * discard them, though the channel counted them as delivered. Every way of consuming a Node
 * readable ('data', pipe, async iteration, read()) goes through its read().
 */
function failAfterBuffered(readable: Readable, err: Error, destroy: (err: Error) => void): void {
  if (readable.destroyed) return;
  if (bufferedRecords.call(readable) === 0) {
    destroy(err);
    return;
  }
  const read = readable.read;
  readable.read = function (this: Readable, size?: number): unknown {
    const record: unknown = read.call(this, size);
    if (bufferedRecords.call(this) === 0) {
      readable.read = read;
      // After the caller has the last record: a 'data' listener, or an iterator's next().
      process.nextTick(destroy, err);
    }
    return record;
  };
}

/** Where the channel is delivering from: outside the stream's `_read()`, in its first, or in a later one. */
type InRead = 'no' | 'first' | 'later';

/**
 * Ends a readable as a PassThrough's end would, which pushes its end at once, behind the records
 * it holds, and outside a read emits 'readable' there and then. So the end is pushed at once (a
 * paused readable then knows it has ended, and emits 'end' once emptied, paused or not: a pipe
 * into a destination that needs drain pauses it no more often than a PassThrough), except where
 * a 'readable' listener would then count its events differently:
 * - a listener attached when the input ended got a PassThrough's event at its end besides the
 *   one its records had: the end is pushed on a later tick, which gives the same two;
 * - in a later read (a listener reading what an earlier event announced), a push inside the
 *   read would add an event: the end goes on a later tick too.
 * In the first read, records and end were waiting together, and a push inside the read shares
 * the event already due for them (Node's onEofChunk), as a PassThrough's one event does.
 */
function endReadable(readable: Readable, inRead: InRead, listenedAtEnd: boolean): void {
  const listening = readable.listenerCount('readable') > 0;
  if (bufferedRecords.call(readable) === 0 || !listening || (inRead === 'first' && !listenedAtEnd)) readable.push(null);
  else process.nextTick(() => readable.push(null));
}

/** The channel's reader for a Node readable (a pair's readable, or the Duplex): `fail` tears the hopper down. */
function nodeReader(readable: Readable, core: HopperCore, inRead: () => InRead): ChannelReader {
  /** A 'readable' listener was attached when the input ended. */
  let listenedAtEnd = false;
  return {
    push: (record) => readable.push(record),
    inputEnded: () => {
      listenedAtEnd = readable.listenerCount('readable') > 0;
    },
    end: () => endReadable(readable, inRead(), listenedAtEnd),
    fail: (err) => failAfterBuffered(readable, err, (error) => core.teardown(error)),
    start: () => startFlowing(readable),
    // Node emits 'data' inside push() exactly when the readable flows, holds nothing, and has a
    // 'data' listener (Readable's addChunk); otherwise the record waits in its buffer.
    holds: () => !(readable.readableFlowing === true && readable.readableLength === 0 && readable.listenerCount('data') > 0),
  };
}

/** A Node readable (with the writable that feeds it: the Duplex itself, or a pair's writable) as the core sees it. */
function nodeSide(readable: Readable, writable: Writable): StreamSide {
  return {
    isGone: () => readable.destroyed,
    destroy: (err) => readable.destroy(err),
    endIfIdle: (channel) => endIfIdle(channel, readable),
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
  };
}

/**
 * A Writable over one writer of the channel. A write the channel refused (invalid record, full
 * with `onFull: 'error'`) ends this writer like any failed Node write. The hopper's `own` writable
 * destroyed otherwise before end() cuts the input short. `onEnd` runs once the writer has ended.
 */
function writerStream(channel: Channel, own: boolean, onEnd: () => void): Writable {
  const writer: ChannelWriter = channel.openWriter();
  /** Destroyed by the channel closing: no producer failed. */
  let byChannel = false;
  const stream = new Writable({
    objectMode: true,
    write(record: unknown, _encoding: string, callback: Callback) {
      writer.write(record, callback);
    },
    final(callback: Callback) {
      writer.end();
      callback();
      onEnd();
    },
    destroy(err: Error | null, callback: Callback) {
      if (own && !byChannel && (err === null || err !== writer.lastError)) writer.fail(err ?? undefined);
      else writer.abort();
      callback(err);
    },
  });
  writer.onChannelClose = () => {
    byChannel = true;
    if (!stream.destroyed) stream.destroy();
  };
  return stream;
}

/** `on`/`once`/`off` and the other listener methods take only the hopper's events, with their payloads. */
// biome-ignore lint/correctness/noUnusedVariables: T must match the class this interface merges with
export interface HopperStreams<T> {
  on<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  once<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  off<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  addListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  removeListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  prependListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  prependOnceListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
}

/**
 * A hopper: an objectMode Writable and Readable joined by a bounded-memory channel that pages
 * its overflow to Avro segment files. Records come out in the order they were accepted.
 * An EventEmitter of `'spill'`, `'full'`, `'segment'`, `'drop'`, `'corrupt'` and `'fault'`
 * (see {@link HopperEvents}).
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface only types the listener methods EventEmitter has
export class HopperStreams<T = unknown> extends EventEmitter {
  /** Feeds the channel. `write()` returns true and calls back at once until memory is full and a disk cap is reached. */
  readonly writable: HopperWritable<T>;
  /** Drains the channel: memory records as they are, disk records decoded, all in write order. */
  readonly readable: HopperReadable<T>;
  private readonly core: HopperCore;
  /** The core's channel (tests read the segment log's buffers through it). */
  private readonly channel: Channel;

  constructor(options?: HopperOptions, internals?: HopperInternals) {
    super();
    const core = new HopperCore(options, this, internals);
    this.core = core;
    const channel = core.channel;
    this.channel = channel;
    // The hopper's own writable destroyed before end() (a failed source in a pipeline,
    // destroy(err)) ends the input; the readable fails after the records accepted before.
    const writable = core.ownWriter(writerStream);
    const readable: Readable = new Readable({
      objectMode: true,
      read: () => read(),
      destroy: (err: Error | null, callback: (err: Error | null) => void) => {
        core.release();
        callback(err);
      },
    });
    const { read, inRead } = readFromChannel(readable, channel);
    core.attach(nodeSide(readable, writable), nodeReader(readable, core, inRead));
    countWaiting(readable, this.channel);
    this.writable = writable as unknown as HopperWritable<T>;
    this.readable = readable as unknown as HopperReadable<T>;
  }

  /** The channel directory, `<dataDir>/<name>`. */
  get path(): string {
    return this.core.path;
  }

  /**
   * True once the readable has asked for records: something consumes it (a pipe, a `'data'` or
   * `'readable'` listener, async iteration, `read()`), so records are being delivered. While it
   * is false, records wait in the hopper for a reader, and {@link HopperStreams.close} waits with them.
   */
  get readerAttached(): boolean {
    return this.core.readerAttached;
  }

  /**
   * Hopper's `Sender::send`: accepts the record at once, or throws a `HopperError`:
   * `ERR_HOPPER_FULL` (its `.record` is the refused record) when memory is full and a disk cap is
   * reached and `onFull` is `'block'` or `'error'`; `ERR_HOPPER_IO` (its `.record` is the refused
   * record, its `.cause` the system error) when memory is full and disk writes are failing;
   * `ERR_HOPPER_INVALID_RECORD` when it does not match the schema; `ERR_HOPPER_RECORD_TOO_LARGE`
   * when it fits in neither tier. With a drop policy a record that finds no room is dropped and
   * counted.
   */
  send(record: T): void {
    this.core.send(record);
  }

  /**
   * Another objectMode Writable feeding the same channel (hopper's many senders). The readable
   * ends only after every sender and the hopper's own writable have ended. An error on a sender
   * ends that sender only: the others, `send()` and the readable go on.
   */
  sender(): HopperWritable<T> {
    return this.core.sender(writerStream) as unknown as HopperWritable<T>;
  }

  /** Counters of the channel now. */
  stats(): HopperStats {
    return this.core.stats();
  }

  /**
   * Ends the hopper's own writable and resolves once the readable side has delivered everything
   * and ended (senders must end too), and the channel's files are removed. With nothing left to
   * deliver it resolves at once, read or not; records still held wait for a reader (see
   * {@link HopperStreams.readerAttached}). Rejects if the hopper is destroyed with an error first.
   */
  close(): Promise<void> {
    return this.core.close();
  }

  /**
   * Tears down both sides at once and removes the channel's files. With `err`, the readable emits
   * it; the writable closes without an error of its own (later writes fail with `ERR_STREAM_DESTROYED`).
   */
  destroy(err?: Error): void {
    this.core.teardown(err);
  }
}

/** Events of a hopper's Duplex: a Node Duplex's own, and the hopper's. */
export interface HopperDuplexEvents<T> extends HopperEvents {
  close: [];
  data: [record: T];
  drain: [];
  end: [];
  error: [err: Error];
  finish: [];
  pause: [];
  pipe: [source: NodeReadable];
  readable: [];
  resume: [];
  unpipe: [source: NodeReadable];
}

/**
 * An objectMode Duplex over a hopper (a `Duplex` of `node:stream`), for `stream.pipeline`.
 * `write()`, `send()` and the `'data'` event are typed with `T`; `read()` and async iteration
 * keep Node's `any`, as a `PassThrough`'s do, since `pipeline()`'s types take as a middle stage
 * only a stream whose reads could be strings or Buffers. For typed reads, use
 * {@link createHopperStreams}' `readable`.
 */
export interface HopperDuplex<T = unknown> extends NodeDuplex {
  /** Not callable: see {@link HopperWritable.write}. */
  write(chunk: never, encoding?: BufferEncoding | NodeWriteCallback, callback?: NodeWriteCallback): boolean;
  write(chunk: T, callback?: WriteCallback): boolean;
  write(chunk: T, encoding: BufferEncoding, callback?: WriteCallback): boolean;
  /** Not callable: see {@link HopperWritable.write}. */
  end(chunk: never, encoding?: BufferEncoding | (() => void), callback?: () => void): this;
  end(callback?: () => void): this;
  end(chunk: T, callback?: () => void): this;
  end(chunk: T, encoding: BufferEncoding, callback?: () => void): this;
  /** The channel directory, `<dataDir>/<name>`. */
  readonly path: string;
  /** See {@link HopperStreams.send}. */
  send(record: T): void;
  /** See {@link HopperStreams.sender}: another Writable into this Duplex's channel. */
  sender(): HopperWritable<T>;
  /** Counters of the channel now. */
  stats(): HopperStats;
  /** See {@link HopperStreams.readerAttached}. */
  readonly readerAttached: boolean;
  /**
   * Ends the write side and resolves once every record has been delivered and both sides have
   * closed; with nothing left to deliver, at once, read or not. Rejects if the Duplex fails first.
   */
  close(): Promise<void>;
  on<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
  once<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
  off<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
  addListener<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
  removeListener<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
  prependListener<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
  prependOnceListener<K extends keyof HopperDuplexEvents<T>>(event: K, listener: HopperListener<HopperDuplexEvents<T>, K>): this;
}

class HopperDuplexStream extends Duplex {
  private readonly core: HopperCore;
  // The core's channel and this side's writer, kept here for the per-record _write and _read.
  private readonly channel: Channel;
  private readonly writer: ChannelWriter;
  private readonly readChannel: () => void;

  constructor(options?: HopperOptions) {
    super({ objectMode: true });
    const core = new HopperCore(options, this);
    const side = nodeSide(this, this);
    this.core = core;
    this.channel = core.channel;
    this.writer = core.duplexWriter(side);
    const { read, inRead } = readFromChannel(this, this.channel);
    this.readChannel = read;
    core.attach(side, nodeReader(this, core, inRead));
    countWaiting(this, this.channel);
  }

  get path(): string {
    return this.core.path;
  }

  send(record: unknown): void {
    this.core.send(record);
  }

  get readerAttached(): boolean {
    return this.core.readerAttached;
  }

  sender(): Writable {
    return this.core.sender(writerStream);
  }

  stats(): HopperStats {
    return this.core.stats();
  }

  close(): Promise<void> {
    return this.core.close();
  }

  override _write(record: unknown, _encoding: string, callback: Callback): void {
    this.writer.write(record, callback);
  }

  override _final(callback: Callback): void {
    this.writer.end();
    callback();
    this.core.endIfClosing();
  }

  override _read(): void {
    this.readChannel();
  }

  override _destroy(err: Error | null, callback: (err: Error | null) => void): void {
    this.core.release();
    callback(err);
  }
}

/**
 * Creates a hopper: `{ writable, readable, send, sender, stats, close, destroy }`, an EventEmitter.
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

/**
 * Creates a hopper as one objectMode Duplex: its writable side feeds the channel, its readable
 * side drains it. Same options and semantics as {@link createHopperStreams}; an error on either
 * side (or in the pipeline around it) destroys it and removes its files.
 *
 * @example
 * ```ts
 * await pipeline(source, createHopperStream({ maxMemoryBytes: 8 * 1024 ** 2 }), transform, sink);
 * ```
 */
export function createHopperStream<T = unknown>(options?: HopperOptions): HopperDuplex<T> {
  return new HopperDuplexStream(options) as unknown as HopperDuplex<T>;
}
