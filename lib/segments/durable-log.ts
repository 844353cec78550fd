import crypto from 'node:crypto';
import path from 'node:path';
import type { RecordCodec } from '../codec.js';
import { corruptSegmentError, destroyedError, ioError } from '../errors.js';
import { SEGMENT_DRAFT } from '../lock.js';
import { OWNER_KEY, blockData, checkSync, encodeBlockHeader, encodeHeader, isProblem, parseBlockHeader } from '../ocf.js';
import type { AckMode, FsyncPolicy, OnCorrupt, SegmentCodec } from '../options.js';
import { AckTracker } from './acks.js';
import { BlockBuilder } from './block-builder.js';
import { decodeRecord } from './block-reader.js';
import { Committer } from './commit.js';
import { fsyncDir, fsyncDirSync, durableAsync, type DurableFileSystem } from './durable-io.js';
import {
  CREATE_FLAGS,
  READ_FLAGS,
  RetryPolicy,
  closeQuietly,
  fsAsync,
  isSystemError,
  unlinkOurs,
  unlinkOursAsync,
  unlinkQuietly,
  writeAll,
  writeAllAsync,
  type SegmentDirectory,
} from './io.js';
import { writeLedgerFile, writeLedgerFileSync, type LedgerState } from './ledger-file.js';
import { segmentFileName } from './ledger.js';
import { memoryCopy } from '../plain-data.js';
import { DURABLE_KEY, FIRST_KEY, recover, type Recovered, type TornReport } from './recovery.js';
import { Corruption, LostRecords, WAIT, type AppendResult, type FaultEvent } from './results.js';
import type { SegmentEvent, SegmentLogHooks } from './index.js';

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

/** The durable counters (HopperStats' durable fields). */
export interface DurableStats {
  unacknowledged: number;
  acknowledged: number;
  redelivered: number;
  recovered: number;
  torn: number;
  tornBlocks: number;
  undurable: number;
  fsyncs: number;
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

interface DurableSegment {
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
  /** Open for writing (this run's segments until their last commit). */
  fd: number | undefined;
  sealed: boolean;
  /** Linked into place since the last directory fsync. */
  linkedUnsynced: boolean;
  removing: boolean;
  /** Damage recovery found after the blocks it kept: reported once the reader gets there. */
  damage?: { offset: number; problem: string } | undefined;
}

interface PendingBlock {
  segment: DurableSegment;
  position: number;
  length: number;
  parts: Buffer[];
  /** RN after the block's last record. */
  end: number;
  /** On disk (written out of turn by the last resort, or by the background task ahead of its settling). */
  done: boolean;
}

/** The block being read: its records' bytes, and where the next record starts. */
interface ReadState {
  segment: DurableSegment;
  block: number;
  data: Buffer;
  pos: number;
  /** RN of the record at `pos`. */
  rn: number;
  /** RN after the block's last record. */
  end: number;
}

export class DurableLog {
  private readonly fs: DurableFileSystem;
  private readonly directory: SegmentDirectory;
  private readonly options: DurableLogOptions;
  private readonly hooks: DurableLogHooks;
  private readonly codec: RecordCodec;
  private readonly schemaJson: Buffer;
  private readonly sealAt: number;
  private readonly builder: BlockBuilder;
  private readonly retry: RetryPolicy;
  readonly committer: Committer;
  readonly acks: AckTracker;
  private readonly segments: DurableSegment[] = [];
  private readonly pending: PendingBlock[] = [];
  private nextSeq: number;
  /** RN of the next record appended. */
  private nextRn: number;
  /** RN of the first record in the block being filled. */
  private builderFirst: number;
  /** RN of the next record delivered. */
  private cursor: number;
  /** The read cache: records [cacheStart, cacheStart + cache.length), as the memory tier would hold them. */
  private cache: unknown[] = [];
  private cacheSizes: number[] = [];
  private cacheHead = 0;
  private cacheStart = 0;
  private cacheBytes = 0;
  /** Where the last block was found: the next search starts there. */
  private located: { segment: DurableSegment; block: number; blockFirst: number } | undefined;
  /** A record was left out of the cache: nothing joins it until it is empty. */
  private cacheClosed = false;
  private readonly copyOther: (record: unknown) => unknown;
  /** A commit's sync is under way: fds it uses stay open. */
  private syncing = false;
  private read: ReadState | undefined;
  private readFd: { segment: DurableSegment; fd: number } | undefined;
  private loading: Promise<void> | undefined;
  private readFailure: Error | undefined;
  private writing: Promise<void> | undefined;
  /** The block the background task is writing. */
  private inFlight: PendingBlock | undefined;
  private writeFault: Error | undefined;
  private sealScheduled = false;
  private recoveryScheduled = false;
  private readerWaiting = false;
  /** The acknowledged position the last durable ledger file holds. */
  private ledgerAcked: number;
  private ledgerTimer: unknown;
  private ledgerArmed = false;
  private ledgerWriting: Promise<void> | undefined;
  private ledgerDirty = false;
  private readonly removals = new Set<Promise<void>>();
  private fileBytes = 0;
  private closed = false;
  private failed: Error | undefined;
  /** Records appended and not yet read (gaps excluded). */
  records = 0;
  /** Synchronous writes made because more than maxPendingDiskBytes waited for the disk. */
  syncWrites = 0;
  /** The disk fell behind ('diskBehind' announced); cleared when the waiting bytes fall to half the bound. */
  private behind = false;
  private pendingTotal = 0;
  private readonly ackedAtOpen: number;
  private readonly deliveredBefore: number;
  private redelivered = 0;
  private readonly recoveredRecords: number;
  private readonly tornRecords: number;
  private readonly tornBlocks: number;
  /** What recovery found, for the channel to seed its placement queue with. */
  readonly recovered: Recovered;
  /** Places in the backlog where recovery found damage (see damageBefore). */
  readonly damagePlaces: number;
  /** Of those, not reported yet. */
  private damageLeft = 0;

