import { destroyedError } from '../errors.js';
import { fsyncDir, fsyncDirSync, durableAsync } from './durable-io.js';
import { activeSegment, asError, type DurableSegment, type DurableState } from './durable-state.js';
import { unlinkOurs, unlinkOursAsync } from './io.js';
import { writeLedgerFile, writeLedgerFileSync, type LedgerState } from './ledger-file.js';
import type { FaultEvent } from './results.js';

// The commit and ledger side of the durable log: the commit's sync (segments, then the directory
// when a segment was linked), flush(), acknowledgements, the ledger file that holds the
// acknowledged position (written at most fsyncIntervalMs after it moved, one write at a time), and
// the removal of segments wholly acknowledged: ledger first, unlink after, then forget.

/** What the commit and ledger side asks of the rest of the log. */
export interface DurableLedgerPeers {
  /** Hands the block being filled to the writer. */
  sealBlock(): void;
  /** The channel fails for good. */
  fail(err: Error): void;
  /** A segment is about to be removed: the reader lets go of its fd. */
  letGo(segment: DurableSegment): void;
}

export class DurableLedger {
  /** A commit's sync is under way: fds it uses stay open. */
  private syncing = false;
  /** The acknowledged position the last durable ledger file holds. */
  private ledgerAcked: number;
  private ledgerTimer: unknown;
  private ledgerArmed = false;
  private ledgerWriting: Promise<void> | undefined;
  /** The commit's sync under way ({@link syncAll}), if any. */
  private syncWork: Promise<void> | undefined;
  private ledgerDirty = false;
  private readonly removals = new Set<Promise<void>>();

  constructor(
    private readonly log: DurableState,
    private readonly peers: DurableLedgerPeers,
  ) {
    this.ledgerAcked = log.acks.acked;
  }

  /** The background ledger write and removals under way (for idle()). */
  get busy(): Array<Promise<void> | undefined> {
    return [this.ledgerWriting, this.syncWork, ...this.removals];
  }

  /** The commit's sync: every segment with unsynced bytes, then the directory if a segment was linked. */
  syncAll(): Promise<void> {
    const work = this.syncEverything();
    // Under way until settled: close() waits for it (the directory's fd it opens included).
    this.syncWork = work;
    const settled = (): void => {
      if (this.syncWork === work) this.syncWork = undefined;
    };
    work.then(settled, settled);
    return work;
  }

  private async syncEverything(): Promise<void> {
    this.syncing = true;
    try {
      await this.syncWritten();
    } finally {
      this.syncing = false;
    }
  }

  private async syncWritten(): Promise<void> {
    const log = this.log;
    const work: Array<{ segment: DurableSegment; size: number; fd: number }> = [];
    let linked = false;
    for (const segment of log.segments) {
      if (segment.fd !== undefined && segment.writtenSize > segment.syncedSize) work.push({ segment, size: segment.writtenSize, fd: segment.fd });
      if (segment.linkedUnsynced) {
        linked = true;
        segment.linkedUnsynced = false;
      }
    }
    for (const { segment, size, fd } of work) {
      await log.fds.track(fd, durableAsync.fdatasync(log.fs, fd));
      segment.syncedSize = Math.max(segment.syncedSize, size);
    }
    if (linked) await fsyncDir(log.fs, log.directory.path);
  }

  /** Sealed segments wholly written and synced (or any policy 'never' wrote through) let go of their fd. */
  closeSyncedSealed(): void {
    const log = this.log;
    for (const segment of log.segments) {
      if (!segment.sealed || segment.fd === undefined || segment.writtenSize < segment.size) continue;
      if (log.options.fsync !== 'never' && segment.syncedSize < segment.size) continue;
      if (log.pending.some((block) => block.segment === segment)) continue;
      log.fds.close(segment.fd);
      segment.fd = undefined;
    }
    this.removeAcknowledged();
  }

  /**
   * Resolves once every record accepted before the call is durable under the policy, and the
   * acknowledged position is in the ledger file.
   */
  async flush(): Promise<void> {
    const log = this.log;
    if (log.failed !== undefined) throw log.failed;
    if (log.closed) return;
    this.peers.sealBlock();
    await log.committer.flush();
    if (this.ledgerAcked < log.acks.acked || this.ledgerDirty) await this.writeLedgerNow();
  }

  /** Acknowledges `count` delivered records (the caller checked `count` against `unacknowledged`). */
  ack(count: number): boolean {
    if (!this.log.acks.ack(count)) return false;
    if (count > 0) this.scheduleLedger();
    return true;
  }

  /** A ledger write at most `fsyncIntervalMs` after acked first moved. */
  private scheduleLedger(): void {
    const log = this.log;
    this.ledgerDirty = true;
    if (this.ledgerArmed || log.closed) return;
    this.ledgerArmed = true;
    const clock = log.fs.retryClock;
    const run = (): void => {
      this.ledgerArmed = false;
      if (!log.closed && log.failed === undefined) void this.writeLedgerNow().catch(() => {});
    };
    this.ledgerTimer = clock ? clock.setTimeout(run, log.options.fsyncIntervalMs) : setTimeout(run, log.options.fsyncIntervalMs);
  }

  private ledgerState(): LedgerState {
    const log = this.log;
    return {
      channel: log.options.channel,
      acked: log.acks.acked,
      delivered: Math.max(log.acks.delivered, log.counters.deliveredBefore),
      synced: log.options.fsync === 'never' ? 0 : log.committer.durable,
      nextSeq: log.nextSeq,
      writtenAt: new Date().toISOString(),
    };
  }

