import { corruptSegmentError, ioError } from '../errors.js';
import { decodeRecord } from './block-reader.js';
import { blockFromBytes, openForReading, readAlone, readBytes } from './durable-read-io.js';
import type { DurableSegment, DurableState } from './durable-state.js';
import { isSystemError } from './io.js';
import { Corruption, LostRecords, WAIT } from './results.js';

// The read side of the durable log: the next record in RN order, from the read cache, from a block
// still waiting for the disk, or from its block in a segment file (opened and read on the thread
// pool: durable-read-io.ts);
// which block holds an RN; gaps passed over; damage recovery found, met when the reader gets there;
// corruption met while reading (the `onCorrupt` policy: the error, or the records lost made a gap).
// Reading never removes anything.

/** What the read side asks of the rest of the log. */
export interface DurableReadsPeers {
  /** Hands the block being filled to the writer (its records are read from there). */
  sealBlock(): void;
  /** Acknowledges records delivered (ack 'delivered'). */
  ack(count: number): void;
}

/**
 * The blocks after the one being read, read from the file in one read (up to READ_BYTES) while
 * the reader decodes that one: taken by `next()` block by block when it gets there, dropped when
 * it does not. A read's end is seen only when the event loop turns, and a drain that meets a block
 * not seen read yet stops for that turn: one block per read stopped it at every block.
 */
interface ReadAhead {
  segment: DurableSegment;
  /** The first block read, and the block after the last one. */
  block: number;
  endBlock: number;
  start: number;
  end: number;
  /** The bytes read, once read. */
  bytes: Buffer | undefined;
  /** The read failed: `next()` reads the block again itself, and reports what it finds. */
  failed: boolean;
  task: Promise<void>;
}

/** Bytes of one read ahead at most (a block larger than this is read alone). */
const READ_BYTES = 1024 * 1024;

/** The block being read: its records' bytes, and where the next record starts. */
interface ReadState {
  segment: DurableSegment;
  block: number;
  data: Buffer;
  pos: number;
  /** RN of the record at `pos`. */
  rn: number;
  /** RN after the block's last record. */
  end: number;
}

export class DurableReads {
  /** Where the last block was found: the next search starts there. */
  private located: { segment: DurableSegment; block: number; blockFirst: number } | undefined;
  private read: ReadState | undefined;
  private readFd: { segment: DurableSegment; fd: number } | undefined;
  private loading: Promise<void> | undefined;
  private ahead: ReadAhead | undefined;
  /** `next()` said WAIT for the read-ahead: its end tells the channel. */
  private waitingAhead = false;
  private readFailure: Error | undefined;
  private pendingLost: LostRecords | undefined;

  constructor(
    private readonly log: DurableState,
    private readonly peers: DurableReadsPeers,
    /** Places in the backlog where recovery found damage, not reported yet (see damageBefore). */
    private damageLeft: number,
  ) {}

  /** The block load under way, if any (for idle()). */
  get busy(): Promise<void> | undefined {
    return this.loading ?? this.ahead?.task;
  }

  /** Bytes of the block being read, and of the one read ahead. */
  get bufferBytes(): number {
    return (this.read?.data.length ?? 0) + (this.ahead === undefined ? 0 : this.ahead.end - this.ahead.start);
  }

