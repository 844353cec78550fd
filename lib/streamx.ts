/// <reference types="node" preserve="true" />
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type * as Streamx from 'streamx';
import { HopperBase, HopperCore, type HopperEvents, type StreamSide, withHopperMethods } from './adapter.js';
import type { Channel, ChannelReader, ChannelWriter, HopperStats } from './channel.js';
import { missingPeerError } from './errors.js';
import type { HopperOptions } from './options.js';

// The streamx adapter: the same channel as lib/streams.ts, under streamx's Writable, Readable
// and Duplex. streamx takes any value as a chunk, so there is no objectMode to set.

// streamx is an optional peer dependency, needed only here: it is required (it is CommonJS) rather
// than imported, so that a user without it gets an error that says what to install instead of
// ERR_MODULE_NOT_FOUND from inside this file.
function loadStreamx(): typeof Streamx {
  try {
    return createRequire(import.meta.url)('streamx') as typeof Streamx;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'MODULE_NOT_FOUND') throw missingPeerError('streamx', 'hopper-streams/streamx', err);
    throw err;
  }
}

const { Duplex, Readable, Writable, getStreamError } = loadStreamx();
type Readable = Streamx.Readable;
type Writable = Streamx.Writable;

type Callback = (err: Error | null) => void;
// The channel calls back with no argument on success; streamx reads any falsy value as success.
type ChannelCallback = (err?: Error | null) => void;

/** The streamx Writable side of a hopper: `write()` and `end()` take a `T`. */
export interface HopperWritable<T> extends Writable {
  write(data: T): boolean;
  end(data?: T): this;
}

/** The streamx Readable side of a hopper: async iteration yields `T`. */
export interface HopperReadable<T> extends Readable {
  [Symbol.asyncIterator](): AsyncIterator<T>;
}

/** Records a streamx writable takes in one tick before write() returns false. */
const WRITABLE_HIGH_WATER_MARK = 1024;

/** streamx marks a destroy without an error with this code; it is no failure. */
function isPlainDestroy(err: Error | null | undefined): boolean {
  return !err || (err as Error & { code?: string }).code === 'STREAM_DESTROYED' || err.name === 'AbortError';
}

/**
 * Once close() has been asked for and nothing is left to deliver, ends a readable that nobody
 * reads: the channel hands over its end, and a read() of the ended, empty readable (streamx's
 * buffer count says it is empty: a read() would otherwise take a record) makes it emit 'end'.
 */
function endIfIdle(channel: Channel, readable: Readable): void {
  const state = (readable as unknown as { _readableState: { buffered: number } })._readableState;
  if (!channel.finished || readable.destroying || state.buffered > 0) return;
  channel.deliver();
  if (!readable.destroying) readable.read();
}

/** streamx's own measure of a record (index.js defaultByteLength). */
const defaultByteLength = (data: unknown): number => (ArrayBuffer.isView(data) ? data.byteLength : 1024);

/**
 * The channel's reader for a streamx readable (a pair's readable, or the Duplex). A failure
 * waits until the records already pushed into the readable are taken: destroy() would discard
 * them, though the channel counted them as delivered. streamx gives no notice of a record leaving
 * its buffer except measuring it again (`byteLength`, called by ReadableState.shift() in
 * index.js): a measure outside this reader's own push is a record taken.
 */
class StreamxReader implements ChannelReader {
  // Set by attach(): the readable is built with this reader's byteLength, so after it.
  private readable!: Readable;
  private core!: HopperCore;
  private pushing = false;
  private failure: Error | undefined;
  private checking = false;

  constructor(private readonly measure: (data: unknown) => number) {}

  /** Delivers `core`'s records to `readable`. */
  attach(readable: Readable, core: HopperCore, writable: Writable): void {
    this.readable = readable;
    this.core = core;
    core.attach(streamxSide(readable, writable), this);
  }

