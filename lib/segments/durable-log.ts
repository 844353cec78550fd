import type { RecordCodec } from '../codec.js';
import { AckTracker } from './acks.js';
import { BlockBuilder } from './block-builder.js';
import { Committer } from './commit.js';
import { DurableCache } from './durable-cache.js';
import { FdTracker } from './durable-fds.js';
import type { DurableFileSystem } from './durable-io.js';
import { DurableLedger } from './durable-ledger.js';
import { DurableLifecycle } from './durable-lifecycle.js';
import { DurableReads } from './durable-reads.js';
import type { DurableLogHooks, DurableLogOptions, DurableSegment, DurableState, DurableStats, RecoveredEvent } from './durable-state.js';
import { DurableWrites } from './durable-writes.js';
import type { SegmentEvent } from './index.js';
import { RetryPolicy, type SegmentDirectory } from './io.js';
import { recover, type Recovered, type TornReport } from './recovery.js';
import type { AppendResult, FaultEvent, LostRecords } from './results.js';

// The segment log of a durable channel (docs/durable-design.md §2-§4). Every accepted record is
// appended here (write-through); the memory tier becomes a read cache kept inside this log
// (records appended while the reader keeps up, within maxMemoryBytes), so that the channel's
// placement queue holds only disk runs. Records have numbers (RNs) across runs; a segment leaves
// the disk only once all its records are acknowledged and a ledger file saying so is durable
// (ledger first, unlink after). Reading never removes anything. At open, recovery (recovery.ts)
// resumes what a previous run left.
//
// Kept apart from the non-durable SegmentLog (index.ts) on purpose: the two share the block
// builder, the block reader, the OCF functions and the file seam, but not their rules (read-through
// removal, drop-oldest, write-behind discard of unread bytes are what a durable log must not do).
//
// This file is the facade: what the channel calls. It builds the state the parts share
// (durable-state.ts) from what recovery found and wires the parts, which never import each other:
// durable-writes.ts (appends, blocks, segments, the background writes, the last resort),
// durable-ledger.ts (the commit's sync, flush, acknowledgements, the ledger file, removal of
// acknowledged segments), durable-reads.ts (the next record, the cache, gaps, damage) and
// durable-lifecycle.ts (fail, idle, close).

export class DurableLog {
  private readonly state: DurableState;
  private readonly writes: DurableWrites;
  private readonly ledger: DurableLedger;
  private readonly reads: DurableReads;
  private readonly lifecycle: DurableLifecycle;
  readonly committer: Committer;
  readonly acks: AckTracker;
  /** What recovery found, for the channel to seed its placement queue with. */
  readonly recovered: Recovered;
  /** Places in the backlog where recovery found damage (see DurableReads.damageBefore). */
  readonly damagePlaces: number;
  private recoveryScheduled = false;

  constructor(directory: SegmentDirectory, codec: RecordCodec, options: DurableLogOptions, hooks: DurableLogHooks, fs: DurableFileSystem) {
    const schemaJson = Buffer.from(JSON.stringify(codec.type.schema({ exportAttrs: true })));
    const clock = fs.retryClock;
    const recovered = recover(fs, directory.path, {
      channel: options.channel,
      schema: schemaJson.toString(),
      sync: options.fsync !== 'never',
      place: directory,
    });
    this.recovered = recovered;
    this.acks = new AckTracker(recovered.acked, recovered.acked, recovered.gaps);
    this.committer = new Committer(
      {
        policy: options.fsync,
        intervalMs: options.fsyncIntervalMs,
        clock,
        sync: () => this.ledger.syncAll(),
        onDurable: () => this.ledger.closeSyncedSealed(),
        onFailed: (err) => this.lifecycle.fail(err),
      },
      recovered.nextRn,
    );
    // Each damaged segment still ahead of the reader holds one more place in the backlog: where
    // its damage is reported (at least one record was lost there).
    const damaged = recovered.segments.filter((s) => s.damagedAt !== undefined && s.first + s.records >= recovered.cursor).length;
    this.damagePlaces = damaged;
    const segments = recovered.segments.map(
      (s): DurableSegment => ({
        seq: s.seq,
        file: s.file,
        dev: s.dev,
        ino: s.ino,
        first: s.first,
        records: s.records,
        size: s.size,
        writtenSize: s.size,
        syncedSize: s.size,
        headerLength: s.headerLength,
        blockEnds: s.blockEnds,
        blockCounts: s.blockCounts,
        sync: s.sync,
        codec: s.codec,
        created: true,
        header: undefined,
        fd: undefined,
        sealed: true,
        linkedUnsynced: false,
        removing: false,
        damage: s.damagedAt === undefined ? undefined : { offset: s.damagedAt, problem: s.damage ?? 'the segment is damaged' },
      }),
    );
    this.state = {
      fs,
      directory,
      options,
      hooks,
      codec,
      schemaJson,
      sealAt: Math.max(1, Math.min(options.maxSegmentBytes, Math.floor(options.maxDiskBytes / 4))),
      builder: new BlockBuilder(codec, codec.largeRecord !== undefined),
      retry: new RetryPolicy(() => this.writes.kickWrites(), clock),
      committer: this.committer,
      acks: this.acks,
      cache: new DurableCache(options.maxMemoryBytes, (record) => codec.copy(record), recovered.cursor),
      fds: new FdTracker(fs),
      counters: {
        ackedAtOpen: this.acks.acked,
        deliveredBefore: recovered.delivered,
        recoveredRecords: recovered.records,
        tornRecords: recovered.torn.reduce((n, torn) => n + (torn.records ?? 0), 0),
        tornBlocks: recovered.torn.length,
        redelivered: 0,
      },
      segments,
      pending: [],
      pendingTotal: 0,
      nextSeq: recovered.nextSeq,
      nextRn: recovered.nextRn,
      builderFirst: recovered.nextRn,
      cursor: recovered.cursor,
      records: recovered.records + damaged,
      fileBytes: segments.reduce((n, s) => n + s.size, 0),
      readerWaiting: false,
      closed: false,
      failed: undefined,
      news: () => this.scheduleRecovered(),
    };
    this.writes = new DurableWrites(this.state);
    this.ledger = new DurableLedger(this.state, {
      sealBlock: () => this.writes.sealBlock(),
      fail: (err) => this.lifecycle.fail(err),
      letGo: (segment) => this.reads.letGo(segment),
    });
    this.reads = new DurableReads(
      this.state,
      {
        sealBlock: () => this.writes.sealBlock(),
        ack: (count) => this.ledger.ack(count),
      },
      damaged,
    );
    this.lifecycle = new DurableLifecycle(this.state, {
      busy: () => [this.writes.busy, this.reads.busy, ...this.ledger.busy, this.state.fds.busy],
      writeFault: () => this.writes.fault,
      stopCreating: () => this.writes.stopCreating(),
      writeOutSync: () => this.writes.writeOutSync(),
      stopLedgerTimer: () => this.ledger.stopTimer(),
      syncSync: () => this.ledger.syncSync(),
      closeLedger: (faults) => this.ledger.closeLedger(faults),
      closeReadFd: () => this.reads.closeReadFd(),
    });
    if (recovered.torn.length > 0 || recovered.records > 0 || recovered.removed.length > 0 || recovered.missing > 0 || recovered.ledger.status !== 'ok') {
      const event: RecoveredEvent = {
        records: recovered.records,
        bytes: recovered.bytes,
        segments: recovered.segments.length,
        from: recovered.cursor,
        missing: recovered.missing,
        removed: recovered.removed.length,
        ledger: recovered.ledger.status === 'foreign' ? 'damaged' : recovered.ledger.status,
        damage: recovered.damage,
      };
      const faults = recovered.faults;
      process.nextTick(() => {
        for (const error of faults) hooks.onFault({ operation: 'read', file: (error as { file?: string }).file ?? directory.path, error });
        for (const torn of recovered.torn) hooks.onTorn(torn);
        hooks.onRecoveredBacklog(event);
      });
    }
  }

