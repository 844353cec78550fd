import crypto from 'node:crypto';
import type nodeFs from 'node:fs';
import path from 'node:path';
import { ioError } from '../errors.js';
import { SEGMENT_DRAFT, SEGMENT_DRAFT_SYNC } from '../lock.js';
import {
  CREATE_FLAGS,
  closeQuietly,
  fsAsync,
  unlinkOurs,
  unlinkOursAsync,
  unlinkQuietly,
  unlinkQuietlyAsync,
  writeAll,
  writeAllAsync,
  type SegmentDirectory,
  type SegmentFileSystem,
} from './io.js';
import { joinChunks, segmentFileName, type Chunk } from './ledger.js';

// Creating segment files, for the writer: the bytes that start a segment (its header, and any
// blocks waiting) are written into a draft in the draft directory (the lock directory), whose
// identity (device, inode) is taken from its descriptor; the draft is linked under the segment's
// name (link(2) never replaces a file that is there) and unlinked. So a segment file never exists
// without its header, and a crash leaves at most a draft, which goes with the stale lock (and is
// removed at the next open). On the thread pool for the background task, synchronously for the
// last resort (each under a draft name of its own); a close while a creation is under way leaves
// nothing behind. Both segment logs use it: the plain one (writer.ts) and the durable one
// (durable-writes.ts), whose segments carry their record numbers in the header.

/** A segment file made: the descriptor to write to, and the identity every later check compares. */
export interface Created {
  fd: number;
  dev: number;
  ino: number;
}

/** The name a segment is created under: a foreign file under it makes the creation take the next number. */
export interface PlannedFile {
  seq: number;
  file: string;
}

/** Where segment numbers come from (the index, or the durable log's state). */
export interface SegmentNumbers {
  nextSeq: number;
}

/** The bytes a segment file starts with (its header, and any blocks waiting). */
export type FirstBytes = Pick<Chunk, 'parts' | 'length'>;

/** A segment file being created in the background: its draft's descriptor and identity, and the name it is linked under. */
interface Creation {
  draft: string;
  fd: number;
  stat: nodeFs.Stats | undefined;
  /** The name a link is being (or was) made under. */
  linking: string | undefined;
  linked: string | undefined;
  /** Closed or cancelled: the task goes no further than its next step. */
  stopped: boolean;
}

export class SegmentCreator {
  private closed = false;
  /** The file being created in the background. */
  private creating: Creation | undefined;

  constructor(
    private readonly fs: SegmentFileSystem,
    private readonly directory: SegmentDirectory,
    private readonly numbers: SegmentNumbers,
  ) {}

