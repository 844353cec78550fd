// How the segment log fails, in one place. Every failure inside lib/segments/ takes one of the
// forms below; nothing else is thrown or returned to say that something went wrong.
//
// Thrown, inside the log (its parts throw, the facade in index.ts catches):
// 1. `Corruption`: the bytes of a segment file are not what the Avro format or the ledger says.
//    Thrown by the block reader and the segment reader; caught only by `SegmentLog.next()`, which
//    applies `onCorrupt` (the error `ERR_HOPPER_CORRUPT_SEGMENT`, or a skip whose cost `loss`
//    says), and by `verify`/`cat`, which report it. Recoverable: the log can step over it.
//    (ocf.ts, pure functions over bytes, returns a `FrameProblem` instead of throwing; the block
//    reader turns it into a Corruption at once, so it never travels further.)
// 2. `HopperError` with `ERR_HOPPER_IO` (errors.ts `ioError()`): a system call failed, and only
//    that (`isSystemError()` in io.ts: an Error with an errno `code` and a `syscall`). Retried by
//    the one `RetryPolicy` (io.ts) and announced with a `FaultEvent`; reads are given up on after
//    a long run of failures, and then the channel fails with it. The raw system error travels only
//    from io.ts and the block reader to their callers (writer, reader, the facade), which wrap it.
//    (One exception: the write path still takes whatever the writer throws for a write fault, in
//    the background task and in the last resort alike; see the note in SegmentLog.writeBehindSync.)
// 3. Anything else is a bug, `DecoderBug` included: never caught as 1 or 2 (so never counted as
//    corruption, never retried), it reaches the channel, which fails with it.
//
// Returned to the channel (the DiskTier interface in channel.ts), as typed results:
// - `AppendResult` from `append()`: a disk cap or a failing disk refused the record;
// - `LostRecords` from `next()`: what a skip over corruption cost;
// - `DroppedSegment` from `dropOldest()`: what making room cost (undefined: nothing could go);
// - `FaultEvent`s from `close()`: the files it could not remove, for the engine to announce once
//   the directory is released;
// - and, inside the log, `unlinkOurs()` (io.ts) answers 'not-ours' for a file that is no longer
//   the one created: it is left, and forgotten like a removed one.
// `AppendResult`, `LostRecords` and the shape of `next()` are shared with channel.ts and stay as
// they are here; issue 22 item 1 changes `next()` there.
//
// Failure forms outside lib/segments/ (not described here): `SizeProblem` (size.ts) and the
// encoder's refusals (codec.ts), `EncodeFailure` (kafka.ts), `ConsumerThrew` and the channel's
// sentinels (channel.ts), `'unreadable'` (directory.ts).

/** What an append did: stored the record, or found a disk cap in the way ('too-large': even an empty log cannot take it; 'fault': disk writes are failing). */
export type AppendResult = 'ok' | 'full' | 'too-large' | 'fault';

/** What `SegmentLog.next()` gives when no record can be read now: ask again after `onRecovered`. */
export const WAIT: unique symbol = Symbol('wait');

/** With `onCorrupt: 'skip'`, records lost to corruption and skipped over (see `SegmentLog.next()`): ask again at once. */
export class LostRecords {
  constructor(
    readonly count: number,
    readonly file: string,
    readonly offset: number,
    readonly problem: string,
  ) {}
}

/** A segment deleted to make room (`'drop-oldest'`): `offset` records still in the log come before its `count` records. */
export interface DroppedSegment {
  offset: number;
  count: number;
  file: string;
}

/**
 * A failed file operation: the log retries it. A removal to make room (`'drop-oldest'`) is tried
 * again by the next write that needs room; a removal at close is tried a few times, then the file
 * is left (the next open removes it as stale).
 */
export interface FaultEvent {
  operation: 'write' | 'read' | 'remove';
  file: string;
  error: Error;
}

/**
 * What a piece of corruption costs when skipped: nothing (bytes appended after the last block),
 * the block about to be read, the rest of the block being decoded, or the rest of the segment
 * (a damaged header, a file cut short).
 */
export type Loss = 'nothing' | 'block' | 'rest-of-block' | 'rest-of-segment';

/** Something in a segment file is not what the format or the ledger says: where, what, and what it costs. */
export class Corruption extends Error {
  constructor(
    readonly offset: number,
    readonly problem: string,
    readonly loss: Loss,
  ) {
    super(problem);
  }
}

/**
 * A record decoder threw something that bytes which are not a record of its schema do not make it
 * throw (see `isBadBytesError` in block-reader.ts): a bug in the decoder (ours, or a logical type's),
 * not damage to the file. It is never reported as corruption, never skipped.
 */
export class DecoderBug extends Error {
  constructor(cause: unknown) {
    const reason = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
    super(`hopper-streams: decoding a record threw ${reason}; this is a bug in the decoder, not damage to the segment`, { cause });
    this.name = 'DecoderBug';
  }
}
