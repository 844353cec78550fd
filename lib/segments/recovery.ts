import nodeFs from 'node:fs';
import path from 'node:path';
import { ioError, notOursError, schemaMismatchError } from '../errors.js';
import type { Gap } from './acks.js';
import { fsyncDirSync, type DurableFileSystem } from './durable-io.js';
import { listSegments, type DurableScan, type ListedSegment } from './durable-scan.js';
import { closeQuietly } from './io.js';
import { LEDGER_FILE, readLedgerFile, writeLedgerFileSync, type LedgerPlace, type LedgerRead, type LedgerState } from './ledger-file.js';

// Recovery of a durable channel at open (docs/durable-design.md §4.2): one bounded scan of the
// segment files by their framing only (durable-scan.ts), a decision with a defined outcome
// for every state a crash can leave, then the few writes it calls for (unlink what is
// acknowledged, truncate torn tails, rewrite the ledger file). Every step is idempotent: a crash
// during recovery leads the next recovery to the same result. It never refuses to open because of
// what a crash left; it refuses only a foreign ledger file and a backlog of another schema.

/** A torn block cut off at open: it is not corruption, a crash stopped its write. */
export interface TornReport {
  file: string;
  /** Where the file was cut. */
  offset: number;
  /** Bytes cut off. */
  bytes: number;
  /** Records the torn block held, when its header says (undefined when unknown). */
  records: number | undefined;
}

/** A segment recovery keeps: sealed, never appended to, read from `first`. */
export interface RecoveredSegment {
  seq: number;
  file: string;
  dev: number;
  ino: number;
  first: number;
  size: number;
  records: number;
  codec: string;
  sync: Buffer;
  headerLength: number;
  blockEnds: number[];
  blockCounts: number[];
  /** Where damage (not a torn tail) starts: the reader reports a Corruption there. */
  damagedAt?: number | undefined;
  /** What is wrong there. */
  damage?: string | undefined;
}

/** What recovery decided: pure data, applied by {@link applyPlan}. */
export interface RecoveryPlan {
  ledger: LedgerRead;
  acked: number;
  /** The ledger's delivery high-water mark (redeliveries are counted against it). */
  delivered: number;
  segments: RecoveredSegment[];
  /** Files to unlink, each with the identity it was scanned with. */
  unlink: Array<{ file: string; dev: number; ino: number; why: 'acknowledged' | 'stale' | 'torn' }>;
  truncate: Array<{ file: string; dev: number; ino: number; to: number }>;
  torn: TornReport[];
  /** RN ranges that will never be delivered. */
  gaps: Gap[];
  /** Records of those gaps at or above `acked` (reported as `missing`). */
  missing: number;
  /** Damage found (not a torn tail): the reader reports it when it gets there. */
  damage: Array<{ file: string; offset: number; reason: string }>;
  /** Files that could not be checked. */
  faults: Error[];
  /** Where delivery starts. */
  cursor: number;
  /** The RN of the next record written. */
  nextRn: number;
  nextSeq: number;
  /** The ledger file is written at the end (it is missing, damaged, or behind what was decided). */
  rewrite: boolean;
}

/**
 * Decides what to do with what the directory holds (steps 1-5 of §4.2), without I/O. Throws
 * ERR_HOPPER_IO for a foreign ledger file and ERR_HOPPER_SCHEMA_MISMATCH for a backlog written
 * with another schema than `schema` (the current codec's `avro.schema`).
 */
