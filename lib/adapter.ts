import type { EventEmitter } from 'node:events';
import type { Channel, ChannelEvents, ChannelReader, ChannelWriter } from './channel.js';
import { openChannel } from './engine.js';
import { onAbort } from './errors.js';
import { resolveOptions, type HopperOptions } from './options.js';
import type { SegmentFileSystem } from './segments/index.js';

// What the readable-stream and streamx adapters share: opening a channel whose events go to an
// emitter, and wiring a Duplex of either kind to it. Nothing here knows a stream class.

/** Events of a hopper object, with their payloads. The hopper object emits no `'error'`: failures come on its readable. */
export type HopperEvents = ChannelEvents;

/** A listener of a hopper event. */
export type HopperListener<E, K extends keyof E> = E[K] extends unknown[] ? (...args: E[K]) => void : never;

/** Internal seams, for tests: not part of the public API. */
export interface HopperInternals {
  /** The file operations of the segment log (fault injection). */
  fileSystem?: SegmentFileSystem;
}

/** Opens a channel whose events are emitted on `emitter`. */
export function channelOn(options: HopperOptions | undefined, emitter: EventEmitter, internals: HopperInternals = {}): Channel {
  return openChannel(
    resolveOptions(options),
    (event, ...args) => {
      emitter.emit(event, ...args);
    },
    internals.fileSystem,
  );
}

/** The parts of a Duplex (of either stream library) that the channel drives. */
export interface DuplexSide {
  push(record: unknown): boolean;
  destroy(err?: Error): void;
}

/**
 * Wires a Duplex to a new channel: its write side is one writer, its read side the reader, an
 * aborted `signal` destroys it. `isGone` says whether the Duplex is already being destroyed;
 * `reader` overrides the reader's `start`, `end` (default: push null) and `fail` (default: destroy).
 */
export function wireDuplex(
  duplex: DuplexSide & EventEmitter,
  options: HopperOptions | undefined,
  isGone: () => boolean,
  reader: Partial<Pick<ChannelReader, 'start' | 'end' | 'fail'>> = {},
): { channel: Channel; writer: ChannelWriter; stopListening: () => void } {
  const channel = channelOn(options, duplex);
  const writer = channel.openWriter();
  writer.onChannelClose = () => {
    if (!isGone()) duplex.destroy();
  };
  // The Duplex is the failing reader too: it is destroyed with the failure once its buffered records are read.
  writer.onChannelFail = () => {};
  channel.attachReader({
    push: (record) => duplex.push(record),
    end: reader.end ?? (() => duplex.push(null)),
    fail: reader.fail ?? ((err) => duplex.destroy(err)),
    start: reader.start,
  });
  return { channel, writer, stopListening: onAbort(options?.signal, (err) => duplex.destroy(err)) };
}