  constructor(directory: SegmentDirectory, codec: RecordCodec, options: DurableLogOptions, hooks: DurableLogHooks, fs: DurableFileSystem) {
    this.fs = fs;
    this.directory = directory;
    this.options = options;
    this.hooks = hooks;
    this.codec = codec;
    this.copyOther = (record) => codec.copy(record);
    this.schemaJson = Buffer.from(JSON.stringify(codec.type.schema({ exportAttrs: true })));
    this.sealAt = Math.max(1, Math.min(options.maxSegmentBytes, Math.floor(options.maxDiskBytes / 4)));
    this.builder = new BlockBuilder(codec, codec.largeRecord !== undefined);
    const clock = fs.retryClock;
    this.retry = new RetryPolicy(() => this.kickWrites(), clock);
    const recovered = recover(fs, directory.path, {
      channel: options.channel,
      schema: this.schemaJson.toString(),
      sync: options.fsync !== 'never',
      place: directory,
    });
    this.recovered = recovered;
    this.nextSeq = recovered.nextSeq;
    this.nextRn = this.builderFirst = recovered.nextRn;
    this.cursor = this.cacheStart = recovered.cursor;
    this.acks = new AckTracker(recovered.acked, recovered.acked, recovered.gaps);
    this.ledgerAcked = this.ackedAtOpen = this.acks.acked;
    this.deliveredBefore = recovered.delivered;
    this.recoveredRecords = recovered.records;
    // Each damaged segment still ahead of the reader holds one more place in the backlog: where
    // its damage is reported (at least one record was lost there).
    const damaged = recovered.segments.filter((s) => s.damagedAt !== undefined && s.first + s.records >= recovered.cursor).length;
    this.records = recovered.records + damaged;
    this.damagePlaces = this.damageLeft = damaged;
    this.tornRecords = recovered.torn.reduce((n, torn) => n + (torn.records ?? 0), 0);
    this.tornBlocks = recovered.torn.length;
    for (const s of recovered.segments) {
      this.segments.push({
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
        fd: undefined,
        sealed: true,
        linkedUnsynced: false,
        removing: false,
        damage: s.damagedAt === undefined ? undefined : { offset: s.damagedAt, problem: s.damage ?? 'the segment is damaged' },
      });
      this.fileBytes += s.size;
    }
    this.committer = new Committer(
      {
        policy: options.fsync,
        intervalMs: options.fsyncIntervalMs,
        clock,
        sync: () => this.syncAll(),
        onDurable: () => this.closeSyncedSealed(),
        onFailed: (err) => this.fail(err),
      },
      this.nextRn,
    );
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

  get bytes(): number {
    return this.fileBytes + this.builder.pending;
  }

  get segmentCount(): number {
    return this.segments.length;
  }

  get bufferBytes(): number {
    return this.builder.bufferBytes + (this.read?.data.length ?? 0) + this.cacheBytes;
  }

  get pendingBytes(): number {
    return this.pendingTotal;
  }

  get fault(): Error | undefined {
    return this.failed ?? this.writeFault;
  }

  /** RN of the next record appended: a write callback waits for `durable` to pass it. */
  get appended(): number {
    return this.nextRn;
  }

  stats(): DurableStats {
    return {
      unacknowledged: this.acks.unacknowledged,
      acknowledged: Math.max(0, this.acks.acked - this.ackedAtOpen),
      redelivered: this.redelivered,
      recovered: this.recoveredRecords,
      torn: this.tornRecords,
      tornBlocks: this.tornBlocks,
      undurable: this.committer.undurable,
      fsyncs: this.committer.fsyncs,
      lastFsyncAt: this.committer.lastFsyncAt,
    };
  }

  append(record: unknown): AppendResult {
    // While writes fail (they are retried), a record that must go to disk is handled as onFull says.
    if (this.failed !== undefined || this.closed || this.writeFault !== undefined) return 'fault';
    const builder = this.builder;
    const size = builder.stage(record);
    const framing = 36;
    const headerBytes = this.schemaJson.length + 200;
    if (size + framing + headerBytes > this.options.maxDiskBytes) {
      builder.drop();
      return 'too-large';
    }
    const active = this.activeSegment();
    const needsSegment = active === undefined && builder.count === 0;
    if (needsSegment && this.segments.length >= this.options.maxSegments) {
      builder.drop();
      return 'full';
    }
    if (this.fileBytes + builder.stagedPending + framing + (needsSegment ? headerBytes : 0) > this.options.maxDiskBytes) {
      builder.drop();
      return 'full';
    }
    const full = builder.keep();
    const rn = this.nextRn++;
    this.records++;
    this.cacheRecord(rn, record, size);
    this.committer.append(this.nextRn);
    if (full) this.sealBlock();
    else this.scheduleSeal();
    return 'ok';
  }

  /**
   * Keeps a copy in the read cache when it continues the cache and the budget allows (sized by
   * its encoding). The cache is one run of RNs: once a record is left out, later ones are too
   * until the reader has emptied it.
   */
  private cacheRecord(rn: number, record: unknown, size: number): void {
    const live = this.cache.length - this.cacheHead;
    if (live === 0) {
      this.cache = [];
      this.cacheSizes = [];
      this.cacheHead = 0;
      this.cacheStart = rn;
      this.cacheClosed = false;
    } else if (this.cacheClosed || this.cacheStart + live !== rn) {
      return;
    }
    if (this.cacheBytes + size > this.options.maxMemoryBytes) {
      // Nothing more joins the run until the reader has emptied it.
      if (live > 0) this.cacheClosed = true;
      return;
    }
    this.cache.push(memoryCopy(record, this.copyOther));
    this.cacheSizes.push(size);
    this.cacheBytes += size;
  }

  private scheduleSeal(): void {
    if (this.sealScheduled) return;
    this.sealScheduled = true;
    setImmediate(() => {
      this.sealScheduled = false;
      if (!this.closed && this.failed === undefined) this.sealBlock();
    });
  }

  private activeSegment(): DurableSegment | undefined {
    const last = this.segments[this.segments.length - 1];
    return last !== undefined && !last.sealed && last.fd !== undefined ? last : undefined;
  }

  /** Hands the block being filled to the writer (creating a segment for it if needed). */
  private sealBlock(): void {
    const builder = this.builder;
    if (builder.count === 0 || this.closed) return;
    let segment = this.activeSegment();
    if (segment === undefined) {
      try {
        segment = this.createSegment(this.builderFirst);
      } catch (err) {
        // The records stay in the block; the next seal tries again.
        this.writeFault = asError(err, 'creating a segment', this.directory.path);
        this.hooks.onFault({ operation: 'write', file: this.directory.path, error: this.writeFault });
        this.retry.schedule();
        return;
      }
    }
    const data = builder.parts(this.options.codec);
    let dataLength = 0;
    for (const part of data) dataLength += part.length;
    const parts = [encodeBlockHeader(builder.count, dataLength), ...data, segment.sync];
    let length = 0;
    for (const part of parts) length += part.length;
    const count = builder.count;
    const position = segment.size;
    segment.size += length;
    segment.records += count;
    segment.blockEnds.push(segment.size);
    segment.blockCounts.push(count);
    this.fileBytes += length;
    this.builderFirst += count;
    this.pending.push({ segment, position, length, parts, end: this.builderFirst, done: false });
    this.pendingTotal += length;
    builder.handOff();
    if (segment.size >= this.sealAt) {
      segment.sealed = true;
      this.hooks.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records });
    }
    this.kickWrites();
    this.lastResort();
  }

