import fs from 'node:fs';
import type { RetryClock, SegmentFileSystem } from '../../lib/segments/index.js';

export type FaultOperation = 'create' | 'open' | 'write' | 'read' | 'unlink';

/**
 * node:fs with faults on demand, for the segment log's file seam, synchronous and asynchronous
 * calls alike: the next `times` calls of an operation fail with an errno code, or writes come back
 * short. Asynchronous calls (creating a file, opening one, writing, reading, unlinking) can be held
 * (the disk stalls) and let go by the test; a fault armed while one is held is what it meets when
 * it completes (a fault that arrives while a write is in flight). Given a clock, the log's retries
 * wait on it.
 */
export class FaultyFileSystem {
  readonly fs: SegmentFileSystem;

  constructor(clock?: RetryClock) {
    this.fs = { ...this.operations, retryClock: clock };
  }

  readonly calls: Record<FaultOperation, number> = { create: 0, open: 0, write: 0, read: 0, unlink: 0 };
  readonly failures: Record<FaultOperation, number> = { create: 0, open: 0, write: 0, read: 0, unlink: 0 };
  private readonly pending_ = new Map<FaultOperation, { code: string; times: number; only: ((file: string) => boolean) | undefined }>();
  private shortWrites = 0;
  private readonly held: Record<FaultOperation, (() => void)[] | undefined> = {
    create: undefined,
    open: undefined,
    write: undefined,
    read: undefined,
    unlink: undefined,
  };
  private heldWaiters: (() => void)[] = [];

  /** Asynchronous calls of `operation` wait (the disk stalls) until {@link release}. */
  hold(operation: FaultOperation): void {
    this.held[operation] ??= [];
  }

  /** Lets held calls of `operation` go on, and later ones run at once. */
  release(operation: FaultOperation): void {
    const waiting = this.held[operation] ?? [];
    this.held[operation] = undefined;
    for (const run of waiting) run();
  }

  /** Asynchronous calls of `operation` held now. */
  heldCount(operation: FaultOperation): number {
    return this.held[operation]?.length ?? 0;
  }

  /** Resolves once an asynchronous call of `operation` is held. */
  async whenHeld(operation: FaultOperation): Promise<void> {
    while (this.heldCount(operation) === 0) await new Promise<void>((resolve) => this.heldWaiters.push(resolve));
  }

  /** Runs `call` now, or once `operation` is released; the fault check happens when it runs. */
  private later(operation: FaultOperation, call: () => void): void {
    const queue = this.held[operation];
    if (queue === undefined) {
      call();
      return;
    }
    queue.push(call);
    for (const wake of this.heldWaiters.splice(0)) wake();
  }

  /** The fault as an error for a callback, or undefined. */
  private fault(operation: FaultOperation, file?: fs.PathLike): Error | undefined {
    try {
      this.check(operation, file);
      return undefined;
    } catch (err) {
      return err as Error;
    }
  }

  /**
   * The next `times` calls of `operation` throw an error with `code` (Infinity: until cleared);
   * with `only`, only calls on a file it accepts (the others go through, and do not count).
   */
  fail(operation: FaultOperation, code: string, times = 1, only?: (file: string) => boolean): void {
    this.pending_.set(operation, { code, times, only });
  }

  /** How many more calls of `operation` will fail. */
  pending(operation: FaultOperation): number {
    return this.pending_.get(operation)?.times ?? 0;
  }

  clear(operation?: FaultOperation): void {
    if (operation) this.pending_.delete(operation);
    else this.pending_.clear();
  }

  /** The next `times` writes write only half of what they are given. */
  shortenWrites(times: number): void {
    this.shortWrites = times;
  }

  private check(operation: FaultOperation, file?: fs.PathLike): void {
    this.calls[operation]++;
    const fault = this.pending_.get(operation);
    if (!fault || fault.times <= 0) return;
    if (fault.only !== undefined && (file === undefined || !fault.only(String(file)))) return;
    fault.times--;
    this.failures[operation]++;
    throw Object.assign(new Error(`${fault.code}: injected fault, ${operation}`), { code: fault.code, syscall: operation });
  }

  private readonly operations: SegmentFileSystem = {
    ...fs,
    openSync: ((file: fs.PathLike, flags: fs.OpenMode = 'r', mode?: fs.Mode) => {
      const creates = flags === 'wx' || (typeof flags === 'number' && (flags & fs.constants.O_CREAT) !== 0);
      this.check(creates ? 'create' : 'open', file);
      return fs.openSync(file, flags, mode);
    }) as typeof fs.openSync,
    writevSync: (fd, buffers, position) => {
      this.check('write');
      if (this.shortWrites > 0) {
        this.shortWrites--;
        const all = Buffer.concat(buffers as Buffer[]);
        return fs.writeSync(fd, all, 0, Math.max(1, Math.floor(all.length / 2)), position);
      }
      return fs.writevSync(fd, buffers, position);
    },
    readSync: ((fd: number, buffer: NodeJS.ArrayBufferView, offset: number, length: number, position: fs.ReadPosition | null) => {
      this.check('read');
      return fs.readSync(fd, buffer, offset, length, position);
    }) as typeof fs.readSync,
    unlinkSync: (file) => {
      this.check('unlink', file);
      fs.unlinkSync(file);
    },
    writev: ((fd: number, buffers: NodeJS.ArrayBufferView[], position: number, callback: (err: Error | null, n: number) => void) => {
      this.later('write', () => {
        const err = this.fault('write');
        if (err) {
          process.nextTick(callback, err, 0);
        } else if (this.shortWrites > 0) {
          this.shortWrites--;
          const all = Buffer.concat(buffers as Buffer[]);
          fs.write(fd, all, 0, Math.max(1, Math.floor(all.length / 2)), position, (error, n) => callback(error, n));
        } else {
          fs.writev(fd, buffers, position, (error, n) => callback(error, n));
        }
      });
    }) as typeof fs.writev,
    read: ((fd: number, buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null, n: number, buffer: Buffer) => void) => {
      this.later('read', () => {
        const err = this.fault('read');
        if (err) process.nextTick(callback, err, 0, buffer);
        else fs.read(fd, buffer, offset, length, position, callback);
      });
    }) as typeof fs.read,
    unlink: ((file: fs.PathLike, callback: (err: Error | null) => void) => {
      this.later('unlink', () => {
        const err = this.fault('unlink', file);
        if (err) process.nextTick(callback, err);
        else fs.unlink(file, callback);
      });
    }) as typeof fs.unlink,
    open: ((file: fs.PathLike, flags: fs.OpenMode, mode: fs.Mode | undefined, callback: (err: Error | null, fd: number) => void) => {
      const creates = flags === 'wx' || (typeof flags === 'number' && (flags & fs.constants.O_CREAT) !== 0);
      const operation = creates ? 'create' : 'open';
      this.later(operation, () => {
        const err = this.fault(operation, file);
        if (err) process.nextTick(callback, err, -1);
        else fs.open(file, flags, mode, callback);
      });
    }) as typeof fs.open,
  };
}
