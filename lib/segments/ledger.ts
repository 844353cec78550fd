import type { OwnFile } from './io.js';

// The ledger: the index of the segment files this log created, and of the blocks in each, kept in
// memory while writing. The writer adds to it, the reader checks what it reads against it, the
// log removes from it. It does no I/O.

/** Segment files are named by a sequence number, so that names sort in write order. */
export const SEGMENT_NAME = /^(\d{12})\.avro$/;

export function segmentFileName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.avro`;
}

/**
 * Bytes of a segment not on disk yet (write-behind): a block with its framing, or a new segment's
 * header with its first block, to be written at `position`. Its buffers are never changed.
 */
export interface Chunk {
  position: number;
  length: number;
  parts: Buffer[];
  /** An asynchronous write of it is under way. */
  inFlight: boolean;
}

export interface Segment extends OwnFile {
  /** Its name: chosen when it is planned, another if a foreign file took that name meanwhile. */
  file: string;
  dev: number;
  ino: number;
  seq: number;
  /** The file exists under `file` (linked into place); until then it is a plan with bytes waiting. */
  created: boolean;
  /** Bytes waiting for the disk, in position order; a block is readable once nothing before its end waits. */
  chunks: Chunk[];
  /** Being removed in the background: it still counts against the caps, and is not read. */
  removing: boolean;
  /** Read through while the writer still used it: removed once the writer lets go. Not read. */
  readThrough: boolean;
  sync: Buffer;
  /** The exact header bytes written: a reader checks the file still starts with them. */
  header: Buffer;
  /** Bytes written to the file so far (header and whole blocks only). */
  size: number;
  /** Records written to the file so far. */
  records: number;
  /**
   * The block index kept while writing: where each block ends, how many records it holds, and a
   * CRC-32 of its data. The reader checks every block against it (Avro has no checksum of its own)
   * and, with `onCorrupt: 'skip'`, steps over a damaged block by it, knowing what was lost.
   */
  blockEnds: number[];
  blockCounts: number[];
  blockChecksums: number[];
  sealed: boolean;
  writeFd: number | undefined;
  /** Removal failed: the file still counts against the caps until a retry succeeds. */
  removalFailed: boolean;
}

export class Ledger {
  /** Segment files that exist, oldest first; the last one may be the active (unsealed) one. */
  readonly segments: Segment[] = [];
  /** Sequence number of the next segment: past every segment-like name seen in the directory. */
  nextSeq = 1;
  /** Bytes of all segment files, those waiting for the disk included. */
  fileBytes = 0;
  /** Bytes waiting for the disk (write-behind), those being written included. */
  pendingBytes = 0;

  /** The segment being written, if the last one is not sealed. */
  active(): Segment | undefined {
    const last = this.segments[this.segments.length - 1];
    return last !== undefined && !last.sealed ? last : undefined;
  }

  add(segment: Segment): void {
    this.segments.push(segment);
  }

  /** A new segment's header goes first: it waits for the disk as a block does. */
  addHeader(segment: Segment): void {
    const length = segment.header.length;
    segment.chunks.push({ position: 0, length, parts: [segment.header], inFlight: false });
    this.pendingBytes += length;
    segment.size += length;
    this.fileBytes += length;
  }

  /**
   * A block of `count` records, `length` bytes with its framing,
   * goes at the end of `segment`: `parts` wait for the disk until the writer has written them.
   */
  addBlock(segment: Segment, length: number, count: number, checksum: number, parts: Buffer[]): void {
    segment.chunks.push({ position: segment.size, length, parts, inFlight: false });
    this.pendingBytes += length;
    segment.size += length;
    segment.records += count;
    segment.blockEnds.push(segment.size);
    segment.blockCounts.push(count);
    segment.blockChecksums.push(checksum);
    this.fileBytes += length;
  }

  /** `chunk` of `segment` is on disk. */
  written(segment: Segment, chunk: Chunk): void {
    const index = segment.chunks.indexOf(chunk);
    if (index >= 0) segment.chunks.splice(index, 1);
    this.pendingBytes -= chunk.length;
  }

  /** Bytes of `segment` still waiting for the disk are not needed any more (it was read through): they are let go. */
  discard(segment: Segment): void {
    for (const chunk of segment.chunks) this.pendingBytes -= chunk.length;
    segment.chunks = [];
  }

  /**
   * The bytes of the block at [start, end) of `segment` while they wait for the disk (or are being
   * written), from the writer's own buffers; undefined once they are on disk. Blocks may reach the
   * disk out of order (the last resort writes those not in flight), so each block is asked alone.
   */
  static pendingBlock(segment: Segment, start: number, end: number): Buffer | undefined {
    const chunk = Ledger.pendingChunk(segment, start, end);
    if (chunk === undefined) return undefined;
    // A block's chunk has three parts at least (block header, data, sync marker), so what the
    // reader gets is a copy: the block builder fills its buffer again once the chunk is written.
    const bytes = chunk.parts.length === 1 ? chunk.parts[0]! : Buffer.concat(chunk.parts);
    return bytes.subarray(start - chunk.position, end - chunk.position);
  }

  /** The chunk holding the block at [start, end) of `segment` while it waits for the disk; undefined once it is on disk. */
  static pendingChunk(segment: Segment, start: number, end: number): Chunk | undefined {
    const { chunks } = segment;
    if (chunks.length === 0 || chunks[0]!.position >= end) return undefined;
    return chunks.find((c) => c.position <= start && start < c.position + c.length);
  }

  /** The file is gone: it no longer counts. */
  forget(segment: Segment): void {
    const index = this.segments.indexOf(segment);
    if (index >= 0) this.segments.splice(index, 1);
    this.fileBytes -= segment.size;
    for (const chunk of segment.chunks) this.pendingBytes -= chunk.length;
    segment.chunks = [];
  }

  /**
   * A file forgotten too early (its removal, started when it was dropped, failed) counts again. It
   * holds no records any more: it goes first, where nothing reads or drops it.
   */
  restore(segment: Segment): void {
    this.segments.unshift(segment);
    this.fileBytes += segment.size;
  }

  /** The oldest segment whose records can be read (its removal has not failed: it was read through). */
  oldestUnread(): Segment | undefined {
    return this.segments.find((s) => !s.removalFailed && !s.removing && !s.readThrough);
  }

  /** The oldest sealed segment that can be removed to make room, other than `reading` and those `busy` says are being written. */
  oldestDroppable(reading: Segment | undefined, busy: (segment: Segment) => boolean): Segment | undefined {
    return this.segments.find(
      (segment) => segment.sealed && !segment.removalFailed && !segment.removing && !segment.readThrough && segment !== reading && !busy(segment),
    );
  }

  /** Segments whose removal failed and is to be retried. */
  failedRemovals(): Segment[] {
    return this.segments.filter((s) => s.removalFailed);
  }

  /** Empties the ledger (close), returning what it held. */
  clear(): Segment[] {
    this.fileBytes = 0;
    this.pendingBytes = 0;
    return this.segments.splice(0);
  }
}

/** The parts of consecutive chunks as one write. */
export function joinChunks(chunks: Array<Pick<Chunk, 'parts' | 'length'>>): { parts: Buffer[]; length: number } {
  const parts: Buffer[] = [];
  let length = 0;
  for (const chunk of chunks) {
    parts.push(...chunk.parts);
    length += chunk.length;
  }
  return { parts, length };
}