export function decide(dir: string, ledger: LedgerRead, listed: readonly ListedSegment[], schema: string, highestSeq: number): RecoveryPlan {
  if (ledger.status === 'foreign')
    throw notOursError(path.join(dir, LEDGER_FILE), `is not a hopper-streams ledger file (${ledger.reason}): it is left as it is`);
  const sorted = [...listed].sort((a, b) => a.seq - b.seq);
  const durable = sorted.filter((s): s is ListedSegment & { scan: { kind: 'durable' } & DurableScan } => s.scan.kind === 'durable');
  for (const s of durable) if (s.scan.schema !== schema) throw schemaMismatchError(s.file);
  const state = ledger.status === 'ok' ? ledger.state : undefined;
  let acked = state?.acked ?? durable[0]?.scan.first ?? 0;
  const synced = state?.synced ?? 0;
  const plan: RecoveryPlan = {
    ledger,
    acked,
    delivered: state?.delivered ?? acked,
    segments: [],
    unlink: [],
    truncate: [],
    torn: [],
    gaps: [],
    missing: 0,
    damage: [],
    faults: [],
    cursor: acked,
    nextRn: acked,
    nextSeq: Math.max(state?.nextSeq ?? 1, highestSeq + 1),
    rewrite: state === undefined,
  };
  const lastDurableSeq = durable.length > 0 ? durable[durable.length - 1]!.seq : -1;
  for (const s of sorted) {
    const scan = s.scan;
    if (scan.kind === 'stale') plan.unlink.push({ file: s.file, dev: scan.dev, ino: scan.ino, why: 'stale' });
    else if (scan.kind === 'unreadable') plan.faults.push(scan.error);
    else if (scan.kind === 'headless') {
      if (s.seq > lastDurableSeq) {
        plan.unlink.push({ file: s.file, dev: scan.dev, ino: scan.ino, why: 'torn' });
        plan.torn.push({ file: s.file, offset: 0, bytes: scan.size, records: undefined });
      } else {
        plan.damage.push({ file: s.file, offset: 0, reason: 'the segment header is cut short' });
      }
    }
  }
  for (const s of durable) {
    const scan = s.scan;
    let blockEnds = scan.blockEnds;
    let blockCounts = scan.blockCounts;
    let size = scan.size;
    let damagedAt: number | undefined;
    if (scan.problem !== undefined) {
      const blockFirst = scan.first + scan.records;
      if (scan.problem.endsInside && blockFirst >= synced) {
        const head = tornRecords(scan);
        plan.torn.push({ file: s.file, offset: scan.problem.offset, bytes: scan.size - scan.problem.offset, records: head });
        size = scan.problem.offset;
        if (blockEnds.length === 0) {
          plan.unlink.push({ file: s.file, dev: scan.dev, ino: scan.ino, why: 'torn' });
          continue;
        }
        plan.truncate.push({ file: s.file, dev: scan.dev, ino: scan.ino, to: size });
      } else {
        damagedAt = scan.problem.offset;
        plan.damage.push({ file: s.file, offset: scan.problem.offset, reason: scan.problem.reason });
      }
    }
    const end = scan.first + scan.records;
    if (end <= acked && damagedAt === undefined) {
      plan.unlink.push({ file: s.file, dev: scan.dev, ino: scan.ino, why: 'acknowledged' });
      continue;
    }
    if (blockEnds.length === 0 && damagedAt === undefined) {
      // A header and no block: nothing to read (a crash right after the header's link).
      plan.unlink.push({ file: s.file, dev: scan.dev, ino: scan.ino, why: 'torn' });
      continue;
    }
    blockEnds = [...blockEnds];
    blockCounts = [...blockCounts];
    plan.segments.push({
      seq: s.seq,
      file: s.file,
      dev: scan.dev,
      ino: scan.ino,
      first: scan.first,
      size,
      records: scan.records,
      codec: scan.codec,
      sync: scan.sync,
      headerLength: scan.headerLength,
      blockEnds,
      blockCounts,
      damagedAt,
      damage: scan.problem !== undefined && damagedAt !== undefined ? scan.problem.reason : undefined,
    });
  }
  // Records between the acknowledged position, the segments kept and the next RN that no file holds.
  let at = acked;
  for (const segment of plan.segments) {
    if (segment.first > at) plan.gaps.push({ start: at, end: segment.first });
    at = Math.max(at, segment.first + segment.records);
  }
  plan.missing = plan.gaps.reduce((n, gap) => n + gap.end - gap.start, 0);
  // Only the records before the first segment kept are skipped: acked moves over that leading gap.
  if (plan.gaps[0] !== undefined && plan.gaps[0].start === acked) {
    acked = plan.gaps[0].end;
  }
  plan.cursor = acked;
  plan.nextRn = Math.max(acked, at, state?.acked ?? 0);
  if (acked !== plan.acked) plan.rewrite = true;
  plan.acked = acked;
  if (plan.unlink.length > 0 || plan.truncate.length > 0 || (state !== undefined && state.nextSeq < plan.nextSeq)) plan.rewrite = true;
  return plan;
}

/** Records a torn block held, when its count can be read (its header came whole and is not zeros). */
function tornRecords(scan: DurableScan): number | undefined {
  return scan.problem?.count;
}

