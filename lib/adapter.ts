import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { Channel, ChannelEmit, ChannelEvents, ChannelReader, ChannelWriter, HopperStats } from './channel.js';
import { isExiting, openChannel } from './engine.js';
import { onAbort } from './errors.js';
import { resolveOptions, type HopperOptions } from './options.js';
import type { SegmentFileSystem } from './segments/index.js';

// What the node:stream and streamx adapters share: a HopperCore owns the channel of one hopper
// (or one Duplex) and does everything that does not depend on a stream class: path, send(),
// senders, stats(), close() and teardown, the reader and abort wiring. Each adapter gives it a
// StreamSide for what its stream library does differently. Nothing here knows a stream class,
// and nothing here is on the per-record path: writes go from the writable to its ChannelWriter,
// records from the channel to the reader the adapter attached.

/**
 * Events of a hopper object, with their payloads. The hopper object emits no `'error'`: failures
 * come on its readable. An interface (not an alias of the channel's) so that type errors name it.
 */
export interface HopperEvents extends ChannelEvents {}

/** A listener of a hopper event. */
export type HopperListener<E, K extends keyof E> = E[K] extends unknown[] ? (...args: E[K]) => void : never;

/** Internal seams, for tests: not part of the public API. */
export interface HopperInternals {
  /** The file operations of the segment log (fault injection). */
  fileSystem?: SegmentFileSystem | undefined;
}

/**
 * Makes a Writable over a new writer of `channel`. A write the channel refused ends the writer.
 * With `own` (the hopper's own writable), being destroyed otherwise (with an error from outside,
 * or without one) before `end()` cuts the input short ({@link ChannelWriter.fail}); a sender just
 * ends. `onEnd` runs once it has ended.
 */
export type WriterStreamFactory<W> = (channel: Channel, own: boolean, onEnd: () => void) => W;

/** What the core asks of an adapter's readable side: the readable of a pair, or the Duplex. */
export interface StreamSide {
  /** True once the stream is being destroyed. */
  isGone(): boolean;
  /** Destroys the stream, with `err` if given; its destroy hook calls {@link HopperCore.release}. */
  destroy(err?: Error): void;
  /** After close() was asked and nothing is left to deliver: ends the stream, though nobody reads it. */
  endIfIdle(channel: Channel): void;
  /**
   * Calls `done` once the stream has closed, with its failure if it failed. If it had closed
   * already, calls `done` at once and returns false.
   */
  whenClosed(channel: Channel, done: (err?: Error) => void): boolean;
  /** Ends the hopper's own write side, unless it is ended or destroyed already. */
  endWrites(): void;
  /** Records delivered into the stream's own buffer and not yet read by its consumer. */
  buffered(): number;
  /** True once the hopper's own write side is destroyed (it then hands nothing more to the channel). */
  writesGone(): boolean;
}

/** Hoppers whose close() is pending: warned about if the process is about to exit with records held. */
const pendingCloses = new Set<HopperCore>();
let beforeExitHookInstalled = false;

/**
 * The event loop is empty: a close() still pending with records held would wait forever (an
 * unsettled top-level await then exits with code 13, printing nothing). 'beforeExit' runs then,
 * and on an exit with nothing left to do; 'exit' runs too late for a warning, which is written
 * on a later tick.
 */
function warnPendingCloses(): void {
  for (const core of pendingCloses) core.warnIfHeld();
}

/** The channel of one hopper, and what both stream adapters do with it. */
export class HopperCore {
  readonly channel: Channel;
  private readonly signal: AbortSignal | undefined;
  private side: StreamSide | undefined;
  /** Stops listening to the abort signal. */
  private stopListening: () => void = () => {};
  /** close() was called: once nothing is left to deliver, the readable ends even with no reader. */
  private closing = false;
  /** The warning about a pending close() at exit was given. */
  private warned = false;
  /** close() of a durable channel destroyed the readable with records left (no 'end'). */
  private stoppedDelivery = false;
  /** The hopper's own write side has ended (its last record is in the channel). */
  private ownInputEnded = false;

