import path from 'node:path';
import zlib from 'node:zlib';
import { ioError } from '../errors.js';
import { OWNER_KEY, encodeBlockHeader, encodeHeader } from '../ocf.js';
import type { BlockBuilder } from './block-builder.js';
import { SegmentCreator, SyncMarkers, type Created } from './create.js';
import { writeAll, writeAllAsync, type Closer, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import { joinChunks, segmentFileName, type Chunk, type Ledger, type Segment } from './ledger.js';

// The segment writer: plans where each block goes (the active segment, or a new one past
// `sealAt`), entering it in the ledger at once, and writes the bytes behind the caller's back:
// one task on libuv's thread pool creates segment files (create.ts: a draft linked into place,
// never over an existing file), writes the waiting blocks to them, gathered into large writes, and
// closes them once sealed. When the disk falls too far behind, the log has the writer write what
// waits synchronously (the last resort). It never reads, and never removes a segment (but one
// linked into place after the log closed, which the log could not know of).

export interface SegmentWriterOptions {
  /** Segment compression, written into each header. */
  codec: string;
  /** Channel name, written into each segment's metadata. */
  channel: string;
  /** Size past which a segment is sealed. */
  sealAt: number;
  /** Bytes gathered into one background write at most. */
  gatherBytes: number;
}

/** What the writer tells the log. */
export interface SegmentWriterEvents {
  /** A segment was sealed and all of it is on disk (its file closed for writing). */
  sealed(segment: Segment): void;
  /** Bytes reached the disk (`background`: written by the background task, not by {@link SegmentWriter.writeSync}): a fault is over. */
  written(background: boolean): void;
  /** A background write failed with ERR_HOPPER_IO: nothing more is written until {@link SegmentWriter.resume}. */
  failed(err: Error): void;
}

export class SegmentWriter {
  private readonly schemaJson: Buffer;
  /** Bytes a segment header takes. */
  readonly headerBytes: number;
  /** The background task, while it runs. */
  private task: Promise<void> | undefined;
  /** A background write failed: the task waits for resume(). */
  private failing = false;
  /** Sync markers for new segments, made ahead off the event loop. */
  private readonly markers = new SyncMarkers();
  private readonly creator: SegmentCreator;
  private closed = false;
  /** What each chunk waiting for the disk gives back to the block builder once written (see BlockBuilder.lease). */
  private readonly leases = new WeakMap<Chunk, () => void>();

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly directory: SegmentDirectory,
    private readonly ledger: Ledger,
    schema: unknown,
    private readonly options: SegmentWriterOptions,
    private readonly events: SegmentWriterEvents,
    private readonly closer: Closer,
  ) {
    this.schemaJson = Buffer.from(JSON.stringify(schema));
    this.headerBytes = this.encodeHeader(Buffer.alloc(16)).length;
    this.creator = new SegmentCreator(fs, directory, ledger);
  }

  /**
   * Enters the block in the ledger at the end of the active segment (planning a new one if there
   * is none) and hands its bytes to the background task; the block is then empty, and its buffers
   * belong to the writer (never written to again by anyone). Does no I/O.
   */
  enqueue(block: BlockBuilder): void {
    const ledger = this.ledger;
    let segment = ledger.active();
    if (segment === undefined) {
      const sync = this.markers.next();
      const header = this.encodeHeader(sync);
      const seq = ledger.nextSeq++;
      segment = {
        seq,
        file: path.join(this.directory.path, segmentFileName(seq)),
        sync,
        header,
        size: 0,
        records: 0,
        blockEnds: [],
        blockCounts: [],
        blockChecksums: [],
        sealed: false,
        writeFd: undefined,
        removalFailed: false,
        dev: 0,
        ino: 0,
        created: false,
        chunks: [],
        removing: false,
        readThrough: false,
      };
      ledger.add(segment);
      ledger.addHeader(segment);
    }
    const parts: Buffer[] = [];
    const data = block.parts(this.options.codec);
    let dataLength = 0;
    let checksum = 0;
    for (const part of data) {
      dataLength += part.length;
      checksum = zlib.crc32(part, checksum);
    }
    parts.push(encodeBlockHeader(block.count, dataLength), ...data, segment.sync);
    let length = 0;
    for (const part of parts) length += part.length;
    ledger.addBlock(segment, length, block.count, checksum, parts);
    this.leases.set(segment.chunks[segment.chunks.length - 1]!, block.lease());
    block.handOff();
    // The header sits in the first block's bytes: a block's end counts from the file's start.
    if (segment.size >= this.options.sealAt) segment.sealed = true;
  }

  /** True while the background task is writing (or creating, or removing). */
  get writing(): boolean {
    return this.task !== undefined;
  }

  /** Starts the background task unless it runs, or a failure waits for {@link resume}. */
  kick(): void {
    if (this.task !== undefined || this.failing || this.closed || this.ledger.pendingBytes === 0) return;
    this.task = this.run().finally(() => {
      this.task = undefined;
    });
  }

  /** A failed background write is tried again. */
  resume(): void {
    this.failing = false;
    this.kick();
  }

  /** Resolves once no background operation is under way. */
  async idle(): Promise<void> {
    while (this.task !== undefined) await this.task;
  }

  /**
   * The last resort when the disk falls behind: writes every waiting byte not being written in the
   * background, synchronously, in order (creating segments as needed). Throws ERR_HOPPER_IO (what
   * failed still waits, to be written again); returns the bytes written.
   */
  writeSync(): number {
    let bytes = 0;
    for (const segment of this.ledger.segments) {
      if (segment.chunks.length === 0) continue;
      if (!segment.created) {
        // Being created in the background: its bytes are written once it exists, and no block goes
        // to it any more (sealed early): the next goes to a segment of its own, which this creates.
        // So what waits for it stays bounded however long its creation takes.
        if (this.busy(segment)) {
          segment.sealed = true;
          continue;
        }
        // The header and every block waiting, in one write.
        const all = [...segment.chunks];
        for (const chunk of all) bytes += chunk.length;
        this.commit(segment, this.creator.createSync(segment, all), all);
      }
      for (const chunk of [...segment.chunks]) {
        if (chunk.inFlight) continue;
        try {
          writeAll(this.fs, segment.writeFd!, chunk.parts, chunk.length, chunk.position);
        } catch (err) {
          throw ioError('writing a block', segment.file, err);
        }
        this.wrote(segment, chunk);
        bytes += chunk.length;
      }
      this.settle(segment);
    }
    if (bytes > 0) this.events.written(false);
    return bytes;
  }

  /**
   * No more writes: the task stops at its next step, and closes what it opened. A segment being
   * created loses at once the files made for it so far (see SegmentCreator.close).
   */
  close(): void {
    this.closed = true;
    this.creator.close();
  }

  /**
   * True while the background task uses `segment`'s write descriptor, or is creating its file
   * (close() leaves both to the task).
   */
  busy(segment: Segment): boolean {
    return segment.chunks.some((chunk) => chunk.inFlight);
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        if (this.closed || this.failing) return;
        const segment = this.ledger.segments.find((s) => s.chunks.some((chunk) => !chunk.inFlight));
        if (segment === undefined) return;
        if (segment.created) await this.writeSome(segment);
        else await this.create(segment);
      }
    } catch (err) {
      // Nothing of what failed counts as written: it waits, and is written again by the retry.
      if (this.closed) return;
      this.failing = true;
      this.events.failed(err as Error);
    }
  }

  /** The waiting chunks of `segment` from the first not in flight, as long as they follow each other, up to gatherBytes. */
  private gather(segment: Segment): Chunk[] {
    const taken: Chunk[] = [];
    let bytes = 0;
    for (const chunk of segment.chunks) {
      if (chunk.inFlight) {
        if (taken.length > 0) break;
        continue;
      }
      const last = taken[taken.length - 1];
      if (last !== undefined && (last.position + last.length !== chunk.position || bytes + chunk.length > this.options.gatherBytes)) break;
      taken.push(chunk);
      bytes += chunk.length;
    }
    return taken;
  }

  private async writeSome(segment: Segment): Promise<void> {
    const chunks = this.gather(segment);
    const { parts, length } = joinChunks(chunks);
    for (const chunk of chunks) chunk.inFlight = true;
    try {
      await writeAllAsync(this.fs, segment.writeFd!, parts, length, chunks[0]!.position);
    } catch (err) {
      for (const chunk of chunks) chunk.inFlight = false;
      if (this.closed) {
        this.closeIfIdle(segment);
        return;
      }
      throw ioError('writing a block', segment.file, err);
    }
    for (const chunk of chunks) chunk.inFlight = false;
    if (this.closed) {
      this.closeIfIdle(segment);
      return;
    }
    for (const chunk of chunks) this.wrote(segment, chunk);
    this.written(segment);
  }

  /** `chunk` is on disk: the ledger stops counting it, and the block builder may reuse its copies. */
  private wrote(segment: Segment, chunk: Chunk): void {
    this.ledger.written(segment, chunk);
    this.leases.get(chunk)?.();
  }

  private written(segment: Segment): void {
    this.settle(segment);
    this.events.written(true);
  }

  /** After a write: a sealed segment with nothing waiting is closed for writing (in the background), and announced. */
  private settle(segment: Segment): void {
    if (!segment.sealed || segment.chunks.length > 0 || segment.writeFd === undefined || this.busy(segment)) return;
    this.closer.close(segment.writeFd);
    segment.writeFd = undefined;
    // A segment sealed because it was read through is removed, not announced as sealed.
    if (!segment.readThrough) this.events.sealed(segment);
  }

  /** The log closed while the task wrote to `segment`: its descriptor is the task's to close (see SegmentLog.close). */
  private closeIfIdle(segment: Segment): void {
    if (segment.writeFd !== undefined && !this.busy(segment)) {
      this.closer.close(segment.writeFd);
      segment.writeFd = undefined;
    }
  }

  /**
   * Creates `segment`'s file with its header in the background (see SegmentCreator.createAsync). Its
   * first chunk counts as in flight meanwhile: the segment is busy, so nothing else closes, removes
   * or creates it. Throws ERR_HOPPER_IO; when the log closes meanwhile, leaves nothing behind.
   */
  private async create(segment: Segment): Promise<void> {
    const chunk = segment.chunks[0]!;
    chunk.inFlight = true;
    try {
      const created = await this.creator.createAsync(segment, chunk, (made) => {
        // On the tick of the creator's last check that the log is open: see createAsync.
        this.commit(segment, made, [chunk]);
      });
      if (!created) return;
    } finally {
      chunk.inFlight = false;
    }
    this.written(segment);
  }

  /** `segment`'s file exists, holding `chunks`: it is entered as created, with the descriptor to write to. */
  private commit(segment: Segment, made: Created, chunks: Chunk[]): void {
    segment.dev = made.dev;
    segment.ino = made.ino;
    segment.writeFd = made.fd;
    segment.created = true;
    for (const chunk of chunks) this.wrote(segment, chunk);
  }

  private encodeHeader(sync: Buffer): Buffer {
    return encodeHeader(this.schemaJson, this.options.codec, sync, { [OWNER_KEY]: this.options.channel });
  }
}
