import path from 'node:path';
import { durableChannelError, ioError } from '../errors.js';
import { BLOCK_HEADER_MAX_BYTES, MAGIC, OWNER_KEY, SYNC_BYTES, decodeHeader, isProblem, parseBlockHeader } from '../ocf.js';
import type { DurableFileSystem } from './durable-io.js';
import { READ_FLAGS, closeQuietly, isSystemError } from './io.js';
import { LEDGER_FILE } from './ledger-file.js';
import { SEGMENT_NAME } from './ledger.js';

// The scan of a durable channel directory (docs/durable-design.md §4.2, step 1): each segment's
// header read and its blocks walked by their framing only (no record is decoded), read-only.
// Recovery (recovery.ts) decides from it; the CLI (status.ts) and a non-durable open read it too.

/** Segment header metadata: the RN of the segment's first record (decimal). */
export const FIRST_KEY = 'hopper.first';
/** Segment header metadata: "1" in a durable channel's segments. */
export const DURABLE_KEY = 'hopper.durable';

/** A framing problem found while walking a segment's blocks. */
export interface ScanProblem {
  /** Where the bad frame starts. */
  offset: number;
  reason: string;
  /** The file ends inside the frame (header cut by EOF, declared end past EOF, or zeros to EOF). */
  endsInside: boolean;
  /** Records the bad block's header declares, when its header reads whole. */
  count?: number | undefined;
}

export type SegmentScan =
  /** Not a file of this package's (or not a regular file): never touched. */
  | { kind: 'foreign' }
  /** Could not be checked (EACCES, EIO...): left untouched. */
  | { kind: 'unreadable'; error: Error }
  /** A non-durable segment of ours: stale, as in a non-durable open. */
  | { kind: 'stale'; dev: number; ino: number }
  /** A regular file whose header is cut short (empty, zeros, a prefix of Avro's magic or header): records unknown. */
  | { kind: 'headless'; dev: number; ino: number; size: number }
  | ({ kind: 'durable' } & DurableScan);

export interface DurableScan {
  dev: number;
  ino: number;
  size: number;
  /** RN of the first record. */
  first: number;
  /** The `avro.schema` metadata, as written. */
  schema: string;
  codec: string;
  sync: Buffer;
  headerLength: number;
  /** Blocks that frame well, in order: where each ends, how many records it holds. */
  blockEnds: number[];
  blockCounts: number[];
  /** Records of those blocks. */
  records: number;
  /** The first frame that is not well formed; undefined when every byte frames. */
  problem?: ScanProblem | undefined;
}

/**
 * Reads a segment's header and walks its blocks by framing only: a block header read (at most 20
 * bytes) and the 16-byte sync marker at its declared end. Read-only; shared with `verify` and `status`.
 */
export function scanSegment(fs: DurableFileSystem, file: string, headerOnly = false): SegmentScan {
  let fd: number | undefined;
  try {
    if (!fs.lstatSync(file).isFile()) return { kind: 'foreign' };
    fd = fs.openSync(file, READ_FLAGS);
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return { kind: 'foreign' };
    const size = stat.size;
    const head = Buffer.alloc(Math.min(64 * 1024, size));
    const n = readFully(fs, fd, head, 0);
    const header = decodeHeader(head.subarray(0, n));
    if (header === undefined) {
      return headlessLooking(head.subarray(0, n)) ? { kind: 'headless', dev: stat.dev, ino: stat.ino, size } : { kind: 'foreign' };
    }
    if (header.meta[OWNER_KEY] === undefined) return { kind: 'foreign' };
    if (header.meta[DURABLE_KEY]?.toString() !== '1') return { kind: 'stale', dev: stat.dev, ino: stat.ino };
    const firstText = header.meta[FIRST_KEY]?.toString() ?? '';
    const first = /^\d{1,16}$/.test(firstText) ? Number(firstText) : Number.NaN;
    if (!Number.isSafeInteger(first)) return { kind: 'foreign' };
    const scan: DurableScan = {
      dev: stat.dev,
      ino: stat.ino,
      size,
      first,
      schema: header.meta['avro.schema']!.toString(),
      codec: header.codec,
      sync: header.sync,
      headerLength: header.length,
      blockEnds: [],
      blockCounts: [],
      records: 0,
    };
    if (!headerOnly) walkBlocks(fs, fd, scan);
    return { kind: 'durable', ...scan };
  } catch (err) {
    if (!isSystemError(err)) throw err;
    if (err.code === 'ENOENT' || err.code === 'ELOOP' || err.code === 'ENXIO') return { kind: 'foreign' };
    return { kind: 'unreadable', error: ioError('checking a segment', file, err) };
  } finally {
    if (fd !== undefined) closeQuietly(fs, fd);
  }
}