  /**
   * The next record in RN order: from the read cache, or from its block (read on the thread
   * pool: WAIT until it is loaded). Throws when reading failed for good.
   */
  next(): unknown {
    const log = this.log;
    log.cache.readerAsked = true;
    if (this.readFailure !== undefined) {
      const err = this.readFailure;
      this.readFailure = undefined;
      throw err;
    }
    const lost = this.takeLost();
    if (lost !== undefined) return lost;
    for (;;) {
      if (this.damageLeft > 0) {
        const damaged = this.damageBefore(log.cursor);
        if (damaged !== undefined) return damaged;
      }
      const rn = log.acks.skipGap(log.cursor);
      log.cursor = rn;
      if (rn >= log.nextRn) return WAIT;
      // Cached records the cursor passed (skipped as damaged on disk) are let go.
      if (log.cache.seek(rn)) {
        const value = log.cache.take();
        // The disk copy of the record is passed over: the block being read moves on with it.
        if (this.read !== undefined && this.read.rn === rn) this.read = undefined;
        return this.delivered(rn, value);
      }
      const read = this.read;
      if (read !== undefined && read.rn === rn && read.rn < read.end) {
        const decoded = decodeRecord(log.codec, read.data, read.pos, true);
        if (decoded.offset < 0 || decoded.offset > read.data.length) {
          const at = read.segment.blockEnds[read.block - 1] ?? read.segment.headerLength;
          const skipped = this.corrupt(read.segment, at, 'a record does not decode', read.end - rn);
          if (skipped === undefined) throw this.takeReadFailure();
          return skipped;
        }
        read.pos = decoded.offset;
        read.rn++;
        if (read.rn === read.end) this.read = undefined;
        return this.delivered(rn, decoded.value);
      }
      // Records in the block being filled are read from it once it is handed to the writer.
      if (rn >= log.builderFirst) this.peers.sealBlock();
      const found = this.locate(rn);
      if (found === undefined) return WAIT;
      const { segment, block, blockFirst } = found;
      const start = block === 0 ? segment.headerLength : segment.blockEnds[block - 1]!;
      const end = segment.blockEnds[block]!;
      const pendingBlock = log.pending.find((p) => p.segment === segment && p.position === start);
      if (pendingBlock !== undefined) {
        const bytes = pendingBlock.parts.length === 1 ? pendingBlock.parts[0]! : Buffer.concat(pendingBlock.parts);
        try {
          const checked = blockFromBytes(bytes, start, segment);
          this.seat(segment, block, blockFirst, checked, rn);
        } catch (err) {
          throw err instanceof Corruption ? new Error(`hopper-streams: a block waiting for the disk does not frame: ${err.message}`) : err;
        }
        continue;
      }
      if (segment.writtenSize < end) {
        log.readerWaiting = true;
        return WAIT;
      }
      const ahead = this.ahead;
      if (ahead !== undefined && this.loading === undefined) {
        if (ahead.segment === segment && ahead.block <= block && block < ahead.endBlock) {
          if (ahead.bytes === undefined && !ahead.failed) {
            this.waitingAhead = true;
            return WAIT;
          }
          if (block + 1 === ahead.endBlock || ahead.bytes === undefined) this.ahead = undefined;
          if (ahead.bytes !== undefined) {
            let data: Buffer | undefined;
            try {
              data = blockFromBytes(ahead.bytes.subarray(start - ahead.start, end - ahead.start), start, segment);
            } catch (err) {
              // Read again below, where damage is reported as the policy says.
              if (!(err instanceof Corruption)) throw err;
              this.ahead = undefined;
            }
            if (data !== undefined) {
              this.seat(segment, block, blockFirst, data, rn);
              this.readAhead();
              continue;
            }
          }
        } else {
          this.ahead = undefined;
        }
      }
      if (this.loading === undefined) this.loading = this.load(segment, block, blockFirst, start, end, rn);
      return WAIT;
    }
  }

  /**
   * Damage recovery found in a segment, once the reader has read the blocks before it: the error
   * (onCorrupt 'error'), or a LostRecords of 1, the place it held in the backlog (how many records
   * the damaged bytes held is not known; the RNs no file holds are a gap already).
   */
  private damageBefore(rn: number): LostRecords | undefined {
    const log = this.log;
    for (const segment of log.segments) {
      if (segment.damage === undefined || segment.first + segment.records !== rn) continue;
      const { offset, problem } = segment.damage;
      segment.damage = undefined;
      log.records--;
      this.damageLeft--;
      if (log.options.onCorrupt === 'error') throw corruptSegmentError(segment.file, offset, problem);
      return new LostRecords(1, segment.file, offset, `${problem}; the records after it in this file are lost (at least one; how many is not known)`);
    }
    return undefined;
  }

  private delivered(rn: number, value: unknown): unknown {
    const log = this.log;
    log.cursor = rn + 1;
    log.records--;
    log.acks.deliver(rn);
    if (rn < log.counters.deliveredBefore) log.counters.redelivered++;
    if (log.options.ack === 'delivered') this.peers.ack(1);
    return value;
  }

  /**
   * The segment and block holding `rn`. Reads go forward, so the walk starts where the last one
   * ended when it can: a backlog of many blocks costs one step per block, not a walk from the start.
   */
  private locate(rn: number): { segment: DurableSegment; block: number; blockFirst: number } | undefined {
    const segments = this.log.segments;
    const hint = this.located;
    const start = hint !== undefined && hint.blockFirst <= rn ? segments.indexOf(hint.segment) : -1;
    for (let index = Math.max(0, start); index < segments.length; index++) {
      const segment = segments[index]!;
      if (rn < segment.first || rn >= segment.first + segment.records) continue;
      const fromHint = index === start && hint !== undefined;
      let block = fromHint ? hint.block : 0;
      let first = fromHint ? hint.blockFirst : segment.first;
      for (; block < segment.blockCounts.length; block++) {
        const count = segment.blockCounts[block]!;
        if (rn < first + count) {
          this.located = { segment, block, blockFirst: first };
          return this.located;
        }
        first += count;
      }
    }
    if (start > 0) {
      this.located = undefined;
      return this.locate(rn);
    }
    return undefined;
  }

  /** Makes the block the one being read, positioned at `rn`: the records before it are decoded and passed over. */
  private seat(segment: DurableSegment, block: number, blockFirst: number, data: Buffer, rn: number): void {
    const state: ReadState = { segment, block, data, pos: 0, rn: blockFirst, end: blockFirst + segment.blockCounts[block]! };
    while (state.rn < rn) {
      const decoded = decodeRecord(this.log.codec, data, state.pos, true);
      if (decoded.offset < 0) break;
      state.pos = decoded.offset;
      state.rn++;
    }
    this.read = state;
  }

