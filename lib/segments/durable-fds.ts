import { fsAsync, type SegmentFileSystem } from './io.js';

// The durable log's fds that asynchronous operations use: an fd is closed only once no operation
// on it is queued or running on the thread pool. Closes run on the thread pool too (a close can
// wait for the disk: the last reference to a file unlinked, or a network file system), counted as
// operations under way, so that close() of the log waits for them.

export class FdTracker {
  /** Asynchronous operations under way per fd: an fd is closed only once none is (see close). */
  private readonly busyFds = new Map<number, number>();
  /** Fds to close once their operations end. */
  private readonly closeLater = new Set<number>();

  /** The operations under way, settled or not yet: see {@link busy}. */
  private readonly operations = new Set<Promise<unknown>>();

  constructor(private readonly fs: SegmentFileSystem) {}

  /**
   * Settles once every operation under way now has, and the fds waiting for them are closed;
   * undefined when none is. (close() resolves only then: an fd left open would keep a file
   * system busy, and its unmount would fail.)
   */
  get busy(): Promise<void> | undefined {
    if (this.operations.size === 0) return undefined;
    return Promise.allSettled([...this.operations]).then(() => undefined);
  }

  /** Counts `operation` as under way on `fd` until it settles. */
  async track<T>(fd: number, operation: Promise<T>): Promise<T> {
    this.busyFds.set(fd, (this.busyFds.get(fd) ?? 0) + 1);
    this.operations.add(operation);
    try {
      return await operation;
    } finally {
      this.operations.delete(operation);
      const left = (this.busyFds.get(fd) ?? 1) - 1;
      if (left > 0) this.busyFds.set(fd, left);
      else {
        this.busyFds.delete(fd);
        if (this.closeLater.delete(fd)) this.closeNow(fd);
      }
    }
  }

  /**
   * Closes an fd, or, while an asynchronous operation on it is queued or running on the thread
   * pool, once it ends: a number closed under a queued operation can be reused by the next open
   * (another segment, another channel's file), and the operation would then write to that file.
   */
  close(fd: number): void {
    if (this.busyFds.has(fd)) this.closeLater.add(fd);
    else this.closeNow(fd);
  }

  private closeNow(fd: number): void {
    const closing = fsAsync.close(this.fs, fd);
    this.operations.add(closing);
    void closing.then(() => this.operations.delete(closing));
  }
}
