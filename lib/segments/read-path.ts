import { HopperError, corruptSegmentError, ioError } from '../errors.js';
import { Ledger, type Segment } from './ledger.js';
import type { LogState } from './log-state.js';
import { Corruption, LostRecords, WAIT } from './results.js';

// The read path: the next record in write order, from a segment file (read ahead on the thread
// pool), from bytes still waiting for the disk, or from the block being filled; which segment is
// read next, and when one read through goes; what corruption costs (the `onCorrupt` policy) and
// what a failed read costs (a retry, until reads have failed for long enough).

/** What the read path asks of the rest of the log. */
export interface ReadPathPeers {
  /** Removes a segment read through. */
  removeSegment(segment: Segment): void;
  /** True while disk writes are failing. */
  writesFailing(): boolean;
}

export class ReadPath {
  /** The reader asked for a block still waiting for the disk: tell the channel when bytes land. */
  private readerWaiting = false;

  constructor(
    private readonly log: LogState,
    private readonly peers: ReadPathPeers,
  ) {}

  /** See SegmentLog.next. */
  next(): unknown {
    const log = this.log;
    const reader = log.reader;
    try {
      if (reader.left === 0) {
        const loaded = this.loadBlock();
        if (loaded === 'wait') {
          this.readerWaiting = true;
          return WAIT;
        }
        if (loaded === 'in-block') return this.nextFromBlock();
      }
      const value = reader.next();
      log.records--;
      if (reader.left === 0) {
        reader.endBlock();
        this.afterBlock();
      }
      if (log.retry.failingReads !== 0) this.readsWork();
      return value;
    } catch (err) {
      // The segment reader's Corruption is its typed failure: it becomes a loss (or, with
      // 'error', ERR_HOPPER_CORRUPT_SEGMENT) here and goes no further.
      if (err instanceof Corruption) return this.corruption(err);
      if (HopperError.is(err, 'ERR_HOPPER_IO')) return this.readFailed(err);
      throw err;
    }
  }

  /**
   * A reader waiting for bytes on their way to the disk is told, on the next tick: the news may
   * come from inside an append, and the channel is not entered again from there.
   */
  wakeReader(): void {
    if (!this.readerWaiting) return;
    this.readerWaiting = false;
    this.log.news();
  }

  /** The next record, from the front of the block being filled: the reader has read every file. */
  private nextFromBlock(): unknown {
    const log = this.log;
    const value = log.block.shift();
    log.records--;
    if (log.retry.failingReads !== 0) this.readsWork();
    // Everything is read: a segment still open for writing holds nothing unread, so it can go.
    const active = log.ledger.active();
    if (log.records === 0 && active !== undefined) this.peers.removeSegment(active);
    return value;
  }

  /**
   * Has the reader load the next block from the files: 'in-block' when every block has been read
   * and the next records are in the block being filled; 'wait' when the next block is still on its
   * way to the disk (the reader is told when it lands).
   */
  private loadBlock(): 'loaded' | 'in-block' | 'wait' {
    const reader = this.log.reader;
    let segment = reader.segment ?? this.startReading();
    if (segment === 'wait') return 'wait';
    if (segment === undefined) return 'in-block';
    while (!reader.hasBlock()) {
      // Caught up with the segment being written: what follows is in the block being filled.
      if (!segment.sealed) return 'in-block';
      this.peers.removeSegment(segment);
      segment = this.startReading();
      if (segment === 'wait') return 'wait';
      if (segment === undefined) return 'in-block';
    }
    const end = segment.blockEnds[reader.block]!;
    // Still waiting for the disk (or being written): read from memory, as the writer holds it.
    const pending = Ledger.pendingBlock(segment, reader.blockStart, end);
    if (pending !== undefined) reader.loadBlockFrom(pending);
    else if (this.log.writeThrough) reader.loadBlock();
    // Read ahead on the thread pool: waited for only when the reader is faster than the disk.
    else return reader.loadBlockAhead(this.readLanded);
    return 'loaded';
  }

  /** After the last record of a block: free the segment as soon as it has been read through. */
  private afterBlock(): void {
    const reader = this.log.reader;
    if (reader.hasBlock()) return;
    const segment = reader.segment!;
    // A sealed segment goes once read through; the active one too once every disk record is read,
    // so an idle channel holds no files.
    if (segment.sealed || this.log.records === 0) this.peers.removeSegment(segment);
  }

  /**
   * Opens the oldest segment with blocks to read; undefined when there is none (the records are in
   * the block being filled), 'wait' when its file is not created yet.
   */
  private startReading(): Segment | undefined | 'wait' {
    const { directory, ledger, reader } = this.log;
    const segment = ledger.oldestUnread();
    if (segment === undefined || segment.blockEnds.length === 0) return undefined;
    // Not created yet: its blocks are read from memory; the file is opened once one is on disk.
    if (!segment.created) {
      reader.begin(segment);
      return segment;
    }
    // Through a directory that was swapped (for a symlink, or another directory), nothing is read.
    if (!directory.intact())
      throw directory.verify() ?? ioError('opening a segment for reading', segment.file, new Error('the channel directory was replaced'));
    reader.open(segment);
    return segment;
  }

  /**
   * Corruption found in the segment being read: with 'error', the error; with 'skip', step over
   * what is damaged (the rest of the block, or the whole segment when its header or length is
   * wrong) using the block index kept while writing, and report exactly how many records were lost.
   */
  private corruption(found: Corruption): LostRecords {
    const log = this.log;
    const reader = log.reader;
    const segment = reader.segment!;
    if (log.options.onCorrupt === 'error') throw corruptSegmentError(segment.file, found.offset, found.problem);
    const lost = reader.skip(found);
    log.records -= lost;
    if (!reader.hasBlock() && (segment.sealed || log.records === 0)) {
      this.peers.removeSegment(segment);
    }
    return new LostRecords(lost, segment.file, found.offset, found.problem);
  }

  private readFailed(err: HopperError): typeof WAIT {
    const log = this.log;
    if (log.retry.readFailed()) throw err;
    log.hooks.onFault({ operation: 'read', file: err.file ?? log.directory.path, error: err });
    log.retry.schedule();
    return WAIT;
  }

  private readsWork(): void {
    this.log.retry.readsWork(this.peers.writesFailing());
  }

  /** A read ahead ended: a reader waiting for it is told. */
  private readLanded = (): void => {
    if (!this.log.closed) this.wakeReader();
  };
}
