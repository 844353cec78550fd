import { BYTES_HEAD_MAX_BYTES, type LargeRecord, type RecordCodec } from '../codec.js';
import { compress } from '../ocf.js';
import { copyBuffer } from '../plain-data.js';

// The block being filled: records encoded one after another into one buffer, large records (copies
// of large Buffers, serializations of large flat arrays) held by reference between them. It knows nothing of files or caps: the log asks it to stage a
// record, checks the caps, then keeps or drops it; the writer takes its parts to write them.

export const BLOCK_TARGET_BYTES = 64 * 1024;
/**
 * A block holding Buffers by reference may grow to this, Buffers included, as long as what was
 * copied into it stays under BLOCK_TARGET_BYTES: fewer, larger writes and reads (faster in the
 * byte-mode benchmark than 64 KiB blocks; 1 MiB ones were no faster). A record read from such a
 * block is a view of it (see envelope-codec.ts): it keeps the block's memory alive, at most five times its
 * own size.
 */
const BY_REFERENCE_BLOCK_BYTES = 256 * 1024;
/**
 * Blocks are filled one after another in a buffer of this size, each after the one handed to the
 * writer (which owns those bytes from then on), and a new buffer is taken when less than a block
 * and a record are left. A new buffer per block did not fit the record that filled it: every
 * block was copied into a buffer twice its size (and allocated twice).
 */
const BLOCK_BUFFER_BYTES = 256 * 1024;
/** A block starts in the buffer's remainder only when it holds a full block and this much more (its last record). */
const BLOCK_SLACK_BYTES = 16 * 1024;
/**
 * Bytes of copies of large Buffer records kept for reuse once the blocks holding them were
 * written (as much as one background write gathers). Memory not written to before costs a page
 * fault per 4 KiB: a copy into a new buffer took two to three times as long as into one used before.
 */
const SPARE_COPY_BYTES = 1024 * 1024;

/**
 * Block buffers kept for reuse once every block filled in them was written (see
 * {@link BlockBuilder.holdBuffer}): a spill fills a new buffer every 256 KiB, and fresh memory
 * costs a page fault per 4 KiB and the collector's time to free it. As many as the default
 * maxPendingDiskBytes (4 MiB) holds: with 8, a burst that kept that much waiting let half of them
 * go each time the writer caught up (371 new buffers in a spill of 1,000,000 events, 59 now).
 */
const SPARE_BUFFERS = 16;

/** A block buffer and the blocks handed to the writer from it that are not written yet. */
interface BufferUse {
  buffer: Buffer;
  held: number;
  /** The builder fills another buffer now: this one is reused once nothing holds it. */
  retired: boolean;
  /** Blocks were handed to the writer from it with {@link BlockBuilder.holdBuffer}: only such buffers are reused. */
  tracked: boolean;
}

/** A large record held by reference: its head (union branch and length) is at [start, at) in the block; its bytes come after `at`. */
interface Ref {
  start: number;
  at: number;
  large: LargeRecord;
}

export class BlockBuilder {
  /**
   * The block's records are at [start, pos), `count` of them. A reader that has caught up with
   * the files takes records straight from the front (`start` moves on), so a consumer that keeps
   * up costs no file I/O at all.
   */
  private buffer: Buffer = Buffer.allocUnsafe(BLOCK_BUFFER_BYTES);
  private use: BufferUse = { buffer: this.buffer, held: 0, retired: false, tracked: false };
  /** Block buffers free to fill again (see holdBuffer). */
  private spareBuffers: Buffer[] = [];
  /** The buffer's bytes before this belong to blocks handed to the writer: never written again. */
  private floor = 0;
  start = 0;
  pos = 0;
  count = 0;
  /**
   * Large records in the block, held by reference instead of copied into it, in block order: a
   * copy of the producer's Buffer made when it was kept (one copy, not two: the block's buffer does
   * not grow for it), or the serialization the codec made of a large value. They are written with the block's other bytes in one `writev`; they are
   * never changed, so a retried write writes the same bytes.
   */
  private refs: Ref[] = [];
  /** Bytes of the Buffers in `refs`. */
  refBytes = 0;
  /** Copies of large Buffers whose block was written, by length: nothing refers to them any more (see {@link lease}). */
  private spare = new Map<number, Buffer[]>();
  private spareBytes = 0;
  /** The record staged by {@link stage}: encoded at [stagedStart, stagedEnd), not kept yet. */
  private stagedStart = 0;
  private stagedEnd = 0;
  private stagedLarge: LargeRecord | undefined;
  /** Bytes of the block's data if the staged record is kept. */
  stagedPending = 0;