  /** An event listener threw: the hopper is destroyed with the first such exception, on the next tick. */
  private listenerFailed = false;

  /** Opens a channel whose events go to `emit`. */
  constructor(options: HopperOptions | undefined, emit: ChannelEmit, internals: HopperInternals = {}) {
    this.channel = openChannel(resolveOptions(options), (event, ...args) => this.emitGuarded(emit, event, args), internals.fileSystem);
    this.signal = options?.signal;
  }

  /**
   * Emits a hopper event. A listener that throws must not cut the engine short where it emitted
   * (inside a write, between a record's placement and its callback, or on a tick or an I/O
   * callback, where nothing would catch it and the process would crash): the hopper is destroyed
   * with its exception on the next tick, and the readable emits it as its `'error'`. While the
   * channel is being released (`destroy()`, or the process exits) nothing deferred would run: the
   * exception goes to whoever released it, as before.
   */
  private emitGuarded<K extends keyof ChannelEvents>(emit: ChannelEmit, event: K, args: ChannelEvents[K]): void {
    try {
      emit(event, ...args);
    } catch (error) {
      // this.channel is unset while the constructor opens the channel (which may emit).
      if (this.channel === undefined || this.channel.closed || isExiting()) throw error;
      if (this.listenerFailed) return;
      this.listenerFailed = true;
      process.nextTick(() => {
        if (this.side !== undefined) this.teardown(error as Error);
      });
    }
  }

  /** Delivers the channel's records to `reader`, and tears `side` down when the signal aborts. */
  attach(side: StreamSide, reader: ChannelReader): void {
    this.side = side;
    this.channel.attachReader(reader);
    this.stopListening = onAbort(this.signal, (err) => this.teardown(err));
  }

  /**
   * A writer for a Duplex's own write side: when the channel closes, the Duplex is destroyed.
   * When reading fails, the Duplex is the failing reader too: it is destroyed with the failure
   * once its buffered records are read.
   */
  duplexWriter(side: StreamSide): ChannelWriter {
    return this.channel.openWriter({
      onChannelClose: () => {
        if (!side.isGone()) side.destroy();
      },
      onChannelFail: () => {},
    });
  }

  /** The channel directory, `<dataDir>/<name>`. */
  get path(): string {
    return this.channel.path;
  }

  get readerAttached(): boolean {
    return this.channel.readerAttached;
  }

  send(record: unknown): void {
    this.channel.send(record);
  }

  /** Another Writable into the channel; an error on it ends that sender only. */
  sender<W>(writerStream: WriterStreamFactory<W>): W {
    return writerStream(this.channel, false, () => this.endIfClosing());
  }

  /**
   * The hopper's own Writable: destroyed before end() by anything but the channel, it ends the
   * input, and the readable fails with `ERR_HOPPER_PRODUCER_FAILED` after every record accepted.
   */
  ownWriter<W>(writerStream: WriterStreamFactory<W>): W {
    return writerStream(this.channel, true, () => this.ownEnded());
  }

  stats(): HopperStats {
    return this.channel.stats();
  }

  ack(count: number): void {
    this.channel.ack(count);
  }

  flush(): Promise<void> {
    return this.channel.flush();
  }

  /**
   * Ends the hopper's own write side and resolves once the readable side has delivered
   * everything and closed; rejects if it fails first. A durable channel does not wait for
   * delivery (see {@link HopperBase.close}).
   */
  close(): Promise<void> {
    return new Promise((resolve, reject) => {
      const side = this.side!;
      const open = side.whenClosed(this.channel, (err) => {
        pendingCloses.delete(this);
        // The readable closed without its end because close() stopped delivery: not a failure,
        // unless the producer had failed (its records are on disk, but the input was cut short).
        const failure = this.stoppedDelivery ? this.channel.producerFailure : err;
        // Files kept after delivery ended for acknowledgements go now, the ledger written.
        this.channel.releaseKept();
        if (failure) reject(failure);
        // Once no write or removal runs in the background any more: nothing touches the disk after.
        else this.channel.idle().then(resolve, reject);
      });
      if (!open) {
        this.channel.releaseKept();
        return;
      }
      pendingCloses.add(this);
      if (!beforeExitHookInstalled) {
        beforeExitHookInstalled = true;
        process.on('beforeExit', warnPendingCloses);
      }
      this.closing = true;
      side.endWrites();
      this.endIfClosing();
    });
  }