/** Bytes that could be the start of a segment header cut short: empty, zeros, or a prefix of Avro's magic and more. */
function headlessLooking(bytes: Buffer): boolean {
  if (bytes.every((b) => b === 0)) return true;
  const prefix = bytes.subarray(0, MAGIC.length);
  return MAGIC.subarray(0, prefix.length).equals(prefix);
}

function walkBlocks(fs: DurableFileSystem, fd: number, scan: DurableScan): void {
  const head = Buffer.alloc(BLOCK_HEADER_MAX_BYTES);
  const sync = Buffer.alloc(SYNC_BYTES);
  let offset = scan.headerLength;
  while (offset < scan.size) {
    const available = scan.size - offset;
    const got = readFully(fs, fd, head.subarray(0, Math.min(BLOCK_HEADER_MAX_BYTES, available)), offset);
    const frame = parseBlockHeader(head.subarray(0, got), 0, available);
    let problem: string | undefined;
    let endsInside = false;
    if (isProblem(frame)) {
      problem = frame.problem;
      endsInside = frame.problem.startsWith('the block header is cut short') || frame.problem.includes('runs past the end');
    } else {
      const n = readFully(fs, fd, sync, offset + frame.dataEnd);
      if (n < SYNC_BYTES || !sync.equals(scan.sync)) problem = 'the sync marker does not match the header';
      else {
        offset += frame.end;
        scan.blockEnds.push(offset);
        scan.blockCounts.push(frame.count);
        scan.records += frame.count;
        continue;
      }
    }
    if (!endsInside) endsInside = zerosToEnd(fs, fd, offset, scan.size);
    const whole = parseBlockHeader(head.subarray(0, got), 0, Number.MAX_SAFE_INTEGER);
    scan.problem = { offset, reason: problem, endsInside, count: isProblem(whole) ? undefined : whole.count };
    return;
  }
}

function zerosToEnd(fs: DurableFileSystem, fd: number, from: number, size: number): boolean {
  const buffer = Buffer.alloc(Math.min(64 * 1024, Math.max(1, size - from)));
  for (let at = from; at < size; ) {
    const n = readFully(fs, fd, buffer.subarray(0, Math.min(buffer.length, size - at)), at);
    if (n === 0) return true;
    for (let i = 0; i < n; i++) if (buffer[i] !== 0) return false;
    at += n;
  }
  return true;
}

function readFully(fs: DurableFileSystem, fd: number, buffer: Buffer, position: number): number {
  let got = 0;
  while (got < buffer.length) {
    const n = fs.readSync(fd, buffer, got, buffer.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return got;
}

/** A segment file as the directory listing found it, with its scan. */
export interface ListedSegment {
  seq: number;
  file: string;
  scan: SegmentScan;
}

/** Scans and lists the channel directory: every segment-named entry, with its scan. */
export function listSegments(fs: DurableFileSystem, dir: string, headerOnly = false): { listed: ListedSegment[]; highestSeq: number; ledgerFile: boolean } {
  let names: string[];
  try {
    names = fs.readdirSync(dir) as string[];
  } catch (err) {
    throw ioError('listing the channel directory', dir, err);
  }
  const listed: ListedSegment[] = [];
  let highestSeq = 0;
  for (const name of names) {
    const match = SEGMENT_NAME.exec(name);
    if (!match) continue;
    const seq = Number(match[1]);
    highestSeq = Math.max(highestSeq, seq);
    const file = path.join(dir, name);
    listed.push({ seq, file, scan: scanSegment(fs, file, headerOnly) });
  }
  return { listed, highestSeq, ledgerFile: names.includes(LEDGER_FILE) };
}

/**
 * A non-durable open: throws ERR_HOPPER_DURABLE_CHANNEL when the directory holds a durable
 * channel's records (a ledger file or a durable segment): promised records are never deleted silently.
 */
export function refuseDurableLeftovers(fs: DurableFileSystem, dir: string): void {
  const { listed, ledgerFile } = listSegments(fs, dir, true);
  const durable = listed.filter((s) => s.scan.kind === 'durable').length;
  if (durable > 0 || ledgerFile) throw durableChannelError(dir, durable);
}
