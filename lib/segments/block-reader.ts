import zlib from 'node:zlib';
import { BLOCK_HEADER_MAX_BYTES, blockData, checkSync, isProblem, parseBlockHeader, type BlockFrame, type FrameProblem } from '../ocf.js';
import type { SegmentFileSystem } from './io.js';
import { Corruption, DecoderBug } from './results.js';

// Reading blocks from a segment file, for the log and for `verify` and `cat` alike: bytes through
// a read-ahead buffer, each block's framing checked (count, size, sync marker, and against what
// the ledger says was written when the caller knows), its data inflated, records decoded one at a
// time. What is wrong is thrown as a Corruption; system errors are thrown as they come; a decoder
// that throws for another reason than bad bytes is a DecoderBug (see results.ts). What to do about
// each (skip, stop, retry, report) is the caller's.

export const READ_AHEAD_BYTES = 256 * 1024;
/** Blocks this large are read alone, into a buffer of their own (large Buffer records become views of it). */
export const READ_ALONE_BYTES = 64 * 1024;
const EMPTY = Buffer.alloc(0);

/** What the ledger says was written as a block: checked against what is read. */
export interface WrittenBlock {
  count: number;
  /** Undefined: not checked (the bytes never left memory). */
  checksum: number | undefined;
}

/** A block read and checked: its frame (offsets relative to the block's start) and its records' bytes, uncompressed. */
export interface ReadBlock {
  frame: BlockFrame;
  data: Buffer;
}

export class BlockReader {
  private fd = -1;
  private ahead: Buffer = EMPTY;
  private aheadStart = 0;

  /** Bytes of the read-ahead buffer. */
  get bufferBytes(): number {
    return this.ahead.length;
  }

  constructor(private readonly fs: SegmentFileSystem) {}

  /** Reads from `fd` from now on (the caller opens and closes it). */
  reset(fd: number): void {
    this.fd = fd;
    this.ahead = EMPTY;
    this.aheadStart = 0;
  }

  /** Lets go of the read-ahead buffer if a large read made it large (records may still be views of it). */
  trim(): void {
    if (this.ahead.length > READ_AHEAD_BYTES) this.ahead = EMPTY;
  }

  /**
   * `length` bytes at `offset`, of a file whose data ends at `end`, served from a read-ahead
   * buffer refilled with one read; a large block is read on its own, into a buffer of its size.
   * Each refill is a new buffer, never written to again: records decoded from it may be views of
   * it. Throws a Corruption when the file is shorter, and the system error when a read fails.
   */
  bytes(offset: number, length: number, end: number): Buffer {
    const start = offset - this.aheadStart;
    if (start >= 0 && start + length <= this.ahead.length) return this.ahead.subarray(start, start + length);
    const want = length >= READ_ALONE_BYTES ? length : Math.min(Math.max(length, READ_AHEAD_BYTES), end - offset);
    const buffer = Buffer.allocUnsafe(want);
    let got = 0;
    while (got < want) {
      const n = this.fs.readSync(this.fd, buffer, got, want - got, offset + got);
      if (n === 0) {
        if (got >= length) break;
        throw new Corruption(offset + got, 'the file is shorter than what was written to it', 'rest-of-segment');
      }
      got += n;
    }
    this.ahead = buffer.subarray(0, got);
    this.aheadStart = offset;
    return buffer.subarray(0, length);
  }

  /**
   * Reads the block at `offset` and checks its framing; the file's data ends at `end`. With
   * `written` (the log), the block is `available` bytes long and must be the one the ledger
   * describes; without (a file of unknown origin), it is read as far as its own size says, which
   * must fit in `available`.
   */
  block(offset: number, available: number, end: number, sync: Buffer, codec: string, written?: WrittenBlock): ReadBlock {
    let bytes: Buffer;
    let frame: BlockFrame | FrameProblem;
    if (written !== undefined) {
      bytes = this.bytes(offset, available, end);
      frame = parseBlockHeader(bytes, 0, available);
    } else {
      frame = parseBlockHeader(this.bytes(offset, Math.min(BLOCK_HEADER_MAX_BYTES, available), end), 0, available);
      bytes = isProblem(frame) ? EMPTY : this.bytes(offset, frame.end, end);
    }
    const checked = checkBlock(bytes, offset, frame, sync, written);
    return { frame: checked, data: blockBytes(bytes, offset, checked, codec) };
  }
}

