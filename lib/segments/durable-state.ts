import type { RecordCodec } from '../codec.js';
import { ioError } from '../errors.js';
import type { AckMode, FsyncPolicy, OnCorrupt, SegmentCodec } from '../options.js';
import type { AckTracker } from './acks.js';
import type { BlockBuilder } from './block-builder.js';
import type { Committer } from './commit.js';
import type { DurableCache } from './durable-cache.js';
import type { FdTracker } from './durable-fds.js';
import type { DurableFileSystem } from './durable-io.js';
import type { SegmentLogHooks } from './index.js';
import { type RetryPolicy, type SegmentDirectory, isSystemError } from './io.js';
import type { TornReport } from './recovery.js';

// What the durable log is told (its options, the hooks it reports through) and what its parts
// share: the facade (durable-log.ts) builds one DurableState and hands it to durable-writes.ts,
// durable-ledger.ts, durable-reads.ts and durable-close.ts, which read and change it and call each
// other only through the peers it wires.

export interface DurableLogOptions {
  channel: string;
  codec: SegmentCodec;
  onCorrupt: OnCorrupt;
  maxSegmentBytes: number;
  maxSegments: number;
  maxDiskBytes: number;
  /** The read cache's budget. */
  maxMemoryBytes: number;
  /** Bytes that may wait for the disk before the last resort writes them synchronously. */
  maxPendingDiskBytes: number;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  ack: AckMode;
}

/** The durable counters of `HopperStats` (channel-parts.ts): all 0 in a channel that is not durable. */
export interface DurableStats {
  /** Records delivered and not acknowledged. */
  unacknowledged: number;
  /** Records acknowledged since the channel opened. */
  acknowledged: number;
  /**
   * Records delivered again after a restart, counted against the delivery mark
   * of the last ledger file written before it. A lower bound: deliveries after that write are not on disk.
   */
  redelivered: number;
  /** Records found at open, delivered first. */
  recovered: number;
  /** Records cut off at open with a torn tail (a block whose count was unreadable adds 0; see `tornBlocks`). */
  torn: number;
  /** Torn blocks cut off at open. */
  tornBlocks: number;
  /** Records accepted whose write callback has not fired (not durable under the fsync policy yet). */
  undurable: number;
  /** Group commits (fsyncs) completed since the channel opened. */
  fsyncs: number;
  /** When the last group commit completed (epoch ms), 0 before the first. */
  lastFsyncAt: number;
}

/** Payload of the `'recovered'` event. */
export interface RecoveredEvent {
  /** Records found at open, to be delivered first. */
  records: number;
  /** Bytes of the segment files kept. */
  bytes: number;
  segments: number;
  /** RN of the first record delivered. */
  from: number;
  /** Records that no file holds any more between the acknowledged position and the last record (outside deletion, or a power cut with fsync 'never'). */
  missing: number;
  /** Files removed at open (acknowledged, stale or torn). */
  removed: number;
  /** How the ledger file was found. */
  ledger: 'ok' | 'missing' | 'damaged';
  /** Damage found (not torn tails): the reader reports it when it gets there. */
  damage: Array<{ file: string; offset: number; reason: string }>;
}

export interface DurableLogHooks extends SegmentLogHooks {
  onTorn(event: TornReport): void;
  onRecoveredBacklog(event: RecoveredEvent): void;
  /** A sync failed: the channel fails (never retried). */
  onFailed(err: Error): void;
}

