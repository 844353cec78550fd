import { ioError } from '../errors.js';
import { CLOSE_ATTEMPTS, closeQuietly, isSystemError, unlinkOurs, unlinkOursAsync } from './io.js';
import type { Segment } from './ledger.js';
import type { LogState } from './log-state.js';
import type { DroppedSegment, FaultEvent } from './results.js';

// Removal of segments: those read through (in the background, or at once when the log writes
// through), the oldest one dropped to make room ('drop-oldest'), failed removals tried again by the
// retry timer, and every file at close. A segment is forgotten (and stops counting against the
// caps) only once its file is gone; only a file whose identity is the one created is removed.

/** What removals ask of the rest of the log. */
export interface RemovalsPeers {
  /** A segment is gone, or never reached the disk: room a failing write may have waited for. */
  roomMade(): void;
}

export class Removals {
  /** Background removals under way. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Set while removing a segment to make room fails ('drop-oldest'): announced once per run. */
  private dropFailing = false;

  constructor(
    private readonly log: LogState,
    private readonly peers: RemovalsPeers,
  ) {}

  /** Resolves once the background removals under way now have ended; undefined when there are none. */
  settled(): Promise<unknown> | undefined {
    return this.inFlight.size === 0 ? undefined : Promise.all(this.inFlight);
  }

  /**
   * Removes a segment read through: at once when the log writes through, else in the background
   * (it counts against the caps, and is not read, until it is gone).
   */
  removeSegment(segment: Segment): void {
    const { ledger, reader, writer } = this.log;
    if (segment === reader.segment) reader.close();
    // Read through: no block goes to it any more.
    segment.sealed = true;
    // The writer is writing to it: removed once it lets go.
    if (writer.busy(segment)) {
      segment.readThrough = true;
      return;
    }
    segment.readThrough = false;
    // What still waits for the disk was read from memory: it need not be written any more.
    ledger.discard(segment);
    if (!segment.created) {
      // It never reached the disk: nothing to remove, and nothing to announce.
      ledger.forget(segment);
      this.peers.roomMade();
      return;
    }
    if (segment.writeFd !== undefined) {
      // Nothing writes to the descriptor (the writer let go). Closed at once, as once per segment:
      // a descriptor closed in the background could outlive the channel's close.
      closeQuietly(this.log.fs, segment.writeFd);
      segment.writeFd = undefined;
      segment.sealed = true;
    }
    if (!this.log.writeThrough) {
      this.removeInBackground(segment, true);
      return;
    }
    try {
      unlinkOurs(this.log.fs, this.log.directory, segment);
    } catch (err) {
      this.removalFailed(segment, err, true);
      return;
    }
    this.forget(segment);
    this.retry();
  }

  /** Segments read through while the writer used them go once it lets go of them. */
  removeLetGo(): void {
    const { ledger, writer } = this.log;
    for (const segment of [...ledger.segments]) if (segment.readThrough && !writer.busy(segment)) this.removeSegment(segment);
  }

  /** Failed removals are tried again (the retry timer, or a removal that worked). */
  retry(): void {
    const log = this.log;
    for (const segment of log.ledger.failedRemovals()) {
      if (segment.removing) continue;
      if (!log.writeThrough) {
        this.removeInBackground(segment, false);
        continue;
      }
      try {
        unlinkOurs(log.fs, log.directory, segment);
      } catch (err) {
        if (!isSystemError(err)) throw err;
        log.retry.schedule();
        continue;
      }
      this.forget(segment);
    }
  }

