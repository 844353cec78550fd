import { HopperError, ioError } from '../errors.js';
import { encodeBlockHeader } from '../ocf.js';
import { DurableSegmentFiles } from './durable-segments.js';
import { activeSegment, asError, type DurableSegment, type DurableState, type PendingBlock } from './durable-state.js';
import { isSystemError, writeAll, writeAllAsync } from './io.js';
import type { AppendResult } from './results.js';

// The write side of the durable log: appends (every accepted record goes to disk, and to the read
// cache while it keeps up), the block being filled handed to the writer (full, or when the event
// loop turns) and assigned to a segment (planned when none is open: no I/O), the background task
// that has each segment's file made (durable-segments.ts) before it writes the segment's first
// block and then writes the waiting blocks in order, write faults
// (appends refused while one lasts; the retry timer kicks the writes again), and the last resort
// when the disk falls behind (which may create a segment synchronously too).

/**
 * Bytes the background task writes at most in one call (consecutive blocks of one segment): as
 * much as maxPendingDiskBytes lets wait by default. A write's end is seen only when the event loop
 * turns, and a producer that turns it now and then fills more than 1 MiB of blocks between turns:
 * with writes of 1 MiB the waiting bytes grew past the bound, and the last resort wrote them on the
 * event loop (a fifth of the blocks of a million-record burst).
 */
const WRITE_BYTES = 4 * 1024 * 1024;

export class DurableWrites {
  private sealScheduled = false;
  /** The background task writing the waiting blocks. */
  private writing: Promise<void> | undefined;
  /** The blocks the background task is writing (one write of consecutive blocks). */
  private inFlight: PendingBlock[] = [];
  private writeFault: Error | undefined;
  /** The disk fell behind ('diskBehind' announced); cleared when the waiting bytes fall to half the bound. */
  private behind = false;
  /** Synchronous writes made because more than maxPendingDiskBytes waited for the disk. */
  syncWrites = 0;
  private readonly files: DurableSegmentFiles;

  constructor(private readonly log: DurableState) {
    this.files = new DurableSegmentFiles(log);
  }

  /** The error disk writes are failing with, while they are retried. */
  get fault(): Error | undefined {
    return this.writeFault;
  }

  /** The background write under way, if any (for idle()). */
  get busy(): Promise<void> | undefined {
    return this.writing;
  }

  append(record: unknown): AppendResult {
    const log = this.log;
    // While writes fail (they are retried), a record that must go to disk is handled as onFull says.
    if (log.failed !== undefined || log.closed || this.writeFault !== undefined) return 'fault';
    const builder = log.builder;
    const size = builder.stage(record);
    const framing = 36;
    const headerBytes = log.schemaJson.length + 200;
    if (size + framing + headerBytes > log.options.maxDiskBytes) {
      builder.drop();
      return 'too-large';
    }
    const active = activeSegment(log);
    const needsSegment = active === undefined && builder.count === 0;
    if (needsSegment && log.segments.length >= log.options.maxSegments) {
      builder.drop();
      return 'full';
    }
    if (log.fileBytes + builder.stagedPending + framing + (needsSegment ? headerBytes : 0) > log.options.maxDiskBytes) {
      builder.drop();
      return 'full';
    }
    const full = builder.keep();
    const rn = log.nextRn++;
    log.records++;
    if (log.cache.wants(rn)) log.cache.add(rn, record, this.memorySize(record));
    log.committer.append(log.nextRn);
    if (full) this.sealBlock();
    else this.scheduleSeal();
    return 'ok';
  }

  /**
   * A record's size for the read cache, as the memory tier sizes it (its encoding can be several
   * times smaller than the object: counted by it, an 8 MiB cache held some 50 MiB of objects).
   * The record was checked when written: sizing it checks it again, for the records the cache
   * takes only. -1 (left out of the cache) if that fails.
   */
  private memorySize(record: unknown): number {
    try {
      return this.log.codec.validateAndSize(record);
    } catch {
      return -1;
    }
  }

  private scheduleSeal(): void {
    if (this.sealScheduled) return;
    this.sealScheduled = true;
    setImmediate(() => {
      this.sealScheduled = false;
      if (!this.log.closed && this.log.failed === undefined) this.sealBlock();
    });
  }