  /**
   * Past maxPendingDiskBytes while the background task is writing (a disk slower than the
   * producer), the waiting blocks it is not writing are written synchronously, out of turn (each at
   * its own position): memory stays bounded and no write is refused or held. A block counts as
   * written, for the commit, only once every block before it is (see settleWritten).
   */
  private lastResort(): void {
    const bound = this.options.maxPendingDiskBytes;
    if (this.pendingTotal <= bound || (this.writing === undefined && bound > 0) || this.writeFault !== undefined) return;
    const waiting = this.pendingTotal;
    for (const block of this.pending) {
      if (block.done || block === this.inFlight) continue;
      try {
        writeAll(this.fs, block.segment.fd!, block.parts, block.length, block.position);
      } catch (err) {
        // Left to the background task, which retries.
        if (!isSystemError(err)) throw err;
        break;
      }
      block.done = true;
      this.pendingTotal -= block.length;
      this.syncWrites++;
    }
    if (!this.behind && bound > 0) {
      this.behind = true;
      this.hooks.onDiskBehind?.({ pendingDiskBytes: waiting, maxPendingDiskBytes: bound });
    }
    this.settleWritten();
  }

  /** Blocks on disk at the front of the queue leave it, in order: `written` moves on with them. */
  private settleWritten(): void {
    while (this.pending.length > 0 && this.pending[0]!.done && this.pending[0] !== this.inFlight) {
      const block = this.pending.shift()!;
      block.segment.writtenSize = Math.max(block.segment.writtenSize, block.position + block.length);
      this.committer.wrote(block.end);
    }
    if (this.readerWaiting) this.scheduleRecovered();
  }