  /**
   * Deletes the oldest sealed segment the reader is not reading, to make room (the `'drop-oldest'`
   * policy). Returns where its records stood among the records still in the log (`offset`
   * records come before them), or undefined when no segment can go.
   */
  dropOldest(): DroppedSegment | undefined {
    const log = this.log;
    const { ledger, reader, writer } = log;
    const reading = reader.segment;
    // Not one the background task is writing: its bytes are on their way to the file.
    const victim = ledger.oldestDroppable(reading, (segment) => writer.busy(segment));
    if (victim === undefined) return undefined;
    // Records still unread before the victim: in the segment being read, and in segments the
    // background task is writing (they were skipped as victims); those read through hold none.
    let offset = 0;
    for (const segment of ledger.segments) {
      if (segment === victim) break;
      if (segment.removing || segment.removalFailed || segment.readThrough) continue;
      offset += segment === reading ? segment.records - reader.fromSegment : segment.records;
    }
    try {
      if (victim.writeFd !== undefined) {
        closeQuietly(log.fs, victim.writeFd);
        victim.writeFd = undefined;
      }
      // A segment still waiting for the disk as a whole has no file: its bytes are let go.
      if (victim.created) unlinkOurs(log.fs, log.directory, victim);
    } catch (err) {
      if (!isSystemError(err)) throw err;
      // Safe to answer "nothing can go": nothing was removed, the segment keeps its records, and
      // the caller applies its policy as for a full log. The next write that needs room tries
      // again; a run of such failures is announced once.
      if (!this.dropFailing) {
        this.dropFailing = true;
        log.hooks.onFault({ operation: 'remove', file: victim.file, error: ioError('removing a segment to make room', victim.file, err) });
      }
      return undefined;
    }
    this.dropFailing = false;
    log.records -= victim.records;
    this.forget(victim);
    return { offset, count: victim.records, file: victim.file };
  }

  /**
   * At close: closes every descriptor no background write uses and removes every file the log
   * created, emptying the ledger. Returns what it could not remove, and the segments read through
   * whose background removal it finished (to announce once every file is closed).
   */
  removeAll(): { leftovers: FaultEvent[]; readThrough: Segment[] } {
    const { fs, ledger, writer } = this.log;
    const leftovers: FaultEvent[] = [];
    const readThrough: Segment[] = [];
    for (const segment of ledger.clear()) {
      // A descriptor a background write is using is closed by the writer when that write ends:
      // closed now, its number could be reused by another file before the write lands.
      if (segment.writeFd !== undefined && !writer.busy(segment)) {
        closeQuietly(fs, segment.writeFd);
        segment.writeFd = undefined;
      }
      // A segment whose file was never created has nothing on disk.
      if (!segment.created) continue;
      const left = this.removeAtClose(segment);
      if (left !== undefined) leftovers.push(left);
      else if (segment.removing) readThrough.push(segment);
    }
    return { leftovers, readThrough };
  }

  /** Announces a segment as removed. */
  announce(segment: Segment): void {
    this.log.hooks.onSegment({ action: 'removed', file: segment.file, bytes: segment.size, records: segment.records });
  }

  /** Removes a file at close, trying a few times; returns the fault when it cannot go (it is left). */
  private removeAtClose(segment: Segment): FaultEvent | undefined {
    const { file } = segment;
    let error: unknown;
    for (let attempt = 0; attempt < CLOSE_ATTEMPTS; attempt++) {
      try {
        unlinkOurs(this.log.fs, this.log.directory, segment);
        return undefined;
      } catch (err) {
        // A system error (EBUSY, EIO...) leaves the file for the next open, which removes it as
        // stale; anything else is a bug, and goes on to the caller.
        if (!isSystemError(err)) throw err;
        error = err;
      }
    }
    return { operation: 'remove', file, error: ioError('removing a segment at close', file, error) };
  }

  /** Unlinks `segment` on the thread pool; forgets it once gone. `first`: a failure is announced. */
  private removeInBackground(segment: Segment, first: boolean): void {
    const log = this.log;
    segment.removing = true;
    const removal = unlinkOursAsync(log.fs, log.directory, segment).then(
      () => {
        segment.removing = false;
        if (log.closed) return;
        this.forget(segment);
        if (first) this.retry();
      },
      (err: unknown) => {
        segment.removing = false;
        if (log.closed) return;
        this.removalFailed(segment, err, first);
      },
    );
    this.inFlight.add(removal);
    void removal.finally(() => this.inFlight.delete(removal));
  }

  /** Delivery goes on; the file keeps counting against the caps until a retry succeeds. */
  private removalFailed(segment: Segment, err: unknown, first: boolean): void {
    segment.removalFailed = true;
    // Still failing: announced at its first failure; the timer tries again.
    if (first) this.log.hooks.onFault({ operation: 'remove', file: segment.file, error: ioError('removing a segment', segment.file, err) });
    this.log.retry.schedule();
  }

  private forget(segment: Segment): void {
    this.log.ledger.forget(segment);
    this.announce(segment);
    this.peers.roomMade();
  }
}