/** A block whose bytes are in memory (waiting for the disk), checked as {@link BlockReader.block} checks one read with `written`. */
export function checkedBlock(bytes: Buffer, offset: number, sync: Buffer, codec: string, written: WrittenBlock): ReadBlock {
  const frame = parseBlockHeader(bytes, 0, bytes.length);
  const checked = checkBlock(bytes, offset, frame, sync, written);
  return { frame: checked, data: blockBytes(bytes, offset, checked, codec) };
}

/** Checks a parsed block; throws a Corruption (offsets made absolute with `offset`) for the first thing wrong. */
function checkBlock(bytes: Buffer, offset: number, frame: BlockFrame | FrameProblem, sync: Buffer, written: WrittenBlock | undefined): BlockFrame {
  if (isProblem(frame)) throw new Corruption(offset + frame.offset, frame.problem, 'block');
  if (written !== undefined) {
    if (frame.end !== bytes.length) {
      throw new Corruption(offset, `the block size says ${frame.end} bytes with its framing, ${bytes.length} were written`, 'block');
    }
    if (frame.count !== written.count) {
      throw new Corruption(offset, `the block record count says ${frame.count}, ${written.count} were written`, 'block');
    }
  }
  const badSync = checkSync(bytes, frame, sync);
  if (badSync) throw new Corruption(offset + badSync.offset, badSync.problem, 'block');
  if (written?.checksum !== undefined && zlib.crc32(bytes.subarray(frame.dataStart, frame.dataEnd)) !== written.checksum) {
    throw new Corruption(offset + frame.dataStart, 'the block data changed since it was written (checksum mismatch)', 'block');
  }
  return frame;
}

function blockBytes(bytes: Buffer, offset: number, frame: BlockFrame, codec: string): Buffer {
  const data = blockData(bytes, frame, codec);
  if (isProblem(data)) throw new Corruption(offset + data.offset, data.problem, 'block');
  return data;
}

/** Decodes what a record decoder returns. */
export interface RecordDecoder {
  decode(buf: Buffer, pos: number, settled?: boolean, views?: boolean): { value: unknown; offset: number };
}

/**
 * The record at `pos` and where the next one starts; offset -1 for what does not decode (avsc or
 * V8 throw on some garbage, such as a union branch index out of range). The caller checks the
 * offset against the block's end. `settled`: `data` is never written again, so large Buffer
 * records may be views of it, unless `views` is false (see RecordCodec.decode). Throws a {@link DecoderBug} when the decoder throws anything bad
 * bytes do not make it throw.
 */
export function decodeRecord(decoder: RecordDecoder, data: Buffer, pos: number, settled: boolean, views = settled): { value: unknown; offset: number } {
  try {
    return decoder.decode(data, pos, settled, views);
  } catch (err) {
    // Safe to call "does not decode": the decoder read bytes that are not a record of its schema.
    if (isBadBytesError(err)) return { value: undefined, offset: -1 };
    throw new DecoderBug(err);
  }
}

/**
 * True for what a decoder throws on bytes that are not a record of its schema, by the exact class
 * of the error:
 * - a plain `Error`: avsc 5.7's refusals of invalid data (`invalid union index`, `invalid <name> enum
 *   index`, `potential precision loss`, in lib/types.js), and node:v8's Deserializer's
 *   (`Unable to deserialize cloned data.`, `ReadRawBytes() failed`);
 * - a `SyntaxError`: JSON.parse of the JSON text of a schemaless record;
 * - a `RangeError` "Invalid array length": avsc's `new Array(n)` with a block count read from the
 *   bytes (ArrayType._read).
 * Everything else (a TypeError, any other RangeError, a HopperError, a subclass) is a bug: avsc
 * answers truncated data with offset -1, never with an exception.
 */
export function isBadBytesError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const proto = Object.getPrototypeOf(err) as unknown;
  if (proto === Error.prototype || proto === SyntaxError.prototype) return true;
  return proto === RangeError.prototype && err.message === 'Invalid array length';
}