  /** The readable's `byteLength` option. */
  readonly byteLength = (data: unknown): number => {
    if (!this.pushing && this.failure !== undefined && !this.checking) {
      this.checking = true;
      process.nextTick(() => {
        this.checking = false;
        this.failIfTaken();
      });
    }
    return this.measure(data);
  };

  push(record: unknown): boolean {
    this.pushing = true;
    const more = this.readable.push(record);
    this.pushing = false;
    return more;
  }

  end(): void {
    this.readable.push(null);
  }

  fail(err: Error): void {
    this.failure = err;
    this.failIfTaken();
  }

  private failIfTaken(): void {
    const state = (this.readable as unknown as { _readableState: { buffered: number } })._readableState;
    if (!this.readable.destroying && state.buffered === 0) this.core.teardown(this.failure);
  }
}

/** A streamx readable (with the writable that feeds it: the Duplex itself, or a pair's writable) as the core sees it. */
function streamxSide(readable: Readable, writable: Writable): StreamSide {
  return {
    isGone: () => readable.destroying,
    destroy: (err) => readable.destroy(err),
    endIfIdle: (channel) => endIfIdle(channel, readable),
    whenClosed: (_channel, done) => {
      if (readable.destroyed) {
        const err = getStreamError(readable);
        done(isPlainDestroy(err) ? undefined : err!);
        return false;
      }
      let failure: Error | undefined;
      readable.once('error', (err: Error) => {
        failure = err;
      });
      readable.once('close', () => done(failure));
      return true;
    },
    endWrites: () => {
      if (!writable.destroying) writable.end(undefined);
    },
    // streamx's queue (fast-fifo) counts its records; `buffered` counts byteLength units.
    buffered: () => (readable as unknown as { _readableState: { queue: { length: number } } })._readableState.queue.length,
    writesGone: () => writable.destroying,
  };
}

function writerStream(channel: Channel, own: boolean, onEnd: () => void): Writable {
  /** Destroyed by the channel closing: no producer failed. */
  let byChannel = false;
  const writer: ChannelWriter = channel.openWriter({
    onChannelClose: () => {
      byChannel = true;
      if (!stream.destroying) stream.destroy();
    },
  });
  const stream = new Writable({
    // streamx hands writes to _write on the next tick; counting records rather than streamx's
    // default 1 KiB per object lets a burst of that many writes return true within one tick.
    highWaterMark: WRITABLE_HIGH_WATER_MARK,
    byteLength: () => 1,
    write(record: unknown, callback: Callback) {
      writer.write(record, callback as ChannelCallback);
    },
    final(callback: Callback) {
      // A durable channel: 'finish' once everything written is durable (streamx has no per-write callback).
      const flushed = channel.isDurable ? channel.flush() : undefined;
      writer.end();
      if (flushed === undefined) callback(null);
      else
        flushed.then(
          () => callback(null),
          (err: Error) => callback(err),
        );
      onEnd();
    },
    predestroy(this: Writable) {
      const err = getStreamError(this);
      if (own && !byChannel && (err === null || err !== writer.lastError)) writer.fail(isPlainDestroy(err) ? undefined : err!);
      else writer.abort();
    },
  });
  return stream;
}

/** A hopper over streamx: a Writable and a Readable joined by a bounded-memory channel. */
export class HopperStreams<T = unknown> extends HopperBase<T> {
  readonly writable: HopperWritable<T>;
  readonly readable: HopperReadable<T>;

  constructor(options?: HopperOptions) {
    super(options);
    const core = this.core;
    const channel = core.channel;
    const writable = core.ownWriter(writerStream);
    const reader = new StreamxReader(defaultByteLength);
    const readable = new Readable({
      byteLength: reader.byteLength,
      read(callback: Callback) {
        channel.deliver();
        callback(null);
      },
      predestroy() {
        core.release();
      },
    });
    reader.attach(readable, core, writable);
    this.writable = writable as HopperWritable<T>;
    this.readable = readable as HopperReadable<T>;
  }