  /** The hopper's own write side has ended: every record written to it is in the channel. */
  ownEnded(): void {
    this.ownInputEnded = true;
    this.endIfClosing();
  }

  /**
   * close() of a durable channel, once the own write side has handed the channel everything
   * written to it: the undelivered records are safe on disk for the next open, so close() does not
   * wait for a reader (a SIGTERM handler must not hang while the consumer is down). The readable
   * is destroyed without an error, so it closes without an 'end' (the stream is not complete);
   * closing the channel writes what is waiting, commits, writes the ledger file and releases the
   * lock. With everything delivered, the readable ends as in any hopper.
   */
  private stopDelivery(): void {
    const side = this.side!;
    if (this.stoppedDelivery || side.isGone() || !(this.ownInputEnded || side.writesGone())) return;
    if (this.channel.finished && side.buffered() === 0) return;
    this.stoppedDelivery = true;
    side.destroy();
  }

  /** At exit with close() pending: one warning if records are still held for a reader. */
  warnIfHeld(): void {
    // Records pushed into a paused readable's buffer are as unread as those still in the channel.
    const held = this.channel.waiting + (this.side?.buffered() ?? 0);
    // A durable channel loses nothing at exit: its records wait on disk for the next open.
    if (this.warned || held === 0 || this.channel.isDurable) return;
    this.warned = true;
    const where = this.channel.path;
    process.emitWarning(
      `hopper "${path.basename(where)}" (${where}): close() is still pending as the process is about to exit, with ${held} ${held === 1 ? 'record' : 'records'} held and nothing reading hopper.readable; they are lost at exit. Read hopper.readable (for await, pipe) while awaiting close(), or destroy() the hopper to discard them.`,
      { type: 'HopperWarning', code: 'HOPPER_CLOSE_PENDING' },
    );
  }

  /** A writer ended: if close() was asked and nothing is left, the readable side ends. */
  endIfClosing(): void {
    if (!this.closing) return;
    this.side!.endIfIdle(this.channel);
    if (this.channel.isDurable) this.stopDelivery();
  }

  /** Destroys the readable side (with `err`, which it emits) and closes the channel. */
  teardown(err?: Error): void {
    if (!this.side!.isGone()) this.side!.destroy(err);
    this.channel.releaseKept();
  }

  /**
   * The readable side is being destroyed: closing the channel destroys the writable and every
   * sender without an error. The producer's writes then fail with ERR_STREAM_DESTROYED, but the
   * error itself is reported once, by the readable: an 'error' on a writable nobody listens to
   * would crash the process.
   */
  release(): void {
    this.stopListening();
    this.channel.close();
  }
}

/**
 * The listener methods of the hopper object take only the hopper's events, with their payloads,
 * under every @types/node from 20 on. `EventEmitter<HopperEvents>` alone does that under
 * @types/node 20 to 24, but from 26 on its methods take any other event name too (with an untyped
 * listener), so these overloads narrow them. Each keeps a first overload that takes nothing (a
 * `never`) so that it still extends @types/node 26's method, which a narrower one alone does not:
 * "Types of parameters 'listener' and 'listener' are incompatible" (TS2415). It comes first because
 * TypeScript reports a failed call against the last overload: the typed one.
 */
// biome-ignore lint/correctness/noUnusedVariables: T must match the class this interface merges with
export interface HopperBase<T> {
  on(event: never, listener: never): this;
  on<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  once(event: never, listener: never): this;
  once<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  off(event: never, listener: never): this;
  off<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  addListener(event: never, listener: never): this;
  addListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  removeListener(event: never, listener: never): this;
  removeListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  prependListener(event: never, listener: never): this;
  prependListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
  prependOnceListener(event: never, listener: never): this;
  prependOnceListener<K extends keyof HopperEvents>(event: K, listener: HopperListener<HopperEvents, K>): this;
}

