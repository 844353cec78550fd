import path from 'node:path';
import { LEDGER_DRAFT } from '../lock.js';
import zlib from 'node:zlib';
import { CREATE_FLAGS, READ_FLAGS, closeQuietly, isSystemError, unlinkQuietly, writeAll, writeAllAsync } from './io.js';
import { durableAsync, fsyncDir, fsyncDirSync, type DurableFileSystem } from './durable-io.js';

// The ledger file `<channel dir>/hopper.ledger`: the durable record of a durable channel's
// acknowledged position (docs/durable-design.md §1.3). One line of JSON with a CRC, written as a
// draft in the lock directory (a crash's draft goes with the stale lock), synced, renamed into
// place, and the directory synced: the name never points at a torn file (with fsync on).

export { LEDGER_DRAFT };
export const LEDGER_FILE = 'hopper.ledger';
export const LEDGER_FORMAT = 'hopper-streams-ledger';
/** A ledger file is under 512 bytes; anything past this is not one of ours. */
export const LEDGER_MAX_BYTES = 4096;

/** What the ledger file records. All positions are record numbers (RNs), 0-based across runs. */
export interface LedgerState {
  channel: string;
  /** Every record with RN < acked is acknowledged. Never decreases. */
  acked: number;
  /** The delivery high-water mark when written: redeliveries are counted against it. */
  delivered: number;
  /** Every record with RN < synced was covered by a completed fsync (0 with fsync 'never'). */
  synced: number;
  /** Greater than the seq of every segment created before this write. */
  nextSeq: number;
  /** When the state was written (ISO 8601). */
  writtenAt: string;
}

export type LedgerRead =
  | { status: 'ok'; state: LedgerState }
  | { status: 'missing' }
  /** Ours, but torn, garbled or another channel's: recovery rewrites it. */
  | { status: 'damaged'; reason: string }
  /** Not a file this package wrote: never overwritten. */
  | { status: 'foreign'; reason: string };

const PREFIX = `{"format":"${LEDGER_FORMAT}"`;

function body(state: LedgerState): string {
  // Fixed field order: the CRC is over exactly these bytes.
  return JSON.stringify({
    format: LEDGER_FORMAT,
    version: 1,
    channel: state.channel,
    acked: state.acked,
    delivered: state.delivered,
    synced: state.synced,
    nextSeq: state.nextSeq,
    writtenAt: state.writtenAt,
  });
}

/** The file's bytes: the JSON of `state` with `crc32` (of the JSON without it) last, and a newline. */
export function encodeLedger(state: LedgerState): Buffer {
  const json = body(state);
  const crc = zlib.crc32(json);
  return Buffer.from(`${json.slice(0, -1)},"crc32":${crc}}\n`);
}

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Judges the bytes of a ledger file of channel `channel`. */
export function decodeLedger(bytes: Buffer, channel: string): LedgerRead {
  const text = bytes.toString('utf8');
  // A write torn by a power cut (fsync 'never') can leave any prefix of our bytes followed by
  // zeros (the rest of a page the file system allocated): ours, damaged, never foreign, or every
  // later open would be refused for what a crash left.
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  const landed = bytes.subarray(0, end).toString('utf8');
  const ours = landed.startsWith(PREFIX) || PREFIX.startsWith(landed);
  if (!ours) return { status: 'foreign', reason: 'it does not start with the hopper-streams ledger tag' };
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { status: 'damaged', reason: bytes.length === 0 ? 'it is empty' : 'it is cut short or garbled (not JSON)' };
  }
  if (typeof parsed !== 'object' || parsed === null || parsed.format !== LEDGER_FORMAT) return { status: 'damaged', reason: 'it is garbled' };
  if (parsed.version !== 1) return { status: 'damaged', reason: `its version ${String(parsed.version)} is not 1` };
  const { acked, delivered, synced, nextSeq, writtenAt, crc32 } = parsed;
  if (!isCount(acked) || !isCount(delivered) || !isCount(synced) || !isCount(nextSeq) || typeof writtenAt !== 'string' || typeof parsed.channel !== 'string') {
    return { status: 'damaged', reason: 'a field is missing or not a count' };
  }
  const state: LedgerState = { channel: parsed.channel, acked, delivered, synced, nextSeq, writtenAt };
  if (crc32 !== zlib.crc32(body(state))) return { status: 'damaged', reason: 'its CRC does not match' };
  if (state.channel !== channel) return { status: 'damaged', reason: `it names another channel (${JSON.stringify(state.channel)})` };
  return { status: 'ok', state };
}

/**
 * Reads `<channelDir>/hopper.ledger` through the seam, read-only: never follows a symlink, never
 * blocks on a FIFO, never reads more than {@link LEDGER_MAX_BYTES}. Throws the system error when
 * the file exists and cannot be read.
 */