  /** C1 draft with the header in the lock directory, C2 link into place, C3 unlink the draft. */
  private createSegment(first: number): DurableSegment {
    const lost = this.directory.verify();
    if (lost !== undefined) throw lost;
    const sync = crypto.randomBytes(16);
    const header = encodeHeader(this.schemaJson, this.options.codec, sync, {
      [OWNER_KEY]: this.options.channel,
      [DURABLE_KEY]: '1',
      [FIRST_KEY]: String(first),
    });
    const fs = this.fs;
    const draft = path.join(this.directory.draftDir, SEGMENT_DRAFT);
    unlinkQuietly(fs, draft);
    const fd = fs.openSync(draft, CREATE_FLAGS, 0o644);
    let file: string;
    let seq: number;
    try {
      writeAll(fs, fd, [header], header.length, 0);
      for (;;) {
        seq = this.nextSeq++;
        file = path.join(this.directory.path, segmentFileName(seq));
        try {
          fs.linkSync(draft, file);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        }
      }
    } catch (err) {
      closeQuietly(fs, fd);
      unlinkQuietly(fs, draft);
      throw err;
    }
    unlinkQuietly(fs, draft);
    const stat = fs.fstatSync(fd);
    const segment: DurableSegment = {
      seq,
      file,
      dev: stat.dev,
      ino: stat.ino,
      first,
      records: 0,
      size: header.length,
      writtenSize: header.length,
      syncedSize: 0,
      headerLength: header.length,
      blockEnds: [],
      blockCounts: [],
      sync,
      codec: this.options.codec,
      fd,
      sealed: false,
      linkedUnsynced: true,
      removing: false,
    };
    this.segments.push(segment);
    this.fileBytes += header.length;
    return segment;
  }

  private kickWrites(): void {
    if (this.writing !== undefined || this.closed || this.pending.length === 0) {
      if (this.writeFault !== undefined && this.builder.count > 0 && this.pending.length === 0 && !this.closed) this.sealBlock();
      return;
    }
    this.writing = this.writeLoop().finally(() => {
      this.writing = undefined;
    });
  }