/**
 * The hopper object of both adapters' `createHopperStreams()`: an `EventEmitter<HopperEvents>`
 * (the hopper's events, typed) with the methods both share, written once here. Each adapter adds
 * its `writable`, `readable` and `sender()`.
 */
// biome-ignore lint/suspicious/noUnsafeDeclarationMerging: the interface only narrows the listener methods EventEmitter has
export class HopperBase<T> extends EventEmitter<HopperEvents> {
  /** The channel of this hopper, and what both adapters do with it. */
  protected readonly core: HopperCore;

  constructor(options: HopperOptions | undefined, internals?: HopperInternals) {
    super();
    this.core = new HopperCore(options, (event, ...args) => this.emit<keyof HopperEvents>(event, ...args), internals);
  }

  /** The channel directory, `<dataDir>/<name>`. */
  get path(): string {
    return this.core.path;
  }

  /**
   * True once the readable has asked for records: something consumes it (a pipe, a `'data'` or
   * `'readable'` listener, async iteration, `read()`), so records are being delivered. While it
   * is false, records wait in the hopper for a reader, and `close()` waits with them.
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

  /** Counters of the channel now. */
  stats(): HopperStats {
    return this.core.stats();
  }

  /**
   * Durable channels with `ack: 'manual'`: the oldest `count` delivered, unacknowledged records are
   * done, and may leave the disk. Throws `ERR_HOPPER_ACK_BEYOND_DELIVERED` (nothing acknowledged)
   * when `count` is more than `stats().unacknowledged`, `ERR_HOPPER_ACK_MODE` with `ack:
   * 'delivered'`, and `ERR_HOPPER_NOT_DURABLE` on a channel that is not durable. Taken after the
   * readable has ended too: the files stay until every delivered record is acknowledged, or until
   * `close()` or `destroy()`; after those it does nothing (the records come again at the next
   * open). The acknowledgement is on disk at most `fsyncIntervalMs` and one ledger write later;
   * `await flush()` to be sure.
   *
   * @example
   * ```ts
   * sink.on('ack', (event) => hopper.ack(event.records.length));
   * ```
   */
  ack(count: number): void {
    this.core.ack(count);
  }

  /**
   * Durable channels: resolves once every record accepted before the call is durable under the
   * `fsync` policy and the acknowledged position is on disk. Rejects with `ERR_HOPPER_NOT_DURABLE`
   * on a channel that is not durable.
   */
  flush(): Promise<void> {
    return this.core.flush();
  }

  /**
   * Ends the hopper's own writable and resolves once the readable side has delivered everything
   * and ended (senders must end too), and the channel's files are removed. With nothing left to
   * deliver it resolves at once, read or not; records still held wait for a reader (see
   * `readerAttached`). Rejects if the hopper is destroyed with an error first, or with
   * `ERR_HOPPER_PRODUCER_FAILED` if its writable was destroyed before `end()`. A durable channel
   * does not wait for delivery: it commits what was accepted, writes the ledger file, releases the
   * lock and resolves; records not delivered stay on disk for the next open, and the readable then
   * closes without `'end'`.
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

/**
 * Gives a Duplex class (which cannot extend HopperBase) the hopper's methods: `path`,
 * `readerAttached`, `send()`, `stats()`, `close()`, `ack()` and `flush()`, HopperBase's own, defined on its
 * prototype once. Its instances keep their HopperCore in `core`, as HopperBase's do.
 */
export function withHopperMethods(prototype: object): void {
  for (const name of ['path', 'readerAttached', 'send', 'stats', 'close', 'ack', 'flush']) {
    Object.defineProperty(prototype, name, Object.getOwnPropertyDescriptor(HopperBase.prototype, name)!);
  }
}