export function readLedgerFile(fs: DurableFileSystem, channelDir: string, channel: string): LedgerRead {
  const file = path.join(channelDir, LEDGER_FILE);
  let fd: number;
  try {
    const stat = fs.lstatSync(file);
    if (!stat.isFile()) return { status: 'foreign', reason: stat.isSymbolicLink() ? 'it is a symlink' : 'it is not a regular file' };
    fd = fs.openSync(file, READ_FLAGS);
  } catch (err) {
    if (isSystemError(err) && err.code === 'ENOENT') return { status: 'missing' };
    if (isSystemError(err) && (err.code === 'ELOOP' || err.code === 'ENXIO')) return { status: 'foreign', reason: 'it is not a regular file' };
    throw err;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return { status: 'foreign', reason: 'it is not a regular file' };
    if (stat.size > LEDGER_MAX_BYTES) return { status: 'foreign', reason: `it is ${stat.size} bytes, over ${LEDGER_MAX_BYTES}` };
    const bytes = Buffer.alloc(stat.size);
    let got = 0;
    while (got < bytes.length) {
      const n = fs.readSync(fd, bytes, got, bytes.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return decodeLedger(bytes.subarray(0, got), channel);
  } finally {
    closeQuietly(fs, fd);
  }
}

/** Where the ledger file goes and where its draft is prepared. */
export interface LedgerPlace {
  /** The channel directory. */
  path: string;
  /** The lock directory: the draft's place. */
  draftDir: string;
  /** The error to stop with when the directory or its lock is no longer ours (checked before the rename). */
  verify(): Error | undefined;
  /**
   * {@link verify} off the event loop, used by the asynchronous write before L5 when given: what it
   * answers is acted on in the same tick as the rename is started.
   */
  verifyAsync?(): Promise<Error | undefined>;
}

/** The steps of a ledger write, for tests that stop a write between two of them. */
export type LedgerStep = 'L1' | 'L2' | 'L3' | 'L4' | 'L5' | 'L6';

/**
 * Writes the ledger file synchronously (open and close of a channel): L1 create the draft in the
 * lock directory, L2 write, L3 fsync, L4 close, L5 rename into place, L6 fsync the channel
 * directory. `sync` false (fsync 'never') skips L3 and L6. Throws the system error, or what
 * `place.verify()` returns before L5 (a stalled owner must not overwrite its successor's ledger).
 */
export function writeLedgerFileSync(fs: DurableFileSystem, place: LedgerPlace, state: LedgerState, sync: boolean): void {
  const draft = path.join(place.draftDir, LEDGER_DRAFT);
  const bytes = encodeLedger(state);
  let fd: number;
  try {
    fd = fs.openSync(draft, CREATE_FLAGS, 0o644);
  } catch (err) {
    if (!isSystemError(err) || err.code !== 'EEXIST') throw err;
    // Our own leftover while the lock directory is ours: replaced. Otherwise never touched.
    const lost = place.verify();
    if (lost !== undefined) throw lost;
    fs.unlinkSync(draft);
    fd = fs.openSync(draft, CREATE_FLAGS, 0o644);
  }
  try {
    writeAll(fs, fd, [bytes], bytes.length, 0);
    if (sync) fs.fsyncSync(fd);
  } catch (err) {
    closeQuietly(fs, fd);
    if (place.verify() === undefined) unlinkQuietly(fs, draft);
    throw err;
  }
  fs.closeSync(fd);
  // The draft stays when the lock is lost: the lock directory is not ours to touch any more.
  const lost = place.verify();
  if (lost !== undefined) throw lost;
  fs.renameSync(draft, path.join(place.path, LEDGER_FILE));
  if (sync) fsyncDirSync(fs, place.path);
}

/** {@link writeLedgerFileSync} on libuv's thread pool, step by step. */
export async function writeLedgerFile(fs: DurableFileSystem, place: LedgerPlace, state: LedgerState, sync: boolean): Promise<void> {
  const draft = path.join(place.draftDir, LEDGER_DRAFT);
  const bytes = encodeLedger(state);
  let fd: number;
  try {
    fd = await durableAsync.open(fs, draft, CREATE_FLAGS, 0o644);
  } catch (err) {
    if (!isSystemError(err) || err.code !== 'EEXIST') throw err;
    const lost = place.verify();
    if (lost !== undefined) throw lost;
    fs.unlinkSync(draft);
    fd = await durableAsync.open(fs, draft, CREATE_FLAGS, 0o644);
  }
  try {
    await writeAllAsync(fs, fd, [bytes], bytes.length, 0);
    if (sync) await durableAsync.fsync(fs, fd);
  } catch (err) {
    closeQuietly(fs, fd);
    if (place.verify() === undefined) unlinkQuietly(fs, draft);
    throw err;
  }
  await durableAsync.close(fs, fd);
  // The draft stays when the lock is lost: the lock directory is not ours to touch any more.
  const lost = place.verifyAsync === undefined ? place.verify() : await place.verifyAsync();
  if (lost !== undefined) throw lost;
  await durableAsync.rename(fs, draft, path.join(place.path, LEDGER_FILE));
  if (sync) await fsyncDir(fs, place.path);
}