  /** R1-R6: the ledger file with the acknowledged position; then R7-R8 for segments below it. One write at a time. */
  private async writeLedgerNow(): Promise<void> {
    const log = this.log;
    while (this.ledgerWriting !== undefined) await this.ledgerWriting;
    // The write waited on may have failed the channel: a flush() waiting here must not resolve
    // as though the acknowledged position had reached the disk.
    if (log.failed !== undefined) throw log.failed;
    if (log.closed) return;
    if (!this.ledgerDirty && this.ledgerAcked >= log.acks.acked) return;
    this.ledgerDirty = false;
    const state = this.ledgerState();
    // Checked again right before the rename: a write still under way when the log closed (close()
    // writes the newest state itself) must not put an older one in its place.
    const place = {
      path: log.directory.path,
      draftDir: log.directory.draftDir,
      verify: () => (log.closed ? destroyedError() : log.directory.verify()),
      verifyAsync: async () => {
        const lost = await log.directory.verifyAsync();
        return log.closed ? destroyedError() : lost;
      },
    };
    const write = writeLedgerFile(log.fs, place, state, log.options.fsync !== 'never');
    this.ledgerWriting = write.then(
      () => undefined,
      () => undefined,
    );
    try {
      await write;
    } catch (err) {
      this.ledgerWriting = undefined;
      if (log.closed) return;
      const error = asError(err, 'writing the ledger file', log.directory.path);
      this.peers.fail(error);
      throw error;
    }
    this.ledgerWriting = undefined;
    this.ledgerAcked = Math.max(this.ledgerAcked, state.acked);
    this.removeAcknowledged();
  }

  /** R7-R8: unlinks segments whose records are all below the durable acknowledged position, then forgets them. */
  private removeAcknowledged(): void {
    const log = this.log;
    if (log.closed) return;
    for (const segment of [...log.segments]) {
      if (segment.removing || segment.first + segment.records > this.ledgerAcked) continue;
      // Its file not made yet (or its blocks not written): nothing to remove yet.
      if (!segment.created || log.pending.some((block) => block.segment === segment)) continue;
      if (segment === activeSegment(log)) {
        if (log.builder.count > 0) continue;
        segment.sealed = true;
      }
      if (segment.fd !== undefined && this.syncing) continue;
      if (segment.fd !== undefined) {
        // Its bytes are all acknowledged: nothing needs them synced any more.
        log.fds.close(segment.fd);
        segment.fd = undefined;
      }
      this.peers.letGo(segment);
      segment.removing = true;
      const removal = unlinkOursAsync(log.fs, log.directory, segment).then(
        () => this.forget(segment),
        (err: unknown) => {
          segment.removing = false;
          if (!log.closed) log.hooks.onFault({ operation: 'remove', file: segment.file, error: asError(err, 'removing a segment', segment.file) });
        },
      );
      this.removals.add(removal);
      void removal.finally(() => this.removals.delete(removal));
    }
  }

  private forget(segment: DurableSegment): void {
    const log = this.log;
    const index = log.segments.indexOf(segment);
    if (index < 0) return;
    log.segments.splice(index, 1);
    log.fileBytes -= segment.size;
    if (!log.closed) {
      log.hooks.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
      log.news();
    }
  }

  /** At close: the ledger timer stops (close writes the ledger file itself). */
  stopTimer(): void {
    if (!this.ledgerArmed) return;
    const clock = this.log.fs.retryClock;
    if (clock) clock.clearTimeout(this.ledgerTimer);
    else clearTimeout(this.ledgerTimer as NodeJS.Timeout);
    this.ledgerArmed = false;
  }

  /** At close: every segment's written bytes synced, then the directory if a segment was linked. Throws when one fails. */
  syncSync(): void {
    const log = this.log;
    let linked = false;
    for (const segment of log.segments) {
      if (segment.fd !== undefined && segment.writtenSize > segment.syncedSize) log.fs.fdatasyncSync(segment.fd);
      segment.syncedSize = segment.writtenSize;
      linked ||= segment.linkedUnsynced;
      segment.linkedUnsynced = false;
    }
    if (linked) fsyncDirSync(log.fs, log.directory.path);
  }

  /**
   * At close, once all is written: the ledger file written synchronously, then the segments wholly
   * acknowledged removed. What failed is added to `faults`.
   */
  closeLedger(faults: FaultEvent[]): void {
    const log = this.log;
    try {
      writeLedgerFileSync(log.fs, log.directory, this.ledgerState(), log.options.fsync !== 'never');
      this.ledgerAcked = log.acks.acked;
      for (const segment of [...log.segments]) {
        if (segment.removing || !segment.created || segment.first + segment.records > this.ledgerAcked) continue;
        if (segment.fd !== undefined) log.fds.close(segment.fd);
        segment.fd = undefined;
        try {
          unlinkOurs(log.fs, log.directory, segment);
          // Gone: stats() after close counts what is left for the next open.
          this.forget(segment);
        } catch (err) {
          faults.push({ operation: 'remove', file: segment.file, error: asError(err, 'removing a segment', segment.file) });
        }
      }
    } catch (err) {
      faults.push({ operation: 'write', file: log.directory.path, error: asError(err, 'writing the ledger file', log.directory.path) });
    }
  }
}
