import fs from 'node:fs';
import type { RetryClock, SegmentFileSystem } from '../../lib/segments/index.js';

export type FaultOperation = 'create' | 'open' | 'write' | 'read' | 'unlink';

/**
 * node:fs with faults on demand, for the segment log's file seam: the next `times` calls of an
 * operation fail with an errno code, or writes come back short. Given a clock, the log's retries
 * wait on it.
 */
export class FaultyFileSystem {
  readonly fs: SegmentFileSystem;

  constructor(clock?: RetryClock) {
    this.fs = { ...this.operations, retryClock: clock };
  }

  readonly calls: Record<FaultOperation, number> = { create: 0, open: 0, write: 0, read: 0, unlink: 0 };
  readonly failures: Record<FaultOperation, number> = { create: 0, open: 0, write: 0, read: 0, unlink: 0 };
  private readonly pending_ = new Map<FaultOperation, { code: string; times: number }>();
  private shortWrites = 0;

  /** The next `times` calls of `operation` throw an error with `code` (Infinity: until cleared). */
  fail(operation: FaultOperation, code: string, times = 1): void {
    this.pending_.set(operation, { code, times });
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

  private check(operation: FaultOperation): void {
    this.calls[operation]++;
    const fault = this.pending_.get(operation);
    if (!fault || fault.times <= 0) return;
    fault.times--;
    this.failures[operation]++;
    throw Object.assign(new Error(`${fault.code}: injected fault, ${operation}`), { code: fault.code, syscall: operation });
  }

  private readonly operations: SegmentFileSystem = {
    ...fs,
    openSync: ((file: fs.PathLike, flags: fs.OpenMode = 'r', mode?: fs.Mode) => {
      const creates = flags === 'wx' || (typeof flags === 'number' && (flags & fs.constants.O_CREAT) !== 0);
      this.check(creates ? 'create' : 'open');
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
      this.check('unlink');
      fs.unlinkSync(file);
    },
  };
}
