import path from 'node:path';
import { OWNER_KEY, encodeHeader } from '../ocf.js';
import { SegmentCreator, SyncMarkers, type Created } from './create.js';
import { DURABLE_KEY, FIRST_KEY } from './durable-scan.js';
import type { DurableSegment, DurableState } from './durable-state.js';
import { segmentFileName } from './ledger.js';

// The durable log's segment files, as the writer makes them: a new segment planned when a block
// needs one (its number, name and header chosen: no I/O), its file made before its first block is
// written, on the thread pool (create.ts: C1 a draft with the header, C2 linked into place, C3 the
// draft unlinked) or, for the last resort and the close, on the event loop; and the numbers of
// planned segments moved on when a foreign file holds a planned name. Segments are made in order:
// their numbers order them by record at recovery.

export class DurableSegmentFiles {
  /** The segment whose file is being made in the background, if any. */
  private creating: DurableSegment | undefined;
  private readonly creator: SegmentCreator;
  /** Sync markers for new segments, made ahead off the event loop. */
  private readonly markers = new SyncMarkers();

  constructor(private readonly log: DurableState) {
    // Numbers come from the log's state: a foreign file under a planned name makes it take the next.
    this.creator = new SegmentCreator(log.fs, log.directory, log);
  }

  /**
   * A new segment starting at record `first`, planned: its number, name and header chosen, its
   * blocks assigned to it from now on; no file yet (see {@link create}).
   */
  plan(first: number): DurableSegment {
    const log = this.log;
    const sync = this.markers.next();
    const header = encodeHeader(log.schemaJson, log.options.codec, sync, {
      [OWNER_KEY]: log.options.channel,
      [DURABLE_KEY]: '1',
      [FIRST_KEY]: String(first),
    });
    const seq = log.nextSeq++;
    const segment: DurableSegment = {
      seq,
      file: path.join(log.directory.path, segmentFileName(seq)),
      dev: 0,
      ino: 0,
      first,
      records: 0,
      size: header.length,
      writtenSize: 0,
      syncedSize: 0,
      headerLength: header.length,
      blockEnds: [],
      blockCounts: [],
      sync,
      codec: log.options.codec,
      created: false,
      header,
      fd: undefined,
      sealed: false,
      linkedUnsynced: false,
      removing: false,
    };
    log.segments.push(segment);
    log.fileBytes += header.length;
    return segment;
  }

  /**
   * Makes `segment`'s file on the thread pool (SegmentCreator.createAsync), before its first block
   * is written. False when it did not because the log closed meanwhile (what it made is removed);
   * true when it did, or when the last resort took the creation over ({@link takeOver}). Throws
   * ERR_HOPPER_IO when it failed.
   */
  async create(segment: DurableSegment): Promise<boolean> {
    const planned = segment.seq;
    this.creating = segment;
    try {
      const header = segment.header!;
      const made = await this.creator.createAsync(segment, { parts: [header], length: header.length }, (created) => this.made(segment, created, planned));
      return made || !this.log.closed;
    } finally {
      if (this.creating === segment) this.creating = undefined;
    }
  }

  /** {@link create} on the event loop: the last resort, and the close. Throws ERR_HOPPER_IO. */
  createSync(segment: DurableSegment): void {
    const planned = segment.seq;
    const header = segment.header!;
    this.made(segment, this.creator.createSync(segment, [{ parts: [header], length: header.length }]), planned);
  }

  /**
   * The last resort makes `segment`'s file itself (a stalled disk): a creation of it under way in
   * the background is stopped, and what it made so far removed (SegmentCreator.cancel).
   */
  takeOver(segment: DurableSegment): void {
    if (segment !== this.creating) return;
    this.creator.cancel();
    this.creating = undefined;
  }

  /**
   * At close, first: no creation goes on in the background past its next step, and what one under
   * way made so far is removed (SegmentCreator.close); the close makes the file again.
   */
  stop(): void {
    this.creator.close();
  }

  /**
   * `segment`'s file exists: its blocks can be written. Linked since the last directory fsync (the
   * commit that covers its records syncs the directory first). A foreign file under its planned
   * name gave it a later number: the segments planned after it (none of which is made: they are
   * made in order) take numbers after that one, so that numbers still order them by record.
   */
  private made(segment: DurableSegment, made: Created, planned: number): void {
    const log = this.log;
    segment.fd = made.fd;
    segment.dev = made.dev;
    segment.ino = made.ino;
    segment.created = true;
    segment.header = undefined;
    segment.writtenSize = Math.max(segment.writtenSize, segment.headerLength);
    segment.linkedUnsynced = true;
    if (segment.seq === planned) return;
    for (const later of log.segments.slice(log.segments.indexOf(segment) + 1)) {
      if (later.created) continue;
      later.seq = log.nextSeq++;
      later.file = path.join(log.directory.path, segmentFileName(later.seq));
    }
  }
}