/** Options of {@link recover}. */
export interface RecoverOptions {
  channel: string;
  /** The current codec's `avro.schema`, as the writer writes it. */
  schema: string;
  /** fsync 'never': no sync of truncations or of the ledger file. */
  sync: boolean;
  /** Where the ledger file goes (the channel and lock directories). */
  place: LedgerPlace;
}

/** The outcome of recovery, for the log and the channel. */
export interface Recovered extends RecoveryPlan {
  /** Records recovery found to deliver (from `cursor`, gaps left out). */
  records: number;
  /** Bytes of the segment files kept. */
  bytes: number;
  /** Files unlinked. */
  removed: string[];
}

/**
 * Recovers a durable channel directory: scans, decides, then unlinks acknowledged, stale and
 * torn-empty files (only if still the file scanned), truncates torn tails (then fsyncs them), and
 * writes the ledger file if anything changed. Synchronous (open may be); idempotent.
 */
export function recover(fs: DurableFileSystem, dir: string, options: RecoverOptions): Recovered {
  const ledger = readLedgerFileOrFail(fs, dir, options.channel);
  const { listed, highestSeq } = listSegments(fs, dir);
  const plan = decide(dir, ledger, listed, options.schema, highestSeq);
  return applyPlan(fs, dir, plan, options);
}

function readLedgerFileOrFail(fs: DurableFileSystem, dir: string, channel: string): LedgerRead {
  try {
    return readLedgerFile(fs, dir, channel);
  } catch (err) {
    throw ioError('reading the ledger file', path.join(dir, LEDGER_FILE), err);
  }
}

/** Applies a plan (step 5 of §4.2) in an order that a crash at any point leaves for the next recovery to finish. */
export function applyPlan(fs: DurableFileSystem, dir: string, plan: RecoveryPlan, options: RecoverOptions): Recovered {
  const removed: string[] = [];
  // Truncations first, synced: a torn tail is gone before the ledger says anything about it.
  for (const cut of plan.truncate) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(cut.file, TRUNCATE_FLAGS);
      const stat = fs.fstatSync(fd);
      if (!stat.isFile() || stat.dev !== cut.dev || stat.ino !== cut.ino) continue;
      if (stat.size > cut.to) fs.ftruncateSync(fd, cut.to);
      if (options.sync) fs.fsyncSync(fd);
    } catch (err) {
      throw ioError('cutting off a torn tail', cut.file, err);
    } finally {
      if (fd !== undefined) closeQuietly(fs, fd);
    }
  }
  // The ledger before the unlinks of acknowledged files: it never names a position inside a file
  // that is gone (Vector's #25570), and an acknowledged file that comes back is unlinked again.
  const state: LedgerState = {
    channel: options.channel,
    acked: plan.acked,
    delivered: Math.max(plan.delivered, plan.acked),
    synced: options.sync ? plan.nextRn : 0,
    nextSeq: plan.nextSeq,
    writtenAt: new Date().toISOString(),
  };
  if (plan.rewrite) {
    try {
      writeLedgerFileSync(fs, options.place, state, options.sync);
    } catch (err) {
      throw ioError('writing the ledger file', path.join(dir, LEDGER_FILE), err);
    }
  }
  for (const gone of plan.unlink) {
    try {
      const stat = fs.lstatSync(gone.file);
      if (!stat.isFile() || stat.dev !== gone.dev || stat.ino !== gone.ino) continue;
      fs.unlinkSync(gone.file);
      removed.push(gone.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw ioError('removing a segment at open', gone.file, err);
    }
  }
  if (removed.length > 0 && options.sync) {
    try {
      fsyncDirSync(fs, dir);
    } catch (err) {
      throw ioError('syncing the channel directory', dir, err);
    }
  }
  let records = 0;
  let bytes = 0;
  for (const segment of plan.segments) {
    const from = Math.max(segment.first, plan.cursor);
    records += Math.max(0, segment.first + segment.records - from);
    bytes += segment.size;
  }
  return { ...plan, records, bytes, removed };
}

/** Opened for writing only to truncate; never through a symlink, never blocking on a FIFO. */
const TRUNCATE_FLAGS = nodeFs.constants.O_WRONLY | (nodeFs.constants.O_NOFOLLOW ?? 0) | (nodeFs.constants.O_NONBLOCK ?? 0);
