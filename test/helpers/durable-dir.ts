import crypto from 'node:crypto';
import nodeFs from 'node:fs';
import path from 'node:path';
import avsc from 'avsc';
import { OWNER_KEY, encodeBlockHeader, encodeHeader } from '../../lib/ocf.js';
import type { DurableFileSystem } from '../../lib/segments/durable-io.js';
import type { RetryClock } from '../../lib/segments/io.js';
import { segmentFileName } from '../../lib/segments/ledger.js';
import { DURABLE_KEY, FIRST_KEY } from '../../lib/segments/durable-scan.js';

// Building durable channel directories by hand for recovery tests, and a file system seam that
// stops at the k-th file operation that changes something (a process crash between two steps:
// what was done stays, nothing after happens).

export const LONG_SCHEMA = 'long';
export const LONG_SCHEMA_JSON = JSON.stringify(LONG_SCHEMA);
const LONG = avsc.Type.forSchema(LONG_SCHEMA);

/** The bytes of a durable segment of `long` records: header, then one block per entry of `blocks` (its values). */
export function durableSegmentBytes(
  first: number,
  blocks: number[][],
  options: { channel?: string; sync?: Buffer } = {},
): { bytes: Buffer; blockEnds: number[] } {
  const sync = options.sync ?? crypto.randomBytes(16);
  const parts = [
    encodeHeader(Buffer.from(LONG_SCHEMA_JSON), 'null', sync, { [OWNER_KEY]: options.channel ?? 'events', [DURABLE_KEY]: '1', [FIRST_KEY]: String(first) }),
  ];
  const blockEnds: number[] = [];
  let size = parts[0]!.length;
  for (const values of blocks) {
    const data = Buffer.concat(values.map((v) => LONG.toBuffer(v)));
    const block = Buffer.concat([encodeBlockHeader(values.length, data.length), data, sync]);
    parts.push(block);
    size += block.length;
    blockEnds.push(size);
  }
  return { bytes: Buffer.concat(parts), blockEnds };
}

/** Writes a durable segment `seq` into `dir` holding RNs from `first`, in blocks of the given sizes; values are the RNs. */
export function writeDurableSegment(
  dir: string,
  seq: number,
  first: number,
  blockSizes: number[],
  channel = 'events',
): { file: string; blockEnds: number[]; size: number } {
  const blocks: number[][] = [];
  let rn = first;
  for (const n of blockSizes) {
    blocks.push(Array.from({ length: n }, () => rn++));
  }
  const { bytes, blockEnds } = durableSegmentBytes(first, blocks, { channel });
  const file = path.join(dir, segmentFileName(seq));
  nodeFs.writeFileSync(file, bytes);
  return { file, blockEnds, size: bytes.length };
}

/**
 * A durable seam over node:fs that logs every call that changes something and can stop (throw) from
 * the k-th on. Each run of the "process" gets its own view ({@link fs}, read at each open): after
 * {@link restart}, every call through an older view throws, as nothing of a dead process reaches the
 * disk any more. A call already handed to the thread pool when the process died still completes, as
 * a syscall under way at a kill -9 does; {@link quiet} waits for those, so that a test reopens the
 * channel only once the dead run has stopped touching the disk (otherwise a late write of the dead
 * run could land after the new run's recovery, which no real crash does).
 */
export class SteppingFileSystem {
  readonly log: Array<{ op: string; path: string }> = [];
  private stopAt = Number.POSITIVE_INFINITY;
  private generation = 0;
  private view: { generation: number; fs: DurableFileSystem } | undefined;
  private inFlight = 0;
  private quietWaiters: Array<() => void> = [];

  /** The seam of the current run (a new view after each {@link restart}). */
  get fs(): DurableFileSystem {
    if (this.view?.generation !== this.generation) this.view = { generation: this.generation, fs: this.makeView(this.generation) };
    return this.view.fs;
  }