  private async load(segment: DurableSegment, block: number, blockFirst: number, start: number, end: number, rn: number): Promise<void> {
    const log = this.log;
    try {
      if (this.readFd?.segment !== segment) {
        this.closeReadFd();
        const fd = await openForReading(log, segment);
        // Let go meanwhile (the log closed): the fd goes too.
        if (log.closed) {
          log.fds.close(fd);
          return;
        }
        this.readFd = { segment, fd };
      }
      const buffer = await readBytes(log, this.readFd.fd, start, end);
      if (log.closed) return;
      const data = blockFromBytes(buffer, start, segment);
      this.seat(segment, block, blockFirst, data, rn);
      this.readAhead();
    } catch (err) {
      if (log.closed) return;
      if (err instanceof Corruption) {
        // A file gone or replaced loses what it held from here on; damage in a block, that block.
        const count = err.loss === 'rest-of-segment' ? segment.first + segment.records - rn : blockFirst + segment.blockCounts[block]! - rn;
        const lost = this.corrupt(segment, err.loss === 'rest-of-segment' ? err.offset : start, err.message, count);
        if (lost !== undefined) this.pendingLost = lost;
      } else if (isSystemError(err)) {
        this.readFailure = ioError('reading a segment', segment.file, err);
      } else {
        this.readFailure = err as Error;
      }
    } finally {
      this.loading = undefined;
      log.news();
    }
  }

  /**
   * Starts reading the blocks after the one being read, in one read of up to READ_BYTES, when
   * none is read ahead yet: those of the same segment that are on disk, from the next one on, and
   * neither waiting for the disk in memory nor in the read cache (then no file read is needed).
   */
  private readAhead(): void {
    const read = this.read;
    const readFd = this.readFd;
    if (read === undefined || this.ahead !== undefined || readFd?.segment !== read.segment) return;
    const log = this.log;
    const segment = read.segment;
    const block = read.block + 1;
    if (block >= segment.blockCounts.length) return;
    const start = segment.blockEnds[block - 1]!;
    if (segment.writtenSize < segment.blockEnds[block]! || log.cache.holds(read.end)) return;
    let endBlock = block;
    let end = start;
    while (endBlock < segment.blockCounts.length) {
      const next = segment.blockEnds[endBlock]!;
      if (next > segment.writtenSize) break;
      if (endBlock > block && (next - start > READ_BYTES || readAlone(segment, block) || readAlone(segment, endBlock))) break;
      if (log.pending.some((p) => p.segment === segment && p.position === end)) break;
      end = next;
      endBlock++;
    }
    if (endBlock === block) return;
    const ahead: ReadAhead = { segment, block, endBlock, start, end, bytes: undefined, failed: false, task: Promise.resolve() };
    ahead.task = readBytes(log, readFd.fd, start, end).then(
      (bytes) => {
        ahead.bytes = bytes;
        this.aheadLanded(ahead);
      },
      () => {
        ahead.failed = true;
        this.aheadLanded(ahead);
      },
    );
    this.ahead = ahead;
  }

  private aheadLanded(ahead: ReadAhead): void {
    if (this.ahead !== ahead || !this.waitingAhead) return;
    this.waitingAhead = false;
    this.log.news();
  }

  /** Damage met while reading: the error, or (onCorrupt 'skip') the records lost, skipped over and made a gap. */
  private corrupt(segment: DurableSegment, offset: number, problem: string, count: number): LostRecords | undefined {
    const log = this.log;
    if (log.options.onCorrupt === 'error') {
      this.readFailure = corruptSegmentError(segment.file, offset, problem);
      return undefined;
    }
    const rn = log.cursor;
    log.acks.addGap(rn, rn + count);
    log.cursor = rn + count;
    log.records -= count;
    this.read = undefined;
    return new LostRecords(count, segment.file, offset, problem);
  }

  /** Lets the channel take what `next()` gave as WAIT: a LostRecords found while loading comes first. */
  takeLost(): LostRecords | undefined {
    const lost = this.pendingLost;
    this.pendingLost = undefined;
    return lost;
  }

  private takeReadFailure(): Error {
    const err = this.readFailure ?? new Error('hopper-streams: reading failed');
    this.readFailure = undefined;
    return err;
  }

  /** A segment is being removed: its read fd is closed if the reader holds it. */
  letGo(segment: DurableSegment): void {
    if (this.readFd?.segment === segment) this.closeReadFd();
  }

  closeReadFd(): void {
    this.ahead = undefined;
    if (this.readFd === undefined) return;
    this.log.fds.close(this.readFd.fd);
    this.readFd = undefined;
  }
}