  /**
   * Creates `segment`'s file holding `chunks` (its header first), synchronously: the last resort,
   * and a log that writes through. A foreign file under the segment's name makes it take the next
   * number. Throws ERR_HOPPER_IO (nothing is left then but, at worst, the draft).
   */
  createSync(segment: PlannedFile, chunks: FirstBytes[]): Created {
    const lost = this.directory.verify();
    if (lost !== undefined) throw ioError('creating a segment', this.directory.path, lost);
    const draft = path.join(this.directory.draftDir, SEGMENT_DRAFT_SYNC);
    const { parts, length } = joinChunks(chunks);
    let fd: number;
    try {
      fd = this.fs.openSync(draft, CREATE_FLAGS, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') unlinkQuietly(this.fs, draft); // our own, from a failed attempt
      throw ioError('creating a segment', draft, err);
    }
    let stat: nodeFs.Stats;
    try {
      try {
        writeAll(this.fs, fd, parts, length, 0);
      } catch (err) {
        throw ioError('writing a block', draft, err);
      }
      try {
        stat = this.fs.fstatSync(fd);
      } catch (err) {
        throw ioError('creating a segment', draft, err);
      }
      for (;;) {
        try {
          this.fs.linkSync(draft, segment.file);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('creating a segment', segment.file, err);
          this.renumber(segment);
        }
      }
    } catch (err) {
      closeQuietly(this.fs, fd);
      unlinkQuietly(this.fs, draft);
      throw err;
    }
    unlinkQuietly(this.fs, draft);
    return { fd, dev: stat.dev, ino: stat.ino };
  }

  /**
   * {@link createSync} off the event loop, the same steps in the same order: the directory and the
   * lock checked, the draft written (`chunk`, the header) and its identity taken from its
   * descriptor, linked under the segment's name, the draft unlinked. Once the segment is created,
   * `commit` is called on the same tick as the last check that the creation goes on (so a close,
   * or a {@link cancel}, always finds the segment either created, or here), and the promise
   * resolves with true; with false when it was stopped meanwhile, having closed the descriptor and
   * removed what it made (see {@link abandon}). Rejects with ERR_HOPPER_IO.
   */
  async createAsync(segment: PlannedFile, chunk: FirstBytes, commit: (made: Created) => void): Promise<boolean> {
    const draft = path.join(this.directory.draftDir, SEGMENT_DRAFT);
    const creation: Creation = { draft, fd: -1, stat: undefined, linking: undefined, linked: undefined, stopped: this.closed };
    if (creation.stopped) return false;
    this.creating = creation;
    try {
      const lost = await this.directory.verifyAsync();
      if (creation.stopped) return false;
      if (lost !== undefined) throw ioError('creating a segment', this.directory.path, lost);
      try {
        creation.fd = await fsAsync.open(this.fs, draft, CREATE_FLAGS, 0o644);
      } catch (err) {
        if (creation.stopped) return false;
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') await unlinkQuietlyAsync(this.fs, draft); // our own, from a failed attempt
        throw ioError('creating a segment', draft, err);
      }
      return await this.fill(creation, segment, chunk, commit);
    } finally {
      if (this.creating === creation) this.creating = undefined;
    }
  }

  /** The steps of {@link createAsync} once its draft is open. */
  private async fill(creation: Creation, segment: PlannedFile, chunk: FirstBytes, commit: (made: Created) => void): Promise<boolean> {
    const { draft } = creation;
    try {
      if (creation.stopped) return await this.abandon(creation);
      try {
        await writeAllAsync(this.fs, creation.fd, chunk.parts, chunk.length, 0);
      } catch (err) {
        throw ioError('writing a block', draft, err);
      }
      if (creation.stopped) return await this.abandon(creation);
      try {
        creation.stat = await fsAsync.fstat(this.fs, creation.fd);
      } catch (err) {
        throw ioError('creating a segment', draft, err);
      }
      while (creation.linked === undefined) {
        if (creation.stopped) return await this.abandon(creation);
        try {
          // Named before the call: a close while it runs removes the name too, if it is this file.
          creation.linking = segment.file;
          await fsAsync.link(this.fs, draft, segment.file);
          creation.linked = segment.file;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('creating a segment', segment.file, err);
          // Once stopped, the name may be the one a synchronous creation of the same segment took:
          // the segment is that creation's now, and keeps its number.
          if (creation.stopped) return await this.abandon(creation);
          this.renumber(segment);
        }
      }
      await unlinkQuietlyAsync(this.fs, draft);
      if (creation.stopped) return await this.abandon(creation);
      commit({ fd: creation.fd, dev: creation.stat.dev, ino: creation.stat.ino });
      return true;
    } catch (err) {
      if (creation.stopped) return await this.abandon(creation);
      await fsAsync.close(this.fs, creation.fd);
      await unlinkQuietlyAsync(this.fs, draft);
      throw err;
    }
  }

  /**
   * The log closes: no creation goes on past its next step (see {@link cancel}), and none starts.
   */
  close(): void {
    this.closed = true;
    this.cancel();
  }

  /**
   * The creation under way, if any, goes no further than its next step: it resolves with false,
   * and never calls its commit. What it made so far goes at once, the draft and the name being
   * linked, each only while it is still the file made (its identity from the descriptor, which
   * stays the task's: a write may be using it); what it makes in the call in flight goes when that
   * call lands ({@link abandon}). The draft goes first: a link in flight then either finds no draft
   * to link, or has linked already and its name goes next, so that the segment's name is free for
   * a synchronous creation right after. The durable log's last resort takes a stalled creation
   * over this way, and makes the file itself (synchronously, under a draft name of its own).
   */
  cancel(): void {
    const creation = this.creating;
    if (creation === undefined) return;
    creation.stopped = true;
    this.creating = undefined;
    if (creation.fd < 0) return;
    let stat = creation.stat;
    try {
      stat ??= this.fs.fstatSync(creation.fd);
      for (const file of [creation.draft, creation.linking])
        if (file !== undefined) unlinkOurs(this.fs, this.directory, { file, dev: stat.dev, ino: stat.ino });
    } catch {
      // Left to the task, which tries again once its call in flight lands (see abandon()).
    }
  }

  /** A foreign file holds the segment's name: it takes the next number (past every segment planned). */
  private renumber(segment: PlannedFile): void {
    segment.seq = this.numbers.nextSeq++;
    segment.file = path.join(this.directory.path, segmentFileName(segment.seq));
  }

  /**
   * The log closed while `creation` was under way: its descriptor is closed, and the draft and the
   * file linked into place, if there are, are removed, each only while it is still the file made.
   * {@link close} removed what was there then.
   */
  private async abandon(creation: Creation): Promise<false> {
    let stat = creation.stat;
    try {
      stat ??= await fsAsync.fstat(this.fs, creation.fd);
    } catch {
      // Its identity unknown, nothing is removed by name: a draft goes with the lock.
    }
    await fsAsync.close(this.fs, creation.fd);
    if (stat === undefined) return false;
    for (const file of [creation.draft, creation.linking]) {
      if (file !== undefined) await unlinkOursAsync(this.fs, this.directory, { file, dev: stat.dev, ino: stat.ino }).catch(() => undefined);
    }
    return false;
  }
}

/**
 * Random 16-byte sync markers, one per segment, drawn from a pool that is refilled on the thread
 * pool (`crypto.randomBytes` without a callback is a synchronous call on the event loop). The
 * first pool is made synchronously, at open; an empty pool (a segment per turn for a long while) is
 * refilled synchronously too.
 */
export class SyncMarkers {
  private static readonly COUNT = 64;
  private pool = crypto.randomBytes(16 * SyncMarkers.COUNT);
  private used = 0;
  private refilling = false;

  next(): Buffer {
    if (this.used === SyncMarkers.COUNT) {
      this.pool = crypto.randomBytes(16 * SyncMarkers.COUNT);
      this.used = 0;
    }
    const marker = this.pool.subarray(16 * this.used, 16 * ++this.used);
    if (this.used >= SyncMarkers.COUNT / 2 && !this.refilling) this.refill();
    return marker;
  }

  private refill(): void {
    this.refilling = true;
    crypto.randomBytes(16 * SyncMarkers.COUNT, (err, fresh) => {
      this.refilling = false;
      // Without fresh bytes, the pool is refilled synchronously once it runs out.
      if (err) return;
      this.pool = fresh;
      this.used = 0;
    });
  }
}