  /** Records appended and not yet read (gaps excluded). */
  get records(): number {
    return this.state.records;
  }

  get bytes(): number {
    return this.state.fileBytes + this.state.builder.pending;
  }

  get segmentCount(): number {
    return this.state.segments.length;
  }

  get bufferBytes(): number {
    return this.state.builder.bufferBytes + this.reads.bufferBytes + this.state.cache.bytes;
  }

  get pendingBytes(): number {
    return this.state.pendingTotal;
  }

  /** Synchronous writes made because more than maxPendingDiskBytes waited for the disk. */
  get syncWrites(): number {
    return this.writes.syncWrites;
  }

  get fault(): Error | undefined {
    return this.state.failed ?? this.writes.fault;
  }

  /** RN of the next record appended: a write callback waits for `durable` to pass it. */
  get appended(): number {
    return this.state.nextRn;
  }

  stats(): DurableStats {
    const counters = this.state.counters;
    return {
      unacknowledged: this.acks.unacknowledged,
      acknowledged: Math.max(0, this.acks.acked - counters.ackedAtOpen),
      redelivered: counters.redelivered,
      recovered: counters.recoveredRecords,
      torn: counters.tornRecords,
      tornBlocks: counters.tornBlocks,
      undurable: this.committer.undurable,
      fsyncs: this.committer.fsyncs,
      lastFsyncAt: this.committer.lastFsyncAt,
    };
  }

  append(record: unknown): AppendResult {
    return this.writes.append(record);
  }

  /**
   * Resolves once every record accepted before the call is durable under the policy, and the
   * acknowledged position is in the ledger file.
   */
  flush(): Promise<void> {
    return this.ledger.flush();
  }

  /** Acknowledges `count` delivered records (the caller checked `count` against `unacknowledged`). */
  ack(count: number): boolean {
    return this.ledger.ack(count);
  }

  /**
   * The next record in RN order: from the read cache, or from its block (read on the thread
   * pool: WAIT until it is loaded). Throws when reading failed for good.
   */
  next(): unknown {
    return this.reads.next();
  }

  /** Lets the channel take what `next()` gave as WAIT: a LostRecords found while loading comes first. */
  takeLost(): LostRecords | undefined {
    return this.reads.takeLost();
  }

  /** A durable channel never drops a segment to make room. */
  dropOldest(): undefined {
    return undefined;
  }

  /** Resolves once no background operation is under way. */
  idle(): Promise<void> {
    return this.lifecycle.idle();
  }

  /** See DurableLifecycle.close: writes, syncs and records what it can; hands back what failed. */
  close(): FaultEvent[] {
    return this.lifecycle.close();
  }

  /** Tells the channel on a tick of its own (see DurableState.news). */
  private scheduleRecovered(): void {
    const state = this.state;
    if (this.recoveryScheduled || state.closed) return;
    this.recoveryScheduled = true;
    state.readerWaiting = false;
    process.nextTick(() => {
      this.recoveryScheduled = false;
      if (!state.closed) state.hooks.onRecovered();
    });
  }
}

export type { DurableLogHooks, DurableLogOptions, DurableStats, RecoveredEvent } from './durable-state.js';
export type { SegmentEvent, TornReport };
