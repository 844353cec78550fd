import type { Duplex as NodeDuplex, Readable as NodeReadable, Writable as NodeWritable } from 'node:stream';
import { Duplex, Readable, Writable } from 'node:stream';
import { HopperBase, HopperCore, type HopperEvents, type HopperInternals, type HopperListener, withHopperMethods } from './adapter.js';
import type { Channel, ChannelWriter, HopperStats } from './channel.js';
import { holdDurableCallbacks } from './durable-callbacks.js';
import { NodeReader, bufferedRecords, nodeSide } from './node-reader.js';
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
 * A readable of a hopper (a pair's, or the Duplex) counts in `readableLength` what waits in the
 * channel too (see {@link NodeReader.length}). Defined on the class's prototype, not on each
 * instance: @types/node declares `readableLength` a property, which TypeScript does not let a
 * subclass override with a getter.
 */
function countWaiting(prototype: object): void {
  Object.defineProperty(prototype, 'readableLength', {
    configurable: true,
    get(this: Readable & { reader?: NodeReader }): number {
      return this.reader === undefined ? bufferedRecords.call(this) : this.reader.length();
    },
  });
}

/** A pair's readable: Node's Readable, with the channel's reader behind its _read() and read(). */
class PairReadable extends Readable {
  reader: NodeReader | undefined;

  constructor(private readonly onDestroy: () => void) {
    super({ objectMode: true });
  }

  override _read(): void {
    this.reader!.read();
  }

  override read(size?: number): unknown {
    const record: unknown = super.read(size);
    this.reader!.afterRead();
    return record;
  }

  override _destroy(err: Error | null, callback: (err: Error | null) => void): void {
    this.onDestroy();
    callback(err);
  }
}
countWaiting(PairReadable.prototype);

/**
 * A Writable over one writer of the channel. A write the channel refused (invalid record, full
 * with `onFull: 'error'`) ends this writer like any failed Node write. The hopper's `own` writable
 * destroyed otherwise before end() cuts the input short. `onEnd` runs once the writer has ended.
 */
function writerStream(channel: Channel, own: boolean, onEnd: () => void): Writable {
  /** Destroyed by the channel closing: no producer failed. */
  let byChannel = false;
  const writer: ChannelWriter = channel.openWriter({
    onChannelClose: () => {
      byChannel = true;
      if (!stream.destroyed) stream.destroy();
    },
  });
  const durable = channel.isDurable;
  let takeDurable: () => Callback | undefined = () => undefined;
  const stream = new Writable({
    objectMode: true,
    write: durable
      ? (record: unknown, _encoding: string, callback: Callback) => writer.write(record, callback, takeDurable())
      : (record: unknown, _encoding: string, callback: Callback) => writer.write(record, callback),
    final(callback: Callback) {
      // 'finish' means "all durable" in a durable channel.
      const flushed = durable ? channel.flush() : undefined;
      writer.end();
      if (flushed === undefined) callback();
      else
        flushed.then(
          () => callback(),
          (err: Error) => callback(err),
        );
      onEnd();
    },
    destroy(err: Error | null, callback: Callback) {
      if (own && !byChannel && (err === null || err !== writer.lastError)) writer.fail(err ?? undefined);
      else writer.abort();
      callback(err);
    },
  });
  if (durable) takeDurable = holdDurableCallbacks(stream);
  return stream;
}

/**
 * A hopper: an objectMode Writable and Readable joined by a bounded-memory channel that pages
 * its overflow to Avro segment files. Records come out in the order they were accepted.
 * An EventEmitter of `'spill'`, `'caughtUp'`, `'full'`, `'segment'`, `'drop'`, `'corrupt'` and
 * `'fault'` (see {@link HopperEvents}).
 */
export class HopperStreams<T = unknown> extends HopperBase<T> {
  /** Feeds the channel. `write()` returns true and calls back at once until memory is full and a disk cap is reached. */
  readonly writable: HopperWritable<T>;
  /** Drains the channel: memory records as they are, disk records decoded, all in write order. */
  readonly readable: HopperReadable<T>;

  constructor(options?: HopperOptions, internals?: HopperInternals) {
    super(options, internals);
    const core = this.core;
    // The hopper's own writable destroyed before end() (a failed source in a pipeline,
    // destroy(err)) ends the input; the readable fails after the records accepted before.
    const writable = core.ownWriter(writerStream);
    const readable = new PairReadable(() => core.release());
    const reader = new NodeReader(readable, core.channel, (err) => core.teardown(err));
    readable.reader = reader;
    core.attach(nodeSide(readable, writable), reader);
    this.writable = writable as unknown as HopperWritable<T>;
    this.readable = readable as unknown as HopperReadable<T>;
  }

  /**
   * Another objectMode Writable feeding the same channel (hopper's many senders). The readable
   * ends only after every sender and the hopper's own writable have ended. An error on a sender
   * ends that sender only: the others, `send()` and the readable go on.
   */
  sender(): HopperWritable<T> {
    return this.core.sender(writerStream) as unknown as HopperWritable<T>;
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
  /** See {@link HopperStreams.ack}. */
  ack(count: number): void;
  /** See {@link HopperStreams.flush}. */
  flush(): Promise<void>;
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
  private readonly reader: NodeReader;
  private readonly takeDurable: (() => Callback | undefined) | undefined;

  constructor(options?: HopperOptions) {
    super({ objectMode: true });
    const core = new HopperCore(options, (event, ...args) => this.emit(event, ...args));
    const side = nodeSide(this, this);
    this.core = core;
    this.channel = core.channel;
    this.writer = core.duplexWriter(side);
    this.reader = new NodeReader(this, this.channel, (err) => core.teardown(err));
    core.attach(side, this.reader);
    this.takeDurable = this.channel.isDurable ? holdDurableCallbacks(this as unknown as Writable) : undefined;
  }

  // path, readerAttached, send(), stats() and close() are HopperBase's (withHopperMethods below).
  sender(): Writable {
    return this.core.sender(writerStream);
  }

  override _write(record: unknown, _encoding: string, callback: Callback): void {
    this.writer.write(record, callback, this.takeDurable?.());
  }

  override _final(callback: Callback): void {
    const flushed = this.takeDurable === undefined ? undefined : this.channel.flush();
    this.writer.end();
    if (flushed === undefined) callback();
    else
      flushed.then(
        () => callback(),
        (err: Error) => callback(err),
      );
    this.core.ownEnded();
  }

  override _read(): void {
    this.reader.read();
  }

  override read(size?: number): unknown {
    const record: unknown = super.read(size);
    this.reader.afterRead();
    return record;
  }

  override _destroy(err: Error | null, callback: (err: Error | null) => void): void {
    this.core.release();
    callback(err);
  }
}
countWaiting(HopperDuplexStream.prototype);
withHopperMethods(HopperDuplexStream.prototype);

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