  private async writeLoop(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const block = this.pending.find((b) => !b.done);
      if (block === undefined) return;
      this.inFlight = block;
      try {
        await this.track(block.segment.fd!, writeAllAsync(this.fs, block.segment.fd!, block.parts, block.length, block.position));
      } catch (err) {
        this.inFlight = undefined;
        if (this.closed) return;
        if (!isSystemError(err)) throw err;
        // The bytes are still here: rewriting them at the same position is safe.
        this.writeFault = ioError('writing a block', block.segment.file, err);
        this.hooks.onFault({ operation: 'write', file: block.segment.file, error: this.writeFault });
        this.retry.schedule();
        return;
      }
      this.inFlight = undefined;
      if (this.writeFault !== undefined) {
        this.writeFault = undefined;
        this.retry.writesWork();
        this.scheduleRecovered();
      }
      if (!block.done) {
        block.done = true;
        this.pendingTotal -= block.length;
      }
      // The episode ends once the background writes, not the last resort, brought the bytes down.
      if (this.behind && this.pendingTotal <= this.options.maxPendingDiskBytes / 2) this.behind = false;
      this.settleWritten();
    }
  }

  /** The commit's sync: every segment with unsynced bytes, then the directory if a segment was linked. */
  private async syncAll(): Promise<void> {
    this.syncing = true;
    try {
      await this.syncWritten();
    } finally {
      this.syncing = false;
    }
  }

  private async syncWritten(): Promise<void> {
    const work: Array<{ segment: DurableSegment; size: number; fd: number }> = [];
    let linked = false;
    for (const segment of this.segments) {
      if (segment.fd !== undefined && segment.writtenSize > segment.syncedSize) work.push({ segment, size: segment.writtenSize, fd: segment.fd });
      if (segment.linkedUnsynced) {
        linked = true;
        segment.linkedUnsynced = false;
      }
    }
    for (const { segment, size, fd } of work) {
      await this.track(fd, durableAsync.fdatasync(this.fs, fd));
      segment.syncedSize = Math.max(segment.syncedSize, size);
    }
    if (linked) await fsyncDir(this.fs, this.directory.path);
  }

  /** Sealed segments wholly written and synced (or any policy 'never' wrote through) let go of their fd. */
  private closeSyncedSealed(): void {
    for (const segment of this.segments) {
      if (!segment.sealed || segment.fd === undefined || segment.writtenSize < segment.size) continue;
      if (this.options.fsync !== 'never' && segment.syncedSize < segment.size) continue;
      if (this.pending.some((block) => block.segment === segment)) continue;
      this.closeFd(segment.fd);
      segment.fd = undefined;
    }
    this.removeAcknowledged();
  }

  /**
   * Resolves once every record accepted before the call is durable under the policy, and the
   * acknowledged position is in the ledger file.
   */
  async flush(): Promise<void> {
    if (this.failed !== undefined) throw this.failed;
    if (this.closed) return;
    this.sealBlock();
    await this.committer.flush();
    if (this.ledgerAcked < this.acks.acked || this.ledgerDirty) await this.writeLedgerNow();
  }

  /** Acknowledges `count` delivered records (the caller checked `count` against `unacknowledged`). */
  ack(count: number): boolean {
    if (!this.acks.ack(count)) return false;
    if (count > 0) this.scheduleLedger();
    return true;
  }

  /** A ledger write at most `fsyncIntervalMs` after acked first moved. */
  private scheduleLedger(): void {
    this.ledgerDirty = true;
    if (this.ledgerArmed || this.closed) return;
    this.ledgerArmed = true;
    const clock = this.fs.retryClock;
    const run = (): void => {
      this.ledgerArmed = false;
      if (!this.closed && this.failed === undefined) void this.writeLedgerNow().catch(() => {});
    };
    this.ledgerTimer = clock ? clock.setTimeout(run, this.options.fsyncIntervalMs) : setTimeout(run, this.options.fsyncIntervalMs);
  }

  private ledgerState(): LedgerState {
    return {
      channel: this.options.channel,
      acked: this.acks.acked,
      delivered: Math.max(this.acks.delivered, this.deliveredBefore),
      synced: this.options.fsync === 'never' ? 0 : this.committer.durable,
      nextSeq: this.nextSeq,
      writtenAt: new Date().toISOString(),
    };
  }

  /** R1-R6: the ledger file with the acknowledged position; then R7-R8 for segments below it. One write at a time. */
  private async writeLedgerNow(): Promise<void> {
    while (this.ledgerWriting !== undefined) await this.ledgerWriting;
    // The write waited on may have failed the channel: a flush() waiting here must not resolve
    // as though the acknowledged position had reached the disk.
    if (this.failed !== undefined) throw this.failed;
    if (this.closed) return;
    if (!this.ledgerDirty && this.ledgerAcked >= this.acks.acked) return;
    this.ledgerDirty = false;
    const state = this.ledgerState();
    // Checked again right before the rename: a write still under way when the log closed (close()
    // writes the newest state itself) must not put an older one in its place.
    const place = { path: this.directory.path, draftDir: this.directory.draftDir, verify: () => (this.closed ? destroyedError() : this.directory.verify()) };
    const write = writeLedgerFile(this.fs, place, state, this.options.fsync !== 'never');
    this.ledgerWriting = write.then(
      () => undefined,
      () => undefined,
    );
    try {
      await write;
    } catch (err) {
      this.ledgerWriting = undefined;
      if (this.closed) return;
      const error = asError(err, 'writing the ledger file', this.directory.path);
      this.fail(error);
      throw error;
    }
    this.ledgerWriting = undefined;
    this.ledgerAcked = Math.max(this.ledgerAcked, state.acked);
    this.removeAcknowledged();
  }

  /** R7-R8: unlinks segments whose records are all below the durable acknowledged position, then forgets them. */
  private removeAcknowledged(): void {
    if (this.closed) return;
    for (const segment of [...this.segments]) {
      if (segment.removing || segment.first + segment.records > this.ledgerAcked) continue;
      if (this.pending.some((block) => block.segment === segment)) continue;
      if (segment === this.activeSegment()) {
        if (this.builder.count > 0) continue;
        segment.sealed = true;
      }
      if (segment.fd !== undefined && this.syncing) continue;
      if (segment.fd !== undefined) {
        // Its bytes are all acknowledged: nothing needs them synced any more.
        this.closeFd(segment.fd);
        segment.fd = undefined;
      }
      if (this.readFd?.segment === segment) this.closeReadFd();
      segment.removing = true;
      const removal = unlinkOursAsync(this.fs, this.directory, segment).then(
        () => this.forget(segment),
        (err: unknown) => {
          segment.removing = false;
          if (!this.closed) this.hooks.onFault({ operation: 'remove', file: segment.file, error: asError(err, 'removing a segment', segment.file) });
        },
      );
      this.removals.add(removal);
      void removal.finally(() => this.removals.delete(removal));
    }
  }

  private forget(segment: DurableSegment): void {
    const index = this.segments.indexOf(segment);
    if (index < 0) return;
    this.segments.splice(index, 1);
    this.fileBytes -= segment.size;
    if (!this.closed) {
      this.hooks.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
      this.scheduleRecovered();
    }
  }

  /**
   * The next record in RN order: from the read cache, or from its block (read on the thread
   * pool: WAIT until it is loaded). Throws when reading failed for good.
   */
  next(): unknown {
    if (this.readFailure !== undefined) {
      const err = this.readFailure;
      this.readFailure = undefined;
      throw err;
    }
    const lost = this.takeLost();
    if (lost !== undefined) return lost;
    for (;;) {
      if (this.damageLeft > 0) {
        const damaged = this.damageBefore(this.cursor);
        if (damaged !== undefined) return damaged;
      }
      const rn = this.skipGaps(this.cursor);
      this.cursor = rn;
      if (rn >= this.nextRn) return WAIT;
      // Cached records the cursor passed (skipped as damaged on disk) are let go.
      while (this.cacheHead < this.cache.length && this.cacheStart < rn) this.shiftCache();
      if (this.cacheHead < this.cache.length && this.cacheStart === rn) {
        const value = this.shiftCache();
        // The disk copy of the record is passed over: the block being read moves on with it.
        if (this.read !== undefined && this.read.rn === rn) this.read = undefined;
        return this.delivered(rn, value);
      }
      const read = this.read;
      if (read !== undefined && read.rn === rn && read.rn < read.end) {
        const decoded = decodeRecord(this.codec, read.data, read.pos, true);
        if (decoded.offset < 0 || decoded.offset > read.data.length) {
          const at = read.segment.blockEnds[read.block - 1] ?? read.segment.headerLength;
          const skipped = this.corrupt(read.segment, at, 'a record does not decode', read.end - rn);
          if (skipped === undefined) throw this.takeReadFailure();
          return skipped;
        }
        read.pos = decoded.offset;
        read.rn++;
        if (read.rn === read.end) this.read = undefined;
        return this.delivered(rn, decoded.value);
      }
      // Records in the block being filled are read from it once it is handed to the writer.
      if (rn >= this.builderFirst) this.sealBlock();
      const found = this.locate(rn);
      if (found === undefined) return WAIT;
      const { segment, block, blockFirst } = found;
      const start = block === 0 ? segment.headerLength : segment.blockEnds[block - 1]!;
      const end = segment.blockEnds[block]!;
      const pendingBlock = this.pending.find((p) => p.segment === segment && p.position === start);
      if (pendingBlock !== undefined) {
        const bytes = pendingBlock.parts.length === 1 ? pendingBlock.parts[0]! : Buffer.concat(pendingBlock.parts);
        try {
          const checked = this.blockFromBytes(bytes, start, segment);
          this.seat(segment, block, blockFirst, checked, rn);
        } catch (err) {
          throw err instanceof Corruption ? new Error(`hopper-streams: a block waiting for the disk does not frame: ${err.message}`) : err;
        }
        continue;
      }
      if (segment.writtenSize < end) {
        this.readerWaiting = true;
        return WAIT;
      }
      if (this.loading === undefined) this.loading = this.load(segment, block, blockFirst, start, end, rn);
      return WAIT;
    }
  }

  /**
   * Damage recovery found in a segment, once the reader has read the blocks before it: the error
   * (onCorrupt 'error'), or a LostRecords of 1, the place it held in the backlog (how many records
   * the damaged bytes held is not known; the RNs no file holds are a gap already).
   */
  private damageBefore(rn: number): LostRecords | undefined {
    for (const segment of this.segments) {
      if (segment.damage === undefined || segment.first + segment.records !== rn) continue;
      const { offset, problem } = segment.damage;
      segment.damage = undefined;
      this.records--;
      this.damageLeft--;
      if (this.options.onCorrupt === 'error') throw corruptSegmentError(segment.file, offset, problem);
      return new LostRecords(1, segment.file, offset, `${problem}; the records after it in this file are lost (at least one; how many is not known)`);
    }
    return undefined;
  }

  private shiftCache(): unknown {
    const value = this.cache[this.cacheHead];
    this.cache[this.cacheHead] = undefined;
    this.cacheBytes -= this.cacheSizes[this.cacheHead]!;
    this.cacheHead++;
    this.cacheStart++;
    if (this.cacheHead > 1024 && this.cacheHead * 2 > this.cache.length) {
      this.cache = this.cache.slice(this.cacheHead);
      this.cacheSizes = this.cacheSizes.slice(this.cacheHead);
      this.cacheHead = 0;
    }
    return value;
  }

  private delivered(rn: number, value: unknown): unknown {
    this.cursor = rn + 1;
    this.records--;
    this.acks.deliver(rn);
    if (rn < this.deliveredBefore) this.redelivered++;
    if (this.options.ack === 'delivered') this.ack(1);
    return value;
  }

  private skipGaps(rn: number): number {
    return this.acks.skipGap(rn);
  }

  /**
   * The segment and block holding `rn`. Reads go forward, so the walk starts where the last one
   * ended when it can: a backlog of many blocks costs one step per block, not a walk from the start.
   */
  private locate(rn: number): { segment: DurableSegment; block: number; blockFirst: number } | undefined {
    const hint = this.located;
    const start = hint !== undefined && hint.blockFirst <= rn ? this.segments.indexOf(hint.segment) : -1;
    for (let index = Math.max(0, start); index < this.segments.length; index++) {
      const segment = this.segments[index]!;
      if (rn < segment.first || rn >= segment.first + segment.records) continue;
      const fromHint = index === start && hint !== undefined;
      let block = fromHint ? hint.block : 0;
      let first = fromHint ? hint.blockFirst : segment.first;
      for (; block < segment.blockCounts.length; block++) {
        const count = segment.blockCounts[block]!;
        if (rn < first + count) {
          this.located = { segment, block, blockFirst: first };
          return this.located;
        }
        first += count;
      }
    }
    if (start > 0) {
      this.located = undefined;
      return this.locate(rn);
    }
    return undefined;
  }

  /** A block's records, uncompressed, from its bytes (framing, size and sync marker checked): throws a Corruption. */
  private blockFromBytes(bytes: Buffer, offset: number, segment: DurableSegment): Buffer {
    const frame = parseBlockHeader(bytes, 0, bytes.length);
    if (isProblem(frame)) throw new Corruption(offset + frame.offset, frame.problem, 'block');
    if (frame.end !== bytes.length) {
      throw new Corruption(offset, `the block size says ${frame.end} bytes with its framing, the index ${bytes.length}`, 'block');
    }
    const badSync = checkSync(bytes, frame, segment.sync);
    if (badSync !== undefined) throw new Corruption(offset + badSync.offset, badSync.problem, 'block');
    const data = blockData(bytes, frame, segment.codec);
    if (isProblem(data)) throw new Corruption(offset + data.offset, data.problem, 'block');
    return data;
  }

  /** Makes the block the one being read, positioned at `rn`: the records before it are decoded and passed over. */
  private seat(segment: DurableSegment, block: number, blockFirst: number, data: Buffer, rn: number): void {
    const state: ReadState = { segment, block, data, pos: 0, rn: blockFirst, end: blockFirst + segment.blockCounts[block]! };
    while (state.rn < rn) {
      const decoded = decodeRecord(this.codec, data, state.pos, true);
      if (decoded.offset < 0) break;
      state.pos = decoded.offset;
      state.rn++;
    }
    this.read = state;
  }

  private async load(segment: DurableSegment, block: number, blockFirst: number, start: number, end: number, rn: number): Promise<void> {
    try {
      if (this.readFd?.segment !== segment) {
        this.closeReadFd();
        this.readFd = { segment, fd: this.fs.openSync(segment.file, READ_FLAGS) };
      }
      const buffer = Buffer.allocUnsafe(end - start);
      let got = 0;
      while (got < buffer.length) {
        const fd = this.readFd.fd;
        const n = await this.track(fd, fsAsync.read(this.fs, fd, buffer, got, buffer.length - got, start + got));
        if (n === 0) throw new Corruption(start + got, 'the file is shorter than its blocks', 'rest-of-segment');
        got += n;
      }
      if (this.closed) return;
      const data = this.blockFromBytes(buffer, start, segment);
      this.seat(segment, block, blockFirst, data, rn);
    } catch (err) {
      if (this.closed) return;
      if (err instanceof Corruption) {
        const lost = this.corrupt(segment, start, err.message, blockFirst + segment.blockCounts[block]! - rn);
        if (lost !== undefined) this.pendingLost = lost;
      } else if (isSystemError(err)) {
        this.readFailure = ioError('reading a segment', segment.file, err);
      } else {
        this.readFailure = err as Error;
      }
    } finally {
      this.loading = undefined;
      this.scheduleRecovered();
    }
  }

  private pendingLost: LostRecords | undefined;

  /** Damage met while reading: the error, or (onCorrupt 'skip') the records lost, skipped over and made a gap. */
  private corrupt(segment: DurableSegment, offset: number, problem: string, count: number): LostRecords | undefined {
    if (this.options.onCorrupt === 'error') {
      this.readFailure = corruptSegmentError(segment.file, offset, problem);
      return undefined;
    }
    const rn = this.cursor;
    this.acks.addGap(rn, rn + count);
    this.cursor = rn + count;
    this.records -= count;
    this.read = undefined;
    return new LostRecords(count, segment.file, offset, problem);
  }

  /** Lets the channel take what `next()` gave as WAIT: a LostRecords found while loading comes first. */
  takeLost(): LostRecords | undefined {
    const lost = this.pendingLost;
    this.pendingLost = undefined;
    return lost;
  }

  private takeReadFailure(): Error {
    const err = this.readFailure ?? new Error('hopper-streams: reading failed');
    this.readFailure = undefined;
    return err;
  }

  private closeReadFd(): void {
    if (this.readFd === undefined) return;
    this.closeFd(this.readFd.fd);
    this.readFd = undefined;
  }

  private scheduleRecovered(): void {
    if (this.recoveryScheduled || this.closed) return;
    this.recoveryScheduled = true;
    this.readerWaiting = false;
    process.nextTick(() => {
      this.recoveryScheduled = false;
      if (!this.closed) this.hooks.onRecovered();
    });
  }

  /** A durable channel never drops a segment to make room. */
  dropOldest(): undefined {
    return undefined;
  }

  private fail(err: Error): void {
    if (this.failed !== undefined) return;
    this.failed = err;
    this.committer.stop();
    this.committer.failAll(err);
    this.hooks.onFailed(err);
  }

  /** Asynchronous operations under way per fd: an fd is closed only once none is (see closeFd). */
  private readonly busyFds = new Map<number, number>();
  /** Fds to close once their operations end. */
  private readonly closeLater = new Set<number>();

  /** Counts `operation` as under way on `fd` until it settles. */
  private async track<T>(fd: number, operation: Promise<T>): Promise<T> {
    this.busyFds.set(fd, (this.busyFds.get(fd) ?? 0) + 1);
    try {
      return await operation;
    } finally {
      const left = (this.busyFds.get(fd) ?? 1) - 1;
      if (left > 0) this.busyFds.set(fd, left);
      else {
        this.busyFds.delete(fd);
        if (this.closeLater.delete(fd)) closeQuietly(this.fs, fd);
      }
    }
  }

  /**
   * Closes an fd, or, while an asynchronous operation on it is queued or running on the thread
   * pool, once it ends: a number closed under a queued operation can be reused by the next open
   * (another segment, another channel's file), and the operation would then write to that file.
   */
  private closeFd(fd: number): void {
    if (this.busyFds.has(fd)) this.closeLater.add(fd);
    else closeQuietly(this.fs, fd);
  }

  /** Resolves once no background operation is under way. */
  async idle(): Promise<void> {
    for (;;) {
      const busy = [this.writing, this.loading, this.ledgerWriting, ...this.removals].filter((p) => p !== undefined);
      if (busy.length === 0) return;
      await Promise.allSettled(busy);
    }
  }

  /**
   * Close, destroy and exit (§4.4): callbacks still waiting fail with ERR_STREAM_DESTROYED; the
   * bytes waiting are written, one synchronous commit (not with 'never'), the ledger file written
   * synchronously, acknowledged segments removed, fds closed. Unacknowledged records stay for the
   * next open. Never throws for a file operation: what failed is handed back.
   */
  close(): FaultEvent[] {
    if (this.closed) return [];
    const faults: FaultEvent[] = [];
    const fs = this.fs;
    this.committer.stop();
    this.retry.stop();
    if (this.ledgerArmed) {
      const clock = fs.retryClock;
      if (clock) clock.clearTimeout(this.ledgerTimer);
      else clearTimeout(this.ledgerTimer as NodeJS.Timeout);
      this.ledgerArmed = false;
    }
    const sync = this.options.fsync !== 'never';
    let intact = this.failed === undefined;
    if (intact) {
      // Only what reaches the disk here is settled: records still in the block (a segment that
      // could not be created) or in a block that could not be written are not durable.
      let written = this.committer.written;
      try {
        this.sealBlock();
        while (this.pending.length > 0) {
          const block = this.pending[0]!;
          // A block in flight is written again, with the same bytes at the same place.
          if (!block.done || block === this.inFlight) writeAll(fs, block.segment.fd!, block.parts, block.length, block.position);
          if (!block.done) this.pendingTotal -= block.length;
          block.segment.writtenSize = Math.max(block.segment.writtenSize, block.position + block.length);
          written = block.end;
          this.pending.shift();
        }
        if (sync) {
          let linked = false;
          for (const segment of this.segments) {
            if (segment.fd !== undefined && segment.writtenSize > segment.syncedSize) fs.fdatasyncSync(segment.fd);
            segment.syncedSize = segment.writtenSize;
            linked ||= segment.linkedUnsynced;
            segment.linkedUnsynced = false;
          }
          if (linked) fsyncDirSync(fs, this.directory.path);
        }
        this.committer.settle(written);
        if (this.builder.count > 0 || this.writeFault !== undefined) intact = false;
      } catch (err) {
        intact = false;
        faults.push({ operation: 'write', file: this.directory.path, error: asError(err, 'writing at close', this.directory.path) });
      }
    }
    this.closed = true;
    this.committer.failAll(destroyedError());
    if (intact) {
      try {
        writeLedgerFileSync(fs, this.directory, this.ledgerState(), sync);
        this.ledgerAcked = this.acks.acked;
        for (const segment of [...this.segments]) {
          if (segment.removing || segment.first + segment.records > this.ledgerAcked) continue;
          if (segment.fd !== undefined) this.closeFd(segment.fd);
          segment.fd = undefined;
          try {
            unlinkOurs(fs, this.directory, segment);
          } catch (err) {
            faults.push({ operation: 'remove', file: segment.file, error: asError(err, 'removing a segment', segment.file) });
          }
        }
      } catch (err) {
        faults.push({ operation: 'write', file: this.directory.path, error: asError(err, 'writing the ledger file', this.directory.path) });
      }
    }
    for (const segment of this.segments) {
      if (segment.fd !== undefined) this.closeFd(segment.fd);
      segment.fd = undefined;
    }
    this.closeReadFd();
    this.builder.clear();
    this.cache = [];
    this.cacheSizes = [];
    this.cacheHead = 0;
    this.cacheBytes = 0;
    return faults;
  }
}

function asError(err: unknown, operation: string, file: string): Error {
  if (isSystemError(err)) return ioError(operation, file, err);
  return err instanceof Error ? err : new Error(String(err));
}

export type { SegmentEvent, TornReport };