  /** Hands the block being filled to the writer (creating a segment for it if needed). */
  sealBlock(): void {
    const log = this.log;
    const builder = log.builder;
    if (builder.count === 0 || log.closed) return;
    // No file operation here: a new segment is planned, and its file made by the background task.
    const segment = activeSegment(log) ?? this.files.plan(log.builderFirst);
    const data = builder.parts(log.options.codec);
    let dataLength = 0;
    for (const part of data) dataLength += part.length;
    const parts = [encodeBlockHeader(builder.count, dataLength), ...data, segment.sync];
    let length = 0;
    for (const part of parts) length += part.length;
    const count = builder.count;
    const position = segment.size;
    segment.size += length;
    segment.records += count;
    segment.blockEnds.push(segment.size);
    segment.blockCounts.push(count);
    log.fileBytes += length;
    log.builderFirst += count;
    log.pending.push({ segment, position, length, parts, end: log.builderFirst, done: false, letGo: builder.holdBuffer() });
    log.pendingTotal += length;
    builder.handOff();
    if (segment.size >= log.sealAt) {
      segment.sealed = true;
      log.hooks.onSegment({ action: 'sealed', file: segment.file, bytes: segment.size, records: segment.records });
    }
    this.kickWrites();
    this.lastResort();
  }

  /**
   * Past maxPendingDiskBytes while the background task is writing (a disk slower than the
   * producer), the waiting blocks it is not writing are written synchronously, out of turn (each at
   * its own position): memory stays bounded and no write is refused or held. A block counts as
   * written, for the commit, only once every block before it is (see settleWritten).
   */
  private lastResort(): void {
    const log = this.log;
    const bound = log.options.maxPendingDiskBytes;
    if (log.pendingTotal <= bound || (this.writing === undefined && bound > 0) || this.writeFault !== undefined) return;
    const waiting = log.pendingTotal;
    for (const block of log.pending) {
      if (block.done || this.inFlight.includes(block)) continue;
      if (!block.segment.created) {
        // Being created in the background (a stalled disk): taken over, so that what waits stays
        // bounded. Segments are made in order (their numbers order them at recovery): none after it
        // is made before it.
        this.files.takeOver(block.segment);
        try {
          this.files.createSync(block.segment);
        } catch (err) {
          // Left to the background task, which retries.
          if (!(err instanceof HopperError)) throw err;
          break;
        }
      }
      try {
        writeAll(log.fs, block.segment.fd!, block.parts, block.length, block.position);
      } catch (err) {
        // Left to the background task, which retries.
        if (!isSystemError(err)) throw err;
        break;
      }
      block.done = true;
      log.pendingTotal -= block.length;
      this.syncWrites++;
    }
    if (!this.behind && bound > 0) {
      this.behind = true;
      log.hooks.onDiskBehind?.({ pendingDiskBytes: waiting, maxPendingDiskBytes: bound });
    }
    this.settleWritten();
  }

  /** Blocks on disk at the front of the queue leave it, in order: `written` moves on with them. */
  private settleWritten(): void {
    const log = this.log;
    while (log.pending.length > 0 && log.pending[0]!.done && !this.inFlight.includes(log.pending[0]!)) {
      const block = log.pending.shift()!;
      block.segment.writtenSize = Math.max(block.segment.writtenSize, block.position + block.length);
      log.committer.wrote(block.end);
      // Written, and out of the queue where the reader finds blocks still in memory.
      block.letGo();
    }
    if (log.readerWaiting) log.news();
  }

  /**
   * The background task has `segment`'s file made before writing its first block (see
   * DurableSegmentFiles.create). False when it was not: the log closed meanwhile, or it failed (a
   * write fault, retried).
   */
  private async create(segment: DurableSegment): Promise<boolean> {
    const log = this.log;
    try {
      return await this.files.create(segment);
    } catch (err) {
      if (log.closed) return false;
      // The blocks stay waiting; the retry timer kicks the writes again.
      this.writeFault = asError(err, 'creating a segment', segment.file);
      log.hooks.onFault({ operation: 'write', file: segment.file, error: this.writeFault });
      log.retry.schedule();
      return false;
    }
  }