  /** Another streamx Writable feeding the same channel; an error on it ends that sender only. */
  sender(): HopperWritable<T> {
    return this.core.sender(writerStream) as HopperWritable<T>;
  }
}

/** Events of the streamx Duplex, with their payloads: a streamx Duplex's own, and the hopper's. */
export interface HopperDuplexEvents<T> extends Streamx.DuplexEvents, HopperEvents {
  data: [record: T];
}

/** `write()` and `end()` of the Duplex take a `T`; the hopper's methods are HopperBase's (see withHopperMethods). */
export interface HopperDuplex<T> {
  write(data: T): boolean;
  end(data?: T): this;
  /** The channel directory, `<dataDir>/<name>`. */
  readonly path: string;
  /** True once the readable side has asked for records; see the Node adapter's `readerAttached`. */
  readonly readerAttached: boolean;
  /** Accepts a record at once or throws; see the Node adapter's `send()`. */
  send(record: T): void;
  /** Counters of the channel now. */
  stats(): HopperStats;
  /** Durable channels with `ack: 'manual'`: see the Node adapter's `ack()`. */
  ack(count: number): void;
  /** Durable channels: see the Node adapter's `flush()`. */
  flush(): Promise<void>;
  /**
   * Ends the write side and resolves once every record has been delivered and the Duplex has
   * closed; with nothing left to deliver, at once, read or not. Rejects if it fails first.
   */
  close(): Promise<void>;
}

/** A hopper as one streamx Duplex, for `streamx.pipeline` or Node's `pipeline`. */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface only retypes write() and end(), which Duplex has
export class HopperDuplex<T = unknown> extends Duplex<HopperDuplexEvents<T>> {
  private readonly core: HopperCore;
  // The core's channel and this side's writer, kept here for the per-record _write and _read.
  private readonly channel: Channel;
  private readonly writer: ChannelWriter;

  constructor(options?: HopperOptions) {
    const reader = new StreamxReader(() => 1);
    super({ highWaterMark: WRITABLE_HIGH_WATER_MARK, byteLength: reader.byteLength });
    const emitter = this as unknown as EventEmitter;
    const core = new HopperCore(options, (event, ...args) => emitter.emit(event, ...args));
    this.core = core;
    this.channel = core.channel;
    this.writer = core.duplexWriter(streamxSide(this, this));
    reader.attach(this, core, this);
  }

  /** Another streamx Writable into this Duplex's channel. */
  sender(): HopperWritable<T> {
    return this.core.sender(writerStream) as HopperWritable<T>;
  }

  override _write(record: unknown, callback: Callback): void {
    this.writer.write(record, callback as ChannelCallback);
  }

  override _final(callback: Callback): void {
    const flushed = this.channel.isDurable ? this.channel.flush() : undefined;
    this.writer.end();
    if (flushed === undefined) callback(null);
    else
      flushed.then(
        () => callback(null),
        (err: Error) => callback(err),
      );
    this.core.ownEnded();
  }

  override _read(callback: Callback): void {
    this.channel.deliver();
    callback(null);
  }

  override [Symbol.asyncIterator](): AsyncIterator<T> {
    return super[Symbol.asyncIterator]() as AsyncIterator<T>;
  }

  override _predestroy(): void {
    this.core.release();
  }
}
withHopperMethods(HopperDuplex.prototype);

/** Creates a hopper over streamx: `{ writable, readable, send, sender, stats, close, destroy }`. */
export function createHopperStreams<T = unknown>(options?: HopperOptions): HopperStreams<T> {
  return new HopperStreams<T>(options);
}

/** Creates a hopper as one streamx Duplex. */
export function createHopperStream<T = unknown>(options?: HopperOptions): HopperDuplex<T> {
  return new HopperDuplex<T>(options);
}

export { HopperError } from './errors.js';
export type { HopperOptions } from './options.js';
export type { HopperStats } from './channel.js';