export interface DurableSegment {
  seq: number;
  file: string;
  dev: number;
  ino: number;
  first: number;
  records: number;
  /** Bytes of the file, pending blocks included. */
  size: number;
  /** Bytes on disk (written). */
  writtenSize: number;
  /** Bytes covered by a completed fsync. */
  syncedSize: number;
  headerLength: number;
  blockEnds: number[];
  blockCounts: number[];
  sync: Buffer;
  codec: string;
  /**
   * The file exists under `file` (linked into place, `dev` and `ino` taken from its descriptor).
   * Until then the segment is a plan: blocks are assigned to it and wait in memory, and the
   * background task creates the file before it writes the first of them.
   */
  created: boolean;
  /** The header to create the file with (a planned segment; let go of once created). */
  header: Buffer | undefined;
  /** Open for writing (this run's segments from their creation until their last commit). */
  fd: number | undefined;
  sealed: boolean;
  /** Linked into place since the last directory fsync. */
  linkedUnsynced: boolean;
  removing: boolean;
  /** Damage recovery found after the blocks it kept: reported once the reader gets there. */
  damage?: { offset: number; problem: string } | undefined;
}

export interface PendingBlock {
  segment: DurableSegment;
  position: number;
  length: number;
  parts: Buffer[];
  /** RN after the block's last record. */
  end: number;
  /** On disk (written out of turn by the last resort, or by the background task ahead of its settling). */
  done: boolean;
  /** Lets the block builder fill the buffer `parts` are in again: called once the block leaves the queue written. */
  letGo: () => void;
}

/** What the durable log's run found at open and counts since (the stats). */
export interface DurableCounters {
  /** The acknowledged position at open. */
  readonly ackedAtOpen: number;
  /** RNs below this were delivered by an earlier run: delivering one again is a redelivery. */
  readonly deliveredBefore: number;
  readonly recoveredRecords: number;
  readonly tornRecords: number;
  readonly tornBlocks: number;
  redelivered: number;
}

/** The state the parts of the durable log share. */
export interface DurableState {
  readonly fs: DurableFileSystem;
  readonly directory: SegmentDirectory;
  readonly options: DurableLogOptions;
  readonly hooks: DurableLogHooks;
  readonly codec: RecordCodec;
  readonly schemaJson: Buffer;
  /** Size past which a segment is sealed (at most a quarter of maxDiskBytes). */
  readonly sealAt: number;
  readonly builder: BlockBuilder;
  readonly retry: RetryPolicy;
  readonly committer: Committer;
  readonly acks: AckTracker;
  /** The read cache: records appended while the reader keeps up, as the memory tier would hold them. */
  readonly cache: DurableCache;
  /** The fds with asynchronous operations under way, closed only once none is. */
  readonly fds: FdTracker;
  readonly counters: DurableCounters;
  readonly segments: DurableSegment[];
  /** Blocks handed to the writer, in order, until every block before them is on disk too. */
  readonly pending: PendingBlock[];
  /** Bytes of the pending blocks not on disk yet. */
  pendingTotal: number;
  nextSeq: number;
  /** RN of the next record appended. */
  nextRn: number;
  /** RN of the first record in the block being filled. */
  builderFirst: number;
  /** RN of the next record delivered. */
  cursor: number;
  /** Records appended and not yet read (gaps excluded; a damage place counts as one). */
  records: number;
  /** Bytes of the segment files, pending blocks included. */
  fileBytes: number;
  /** The reader asked for a block still waiting for the disk: it is told when bytes land. */
  readerWaiting: boolean;
  closed: boolean;
  failed: Error | undefined;
  /**
   * Tells the channel (onRecovered) on a tick of its own: news is found inside an append, a read
   * or a removal, while the channel is in the middle of placing or delivering.
   */
  news(): void;
}

/** The segment being appended to, if one is open for writing or planned (its file not made yet). */
export function activeSegment(state: DurableState): DurableSegment | undefined {
  const last = state.segments[state.segments.length - 1];
  return last !== undefined && !last.sealed && (last.fd !== undefined || !last.created) ? last : undefined;
}

/** A failed file operation as the error to report: a system error becomes ERR_HOPPER_IO. */
export function asError(err: unknown, operation: string, file: string): Error {
  if (isSystemError(err)) return ioError(operation, file, err);
  return err instanceof Error ? err : new Error(String(err));
}