  /** Starts the background task when blocks wait (also the retry timer's call after a write fault). */
  kickWrites(): void {
    const log = this.log;
    if (this.writing !== undefined || log.closed || log.pending.length === 0) {
      if (this.writeFault !== undefined && log.builder.count > 0 && log.pending.length === 0 && !log.closed) this.sealBlock();
      return;
    }
    this.writing = this.writeLoop().finally(() => {
      this.writing = undefined;
    });
  }

  private async writeLoop(): Promise<void> {
    const log = this.log;
    for (;;) {
      if (log.closed) return;
      const blocks = this.nextWrite();
      if (blocks.length === 0) return;
      const first = blocks[0]!;
      if (!first.segment.created) {
        if (!(await this.create(first.segment))) return;
        if (this.writeFault !== undefined) {
          this.writeFault = undefined;
          log.retry.writesWork();
          log.news();
        }
        continue;
      }
      const parts: Buffer[] = [];
      let length = 0;
      for (const block of blocks) {
        for (const part of block.parts) parts.push(part);
        length += block.length;
      }
      this.inFlight = blocks;
      try {
        await log.fds.track(first.segment.fd!, writeAllAsync(log.fs, first.segment.fd!, parts, length, first.position));
      } catch (err) {
        this.inFlight = [];
        if (log.closed) return;
        if (!isSystemError(err)) throw err;
        // The bytes are still here: rewriting them at the same position is safe.
        this.writeFault = ioError('writing a block', first.segment.file, err);
        log.hooks.onFault({ operation: 'write', file: first.segment.file, error: this.writeFault });
        log.retry.schedule();
        return;
      }
      this.inFlight = [];
      if (this.writeFault !== undefined) {
        this.writeFault = undefined;
        log.retry.writesWork();
        log.news();
      }
      for (const block of blocks) {
        if (block.done) continue;
        block.done = true;
        log.pendingTotal -= block.length;
      }
      // The episode ends once the background writes, not the last resort, brought the bytes down.
      if (this.behind && log.pendingTotal <= log.options.maxPendingDiskBytes / 2) this.behind = false;
      this.settleWritten();
    }
  }

  /**
   * The next write of the background task: the first block not on disk, and the blocks right after
   * it in the same segment while they follow on in the file and are not on disk either, up to
   * WRITE_BYTES (one thread-pool round trip for a burst of blocks, not one per block).
   */
  private nextWrite(): PendingBlock[] {
    const pending = this.log.pending;
    let at = 0;
    while (at < pending.length && pending[at]!.done) at++;
    const blocks: PendingBlock[] = [];
    let length = 0;
    for (; at < pending.length; at++) {
      const block = pending[at]!;
      const last = blocks[blocks.length - 1];
      if (
        last !== undefined &&
        (block.done || block.segment !== last.segment || block.position !== last.position + last.length || length + block.length > WRITE_BYTES)
      )
        break;
      blocks.push(block);
      length += block.length;
    }
    return blocks;
  }

  /**
   * At close: the block being filled and every waiting block written synchronously, in order.
   * Returns the RN every record before which is written; throws when a write fails.
   */
  writeOutSync(): number {
    const log = this.log;
    let written = log.committer.written;
    this.sealBlock();
    while (log.pending.length > 0) {
      const block = log.pending[0]!;
      // A creation under way was stopped by stopCreating(): what it made goes (by identity), and the
      // file is made here, under its name or, if that is taken meanwhile, a later one.
      if (!block.segment.created) this.files.createSync(block.segment);
      // A block in flight is written again, with the same bytes at the same place.
      if (!block.done || this.inFlight.includes(block)) writeAll(log.fs, block.segment.fd!, block.parts, block.length, block.position);
      if (!block.done) log.pendingTotal -= block.length;
      block.segment.writtenSize = Math.max(block.segment.writtenSize, block.position + block.length);
      written = block.end;
      log.pending.shift();
      block.letGo();
    }
    return written;
  }

  /** At close, first: see DurableSegmentFiles.stop (writeOutSync makes the file again). */
  stopCreating(): void {
    this.files.stop();
  }
}
