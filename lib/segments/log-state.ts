import type { OnCorrupt, SegmentCodec } from '../options.js';
import type { BlockBuilder } from './block-builder.js';
import type { RetryPolicy, SegmentDirectory, SegmentFileSystem } from './io.js';
import type { Ledger } from './ledger.js';
import type { SegmentReader } from './reader.js';
import type { FaultEvent } from './results.js';
import type { SegmentWriter } from './writer.js';

// What the segment log is told (its options, the hooks it reports through) and what its parts share:
// the facade (log.ts) builds one LogState and hands it to write-behind.ts, removals.ts and
// read-path.ts, which read and change it and call each other only through the peers it wires.

export interface SegmentLogOptions {
  maxSegmentBytes: number;
  maxSegments: number;
  maxDiskBytes: number;
  codec: SegmentCodec;
  onCorrupt: OnCorrupt;
  /** Channel name, written into each segment's metadata. */
  channel: string;
  /**
   * Bytes that may wait for the disk (write-behind) before the log writes synchronously, as the
   * last resort. 0: every block and every removal is a synchronous call, as before 0.6.0.
   */
  maxPendingDiskBytes: number;
}

export interface SegmentEvent {
  action: 'sealed' | 'removed';
  file: string;
  bytes: number;
  records: number;
}

export interface SegmentLogHooks {
  onSegment(event: SegmentEvent): void;
  /**
   * A file operation failed (see FaultEvent): the log retries it, or leaves the file and says so.
   * Never called from close(), which hands its leftovers back instead.
   */
  onFault(event: FaultEvent): void;
  /**
   * A retried operation went through, a read is worth retrying, or bytes a waiting reader needs
   * reached the disk: blocked writers and a waiting reader can go on. Called on a tick of its own,
   * never from inside a call into the log.
   */
  onRecovered(): void;
  /**
   * More than `maxPendingDiskBytes` waited for the disk, so the log wrote synchronously (the
   * last resort). Called once per episode: the next call comes after the waiting bytes fell to
   * half the bound again.
   */
  onDiskBehind?(event: DiskBehindEvent): void;
}

/** Payload of the `'diskBehind'` event. */
export interface DiskBehindEvent {
  /** Bytes that were waiting for the disk when the log wrote synchronously. */
  pendingDiskBytes: number;
  maxPendingDiskBytes: number;
}

/** The state the parts of the log share. */
export interface LogState {
  readonly fs: SegmentFileSystem;
  readonly directory: SegmentDirectory;
  readonly options: SegmentLogOptions;
  readonly hooks: SegmentLogHooks;
  readonly ledger: Ledger;
  readonly block: BlockBuilder;
  readonly writer: SegmentWriter;
  readonly reader: SegmentReader;
  readonly retry: RetryPolicy;
  /** maxPendingDiskBytes is 0: every block and removal is written synchronously. */
  readonly writeThrough: boolean;
  /** Records appended and not yet read (or dropped, or lost), pending block included. */
  records: number;
  closed: boolean;
  /**
   * Tells the channel (onRecovered) on a tick of its own: news is found inside an append, a read
   * or a drop, while the channel is in the middle of placing or delivering.
   */
  news(): void;
}
