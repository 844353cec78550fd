import type { BlockReader } from './block-reader.js';
import type { Closer, SegmentDirectory, SegmentFileSystem } from './io.js';
import type { Segment } from './ledger.js';
import { judgeOpening, newOpening, openAsync, openSync, type Opening } from './open.js';
import type { ReadAhead } from './read-ahead.js';

// The file of the segment the reader reads: opened (open.ts) synchronously or on the thread pool,
// its descriptor kept once judged sound, closed when the reader lets go of it.

/** What the file asks of the reader. */
export interface ReaderFilePeers {
  /** Closes the file being read and lets go of its read-ahead (SegmentReader.closeFile). */
  closeFile(): void;
}

export class ReaderFile {
  fd: number | undefined;
  /** The file of the segment being read was opened and checked (a segment read from memory is not, until a block is on disk). */
  opened = false;
  /** The file of the segment being read is being opened in the background (see SegmentReader.loadBlockAhead). */
  private opening: Opening | undefined;

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly directory: SegmentDirectory,
    private readonly closer: Closer,
    private readonly blocks: BlockReader,
    private readonly ahead: ReadAhead,
    private readonly peers: ReaderFilePeers,
  ) {}

  /** Opens the file of `segment` and checks it, synchronously: see SegmentReader.open. */
  openSync(segment: Segment): void {
    this.opened = true;
    const opening = newOpening(segment, 'done');
    openSync(this.fs, this.directory, opening);
    this.check(opening, () => this.blocks.bytes(0, segment.header.length, segment.header.length));
  }

  /**
   * Opens the file of `segment` on the thread pool (open.ts). {@link check} runs on what it found
   * once it is done ({@link landedOpen}); `landed` is called then.
   */
  openAhead(segment: Segment, landed: () => void): void {
    this.opened = true;
    const opening = newOpening(segment, 'opening');
    this.opening = opening;
    const task = openAsync(this.fs, this.directory, opening, () => this.opening === opening).catch((err: unknown) => {
      // A bug: thrown on the event loop by check(), as a failed synchronous open would be.
      opening.failed = { step: 'directory', error: err };
    });
    this.ahead.track(task, () => {
      opening.state = 'done';
      // Let go meanwhile (the segment was removed, or the log closed): its descriptor goes too.
      if (this.opening !== opening) {
        if (opening.fd !== undefined) this.closer.close(opening.fd);
        return;
      }
      landed();
    });
  }

  /** False while an open on the thread pool is under way; checks what one found once it is done (throws as {@link check} does). */
  landedOpen(): boolean {
    const opening = this.opening;
    if (opening !== undefined) {
      if (opening.state === 'opening') return false;
      this.opening = undefined;
      this.check(opening);
    }
    return true;
  }

  /**
   * Keeps the descriptor an open gave, or throws what it found wrong (see judgeOpening): a
   * Corruption, or ERR_HOPPER_IO. The segment stays the one being read, where it was: a failed
   * open is tried again from there (its first blocks may have come from memory: reading it again
   * from its start would deliver them twice).
   */
  private check(opening: Opening, header: () => Buffer = () => opening.header!): void {
    if (opening.fd !== undefined) {
      this.fd = opening.fd;
      this.blocks.reset(opening.fd);
    }
    const failure = judgeOpening(opening, header);
    if (failure === undefined) return;
    if (failure.descriptor === 'close') this.peers.closeFile();
    // Not opened: the next call opens again.
    else if (this.fd === undefined) this.opened = false;
    throw failure.error;
  }

  /**
   * Closes the file, if open. A descriptor a read ahead is using is closed when that read ends:
   * closed now, its number could be reused before the read lands.
   */
  close(): void {
    if (this.fd !== undefined) {
      this.ahead.closeWhenIdle(this.fd);
      this.fd = undefined;
    }
    this.opened = false;
    // An open under way closes what it opened when it lands.
    this.opening = undefined;
  }
}