  /** `byReference`: large records (the codec says which) are held by reference, not copied into the block. */
  constructor(
    private readonly codec: RecordCodec,
    private readonly byReference: boolean,
  ) {}

  /** Bytes of memory the block holds: its buffer and the large records it holds by reference. */
  get bufferBytes(): number {
    return this.buffer.length + this.refBytes + this.spareBytes + this.spareBuffers.length * BLOCK_BUFFER_BYTES;
  }

  /** Bytes of the block's data. */
  get pending(): number {
    return this.pos - this.start + this.refBytes;
  }

  /** Encodes `record` after the block's records, without keeping it yet; returns its size in the block. */
  stage(record: unknown): number {
    if (this.count === 0) this.start = this.pos = this.floor;
    // A large record's bytes are not copied: only its head goes into the block.
    const large = this.byReference ? this.codec.largeRecord!(record) : undefined;
    let start = this.pos;
    let end: number;
    if (large !== undefined) {
      if (this.buffer.length - start < BYTES_HEAD_MAX_BYTES) this.makeRoom(BYTES_HEAD_MAX_BYTES);
      start = this.pos;
      end = this.codec.encodeLargeHead!(large, this.buffer, start);
    } else {
      end = this.codec.encode(record, this.buffer, start);
      while (end < 0) {
        // avsc answers a short buffer with minus the bytes missing: the record takes length - end - start.
        this.makeRoom(this.buffer.length - end - start);
        start = this.pos;
        end = this.codec.encode(record, this.buffer, start);
      }
    }
    const referenced = large === undefined ? 0 : large.bytes.length;
    this.stagedStart = start;
    this.stagedEnd = end;
    this.stagedLarge = large;
    this.stagedPending = end - this.start + this.refBytes + referenced;
    return end - start + referenced;
  }

  /** Keeps the staged record; true when the block is now full enough to be written. */
  keep(): boolean {
    const end = this.stagedEnd;
    this.pos = end;
    const large = this.stagedLarge;
    if (large !== undefined) {
      // A Buffer record's bytes are copied before the write is acknowledged: the producer may reuse
      // its Buffer as soon as its callback fired (or send() returned), long before the block is
      // written (and a write retried after a fault writes the bytes as they were accepted).
      this.refs.push({ start: this.stagedStart, at: end, large: large.kind === 'buffer' ? { kind: 'buffer', bytes: this.copyOf(large.bytes) } : large });
      this.refBytes += large.bytes.length;
      this.stagedLarge = undefined;
    }
    this.count++;
    const pending = this.stagedPending;
    return this.refBytes === 0 ? pending >= BLOCK_TARGET_BYTES : end - this.start >= BLOCK_TARGET_BYTES || pending >= BY_REFERENCE_BLOCK_BYTES;
  }

  /** The staged record is not kept: a block that grew for it goes back to its usual size. */
  drop(): void {
    this.stagedLarge = undefined;
    if (this.count === 0) this.empty();
  }

  /**
   * The record at the front, taken out of the block: the reader has read every file. Throws when
   * the block holds no record or one that does not decode (a bug, not corruption: it never left memory).
   */
  shift(): unknown {
    if (this.count === 0) throw new Error('hopper-streams: the segment log was asked for a record it does not hold');
    let value: unknown;
    const ref = this.refs[0];
    if (ref !== undefined && ref.start === this.start) {
      // Held by reference: the copy of the Buffer that was appended, or the value its bytes hold (as the memory tier would give it back).
      this.refs.shift();
      this.refBytes -= ref.large.bytes.length;
      value = this.codec.largeValue!(ref.large);
      this.start = ref.at;
    } else {
      // The block is written over once flushed: records decoded from it must be copies.
      const decoded = this.codec.decode(this.buffer, this.start);
      if (decoded.offset < 0 || decoded.offset > (ref?.start ?? this.pos) || decoded.value === null || decoded.value === undefined) {
        throw new Error('hopper-streams: a record in the block being filled does not decode');
      }
      value = decoded.value;
      this.start = decoded.offset;
    }
    if (--this.count === 0) this.empty();
    return value;
  }

  /** The block's data, in order: compressed in one piece, or the block's bytes with the large records held by reference between them. */
  parts(compression: string): Buffer[] {
    if (this.refs.length === 0) return [compress(this.buffer.subarray(this.start, this.pos), compression)];
    const parts: Buffer[] = [];
    let pos = this.start;
    for (const ref of this.refs) {
      parts.push(this.buffer.subarray(pos, ref.at), ref.large.bytes);
      pos = ref.at;
    }
    if (pos < this.pos) parts.push(this.buffer.subarray(pos, this.pos));
    return parts;
  }

