import crypto from 'node:crypto';
import type nodeFs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { SEGMENT_DRAFT } from '../lock.js';
import { ioError } from '../errors.js';
import { OWNER_KEY, encodeBlockHeader, encodeHeader } from '../ocf.js';
import type { BlockBuilder } from './block-builder.js';
import { CREATE_FLAGS, closeQuietly, unlinkQuietly, writeAll, type SegmentDirectory, type SegmentFileSystem } from './io.js';
import { segmentFileName, type Ledger, type Segment } from './ledger.js';

// The segment writer: creates segment files (a draft linked into place, never over an existing
// file), writes blocks to the end of the active one, and seals it when it is large enough. Each
// write is entered in the ledger. It never reads, and never removes a segment.

export interface SegmentWriterOptions {
  /** Segment compression, written into each header. */
  codec: string;
  /** Channel name, written into each segment's metadata. */
  channel: string;
  /** Size past which a segment is sealed. */
  sealAt: number;
}

export class SegmentWriter {
  private readonly schemaJson: Buffer;
  /** Bytes a segment header takes. */
  readonly headerBytes: number;

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly directory: SegmentDirectory,
    private readonly ledger: Ledger,
    schema: unknown,
    private readonly options: SegmentWriterOptions,
    /** Told of each segment sealed. */
    private readonly onSealed: (segment: Segment) => void,
  ) {
    this.schemaJson = Buffer.from(JSON.stringify(schema));
    this.headerBytes = this.encodeHeader(Buffer.alloc(16)).length;
  }

  /**
   * Writes the block to the active segment (creating one if needed) and enters it in the ledger;
   * the block is then empty. Throws ERR_HOPPER_IO, and then nothing is written or entered: the
   * same block is written again by the retry.
   */
  write(block: BlockBuilder): void {
    let segment = this.ledger.active();
    const parts: Buffer[] = [];
    const sync = segment === undefined ? crypto.randomBytes(16) : segment.sync;
    const header = segment === undefined ? this.encodeHeader(sync) : undefined;
    if (header !== undefined) parts.push(header);
    const data = block.parts(this.options.codec);
    let dataLength = 0;
    let checksum = 0;
    for (const part of data) {
      dataLength += part.length;
      checksum = zlib.crc32(part, checksum);
    }
    parts.push(encodeBlockHeader(block.count, dataLength), ...data, sync);
    let length = 0;
    for (const part of parts) length += part.length;
    if (segment === undefined) segment = this.create(sync, header!, parts, length);
    else this.writeBlock(segment.writeFd!, segment.file, parts, length, segment.size);
    this.ledger.addBlock(segment, length, block.count, checksum);
    block.written();
    if (segment.size >= this.options.sealAt) this.seal(segment);
  }

  /** No more blocks go to `segment`: its file is closed for writing. */
  seal(segment: Segment): void {
    segment.sealed = true;
    if (segment.writeFd !== undefined) {
      closeQuietly(this.fs, segment.writeFd);
      segment.writeFd = undefined;
    }
    this.onSealed(segment);
  }

  private writeBlock(fd: number, file: string, parts: Buffer[], length: number, position: number): void {
    try {
      writeAll(this.fs, fd, parts, length, position);
    } catch (err) {
      // Nothing is counted as written: the retry writes the whole block again at the same place.
      throw ioError('writing a block', file, err);
    }
  }

  private encodeHeader(sync: Buffer): Buffer {
    return encodeHeader(this.schemaJson, this.options.codec, sync, { [OWNER_KEY]: this.options.channel });
  }

  /**
   * Creates the next segment with its header and first block in one step: they are written into a
   * draft in the draft directory (the lock directory), which is then linked under the segment's
   * name (link(2) never replaces a file that is there) and unlinked. So a segment file never exists
   * without its header, and a crash leaves at most a draft, which goes with the stale lock.
   */
  private create(sync: Buffer, header: Buffer, parts: Buffer[], length: number): Segment {
    const lost = this.directory.verify();
    if (lost !== undefined) throw ioError('creating a segment', this.directory.path, lost);
    const draft = path.join(this.directory.draftDir, SEGMENT_DRAFT);
    let fd: number;
    try {
      fd = this.fs.openSync(draft, CREATE_FLAGS, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') unlinkQuietly(this.fs, draft); // our own, from a failed attempt
      throw ioError('creating a segment', draft, err);
    }
    let file: string;
    let seq: number;
    let stat: nodeFs.Stats;
    try {
      this.writeBlock(fd, draft, parts, length, 0);
      stat = this.fs.fstatSync(fd);
      for (;;) {
        seq = this.ledger.nextSeq;
        file = path.join(this.directory.path, segmentFileName(seq));
        try {
          this.fs.linkSync(draft, file);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('creating a segment', file, err);
          this.ledger.nextSeq++;
        }
      }
    } catch (err) {
      closeQuietly(this.fs, fd);
      unlinkQuietly(this.fs, draft);
      throw err;
    }
    this.ledger.nextSeq++;
    unlinkQuietly(this.fs, draft);
    const segment: Segment = {
      seq,
      file,
      sync,
      header,
      size: 0,
      records: 0,
      blockEnds: [],
      blockCounts: [],
      blockChecksums: [],
      sealed: false,
      writeFd: fd,
      removalFailed: false,
      dev: stat.dev,
      ino: stat.ino,
    };
    this.ledger.add(segment);
    return segment;
  }
}