  private makeView(generation: number): DurableFileSystem {
    const fdPaths = new Map<number, string>();
    const step = (op: string, target: string): void => {
      if (generation !== this.generation || this.log.length >= this.stopAt) {
        const err = new Error(`stopped before ${op} ${target}`) as NodeJS.ErrnoException;
        err.code = 'ECRASHED';
        err.syscall = op;
        throw err;
      }
      this.log.push({ op, path: target });
    };
    // An asynchronous call handed to the thread pool: counted until its callback runs.
    const issued = <E>(cb: (err: E, ...rest: never[]) => void): ((err: E, ...rest: never[]) => void) => {
      this.inFlight++;
      return (err, ...rest) => {
        this.inFlight--;
        if (this.inFlight === 0) for (const resolve of this.quietWaiters.splice(0)) resolve();
        cb(err, ...rest);
      };
    };
    const isWrite = (flags: unknown): boolean => typeof flags === 'number' && (flags & (nodeFs.constants.O_WRONLY | nodeFs.constants.O_RDWR)) !== 0;
    const wrap = <A extends unknown[]>(op: string, target: (...args: A) => string, call: (...args: A) => unknown) =>
      ((...args: A) => {
        step(op, target(...args));
        return call(...args);
      }) as never;
    const asyncWrap = <A extends unknown[]>(op: string, target: (...args: A) => string, call: (...args: A) => void) =>
      ((...args: A) => {
        const cb = args[args.length - 1] as (err: Error | null) => void;
        try {
          step(op, target(...args));
        } catch (err) {
          process.nextTick(() => cb(err as Error));
          return;
        }
        args[args.length - 1] = issued(cb);
        call(...args);
      }) as never;
    const fdName = (fd: number): string => fdPaths.get(fd) ?? `fd ${fd}`;
    return {
      ...nodeFs,
      openSync: ((file: string, flags?: number, mode?: number) => {
        if (isWrite(flags)) step('create', file);
        const fd = nodeFs.openSync(file, flags ?? 'r', mode);
        fdPaths.set(fd, file);
        return fd;
      }) as never,
      open: ((file: string, flags: number, mode: number | undefined, cb: (err: Error | null, fd: number) => void) => {
        try {
          if (isWrite(flags)) step('create', file);
        } catch (err) {
          process.nextTick(() => cb(err as Error, -1));
          return;
        }
        const done = issued(cb as (err: Error | null, ...rest: never[]) => void) as (err: Error | null, fd: number) => void;
        nodeFs.open(file, flags, mode, (err, fd) => {
          if (!err) fdPaths.set(fd, file);
          done(err, fd);
        });
      }) as never,
      writevSync: wrap('write', (fd: number) => fdName(fd), nodeFs.writevSync as (...a: unknown[]) => unknown),
      writev: asyncWrap('write', (fd: number) => fdName(fd), nodeFs.writev as (...a: unknown[]) => void),
      fsyncSync: wrap('fsync', (fd: number) => fdName(fd), nodeFs.fsyncSync as (...a: unknown[]) => unknown),
      fdatasyncSync: wrap('fsync', (fd: number) => fdName(fd), nodeFs.fdatasyncSync as (...a: unknown[]) => unknown),
      fsync: asyncWrap('fsync', (fd: number) => fdName(fd), nodeFs.fsync as (...a: unknown[]) => void),
      fdatasync: asyncWrap('fsync', (fd: number) => fdName(fd), nodeFs.fdatasync as (...a: unknown[]) => void),
      ftruncateSync: wrap('truncate', (fd: number) => fdName(fd), nodeFs.ftruncateSync as (...a: unknown[]) => unknown),
      renameSync: wrap('rename', (_from: string, to: string) => to, nodeFs.renameSync as (...a: unknown[]) => unknown),
      rename: asyncWrap('rename', (_from: string, to: string) => to, nodeFs.rename as (...a: unknown[]) => void),
      unlinkSync: wrap('unlink', (file: string) => file, nodeFs.unlinkSync as (...a: unknown[]) => unknown),
      unlink: asyncWrap('unlink', (file: string) => file, nodeFs.unlink as (...a: unknown[]) => void),
      linkSync: wrap('link', (_from: string, to: string) => to, nodeFs.linkSync as (...a: unknown[]) => unknown),
      link: asyncWrap('link', (_from: string, to: string) => to, nodeFs.link as (...a: unknown[]) => void),
    } as DurableFileSystem;
  }

  /** From now on, the call after the first `k` logged ones (and every later one) throws. */
  stopAfter(k: number): void {
    this.stopAt = k;
  }

  /** Resolves once no asynchronous call that changes something is under way on the thread pool. */
  quiet(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.quietWaiters.push(resolve));
  }

  /**
   * The "process" died and starts again: calls through the views handed out so far throw from now
   * on, and the next {@link fs} is a fresh view whose calls go on. Await {@link quiet} first.
   */
  restart(): void {
    this.generation++;
    this.stopAt = Number.POSITIVE_INFINITY;
    this.log.length = 0;
  }
}

/**
 * node:fs whose asynchronous fsync and fdatasync can be held (the disk is slow to sync) and let
 * go by the test, or fail; counts them. Given a clock, the log's timers run on it.
 */
export class HeldSyncFileSystem {
  readonly fs: DurableFileSystem;
  syncs = 0;
  private holding = false;
  private readonly waiting: Array<() => void> = [];
  private failing: string | undefined;

  constructor(clock?: RetryClock) {
    const sync =
      (real: (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => void) =>
      (fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void => {
        const run = (): void => {
          this.syncs++;
          if (this.failing !== undefined) {
            const err = Object.assign(new Error(`${this.failing}: i/o error, fdatasync`), { code: this.failing, syscall: 'fdatasync' });
            process.nextTick(() => cb(err));
            return;
          }
          real(fd, cb);
        };
        if (this.holding) this.waiting.push(run);
        else run();
      };
    this.fs = {
      ...nodeFs,
      fsync: sync(nodeFs.fsync) as never,
      fdatasync: sync(nodeFs.fdatasync) as never,
      retryClock: clock,
    } as DurableFileSystem;
  }

  /** Asynchronous syncs wait until {@link release}. */
  hold(): void {
    this.holding = true;
  }

  /** Syncs held run now, later ones at once. */
  release(): void {
    this.holding = false;
    for (const run of this.waiting.splice(0)) run();
  }

  /** Syncs waiting now. */
  get held(): number {
    return this.waiting.length;
  }

  /** Every later sync fails with `code` (EIO). */
  fail(code: string): void {
    this.failing = code;
  }
}
