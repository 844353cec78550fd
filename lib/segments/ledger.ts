import type { OwnFile } from './io.js';

// The ledger: the index of the segment files this log created, and of the blocks in each, kept in
// memory while writing. The writer adds to it, the reader checks what it reads against it, the
// log removes from it. It does no I/O.

/** Segment files are named by a sequence number, so that names sort in write order. */
export const SEGMENT_NAME = /^(\d{12})\.avro$/;

export function segmentFileName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.avro`;
}

export interface Segment extends OwnFile {
  seq: number;
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
  /** Bytes of all segment files. */
  fileBytes = 0;

  /** The segment being written, if the last one is not sealed. */
  active(): Segment | undefined {
    const last = this.segments[this.segments.length - 1];
    return last !== undefined && !last.sealed ? last : undefined;
  }

  add(segment: Segment): void {
    this.segments.push(segment);
  }

  /** A block of `count` records, `length` bytes with its framing (and the header, for a new file), was written at the end of `segment`. */
  addBlock(segment: Segment, length: number, count: number, checksum: number): void {
    segment.size += length;
    segment.records += count;
    segment.blockEnds.push(segment.size);
    segment.blockCounts.push(count);
    segment.blockChecksums.push(checksum);
    this.fileBytes += length;
  }

  /** The file is gone: it no longer counts. */
  forget(segment: Segment): void {
    const index = this.segments.indexOf(segment);
    if (index >= 0) this.segments.splice(index, 1);
    this.fileBytes -= segment.size;
  }

  /** The oldest segment whose records can be read (its removal has not failed: it was read through). */
  oldestUnread(): Segment | undefined {
    return this.segments.find((s) => !s.removalFailed);
  }

  /** The oldest sealed segment that can be removed to make room, other than `reading`. */
  oldestDroppable(reading: Segment | undefined): Segment | undefined {
    return this.segments.find((segment) => segment.sealed && !segment.removalFailed && segment !== reading);
  }

  /** Segments whose removal failed and is to be retried. */
  failedRemovals(): Segment[] {
    return this.segments.filter((s) => s.removalFailed);
  }

  /** Empties the ledger (close), returning what it held. */
  clear(): Segment[] {
    this.fileBytes = 0;
    return this.segments.splice(0);
  }
}