  /**
   * The block's parts are about to be handed to the writer: the copies of large Buffers among them,
   * and the block buffer (as {@link holdBuffer} says), are reused once the returned function is
   * called, which the writer does once they are written. Until then (a write retried after a fault
   * included) they stay as they are. A block never written (read from memory, dropped, or the log
   * closed) never calls it. A copy the reader took from the block being filled ({@link shift}) left
   * the block before, and is never reused; a block the reader takes from memory while it waits for
   * the disk is a copy (Ledger.pendingBlock joins its parts).
   */
  lease(): () => void {
    const copies: Buffer[] = [];
    for (const ref of this.refs) if (ref.large.kind === 'buffer') copies.push(ref.large.bytes);
    const letGo = this.holdBuffer();
    return () => {
      letGo();
      for (const copy of copies.splice(0)) {
        if (this.spareBytes + copy.length > SPARE_COPY_BYTES) return;
        const spare = this.spare.get(copy.length);
        if (spare === undefined) this.spare.set(copy.length, [copy]);
        else spare.push(copy);
        this.spareBytes += copy.length;
      }
    };
  }

  /**
   * The block's bytes are about to be handed to the writer, which holds them until they are
   * written and nothing reads them in memory any more, then calls the returned function (once).
   * The buffer they are in is filled again once the builder has moved on to another and every
   * block handed from it was let go. A block never let go (the log closed, a write failed for
   * good) keeps its buffer from reuse: it is left to the collector.
   */
  holdBuffer(): () => void {
    const use = this.use;
    use.held++;
    use.tracked = true;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--use.held === 0 && use.retired) this.spareBuffer(use);
    };
  }

  private spareBuffer(use: BufferUse): void {
    if (use.tracked && use.buffer.length === BLOCK_BUFFER_BYTES && this.spareBuffers.length < SPARE_BUFFERS) this.spareBuffers.push(use.buffer);
  }

  /** A copy of a large Buffer record, in a copy reused from a written block when there is one of its length. */
  private copyOf(bytes: Buffer): Buffer {
    const copy = this.spare.get(bytes.length)?.pop();
    if (copy === undefined) return copyBuffer(bytes);
    this.spareBytes -= copy.length;
    bytes.copy(copy);
    return copy;
  }

  /**
   * The block's parts were handed to the writer, which writes them in the background: start the
   * next one in a buffer of its own, so that nothing appended later changes the bytes waiting.
   */
  handOff(): void {
    this.count = 0;
    this.floor = this.pos;
    if (this.buffer.length - this.floor < BLOCK_TARGET_BYTES + BLOCK_SLACK_BYTES) this.newBuffer(BLOCK_BUFFER_BYTES);
    this.empty();
    this.refs = [];
    this.refBytes = 0;
  }

  /** Forgets every record (the log is closing). */
  clear(): void {
    this.start = this.pos = this.floor = this.count = 0;
    this.spareBuffers = [];
    this.spare.clear();
    this.spareBytes = 0;
    this.refs = [];
    this.refBytes = 0;
  }

  /**
   * The block holds no record any more: start the next one at the front, in a buffer of the usual
   * size again if a large record made it grow.
   */
  private empty(): void {
    if (this.buffer.length > BLOCK_BUFFER_BYTES) this.newBuffer(BLOCK_BUFFER_BYTES);
    this.start = this.pos = this.floor;
    this.codec.endBlock?.();
  }

  private newBuffer(size: number): void {
    const old = this.use;
    old.retired = true;
    if (old.held === 0) this.spareBuffer(old);
    this.buffer = (size === BLOCK_BUFFER_BYTES ? this.spareBuffers.pop() : undefined) ?? Buffer.allocUnsafe(size);
    this.use = { buffer: this.buffer, held: 0, retired: false, tracked: false };
    this.floor = 0;
  }

  /**
   * Makes `needed` more bytes of room after pos: moves the unread records down to the floor, or
   * into a new buffer (larger if need be) when that is not enough.
   */
  private makeRoom(needed: number): void {
    const used = this.pos - this.start;
    const old = this.buffer;
    if (this.floor + used + needed > old.length) {
      let size = BLOCK_BUFFER_BYTES;
      while (size < used + needed) size *= 2;
      this.newBuffer(size);
    }
    const floor = this.floor;
    old.copy(this.buffer, floor, this.start, this.pos);
    for (const ref of this.refs) {
      ref.start += floor - this.start;
      ref.at += floor - this.start;
    }
    this.start = floor;
    this.pos = floor + used;
  }
}
