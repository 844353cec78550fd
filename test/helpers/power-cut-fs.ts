import nodeFs from 'node:fs';
import path from 'node:path';
import type { RetryClock, SegmentFileSystem } from '../../lib/segments/index.js';

// A power cut, modelled over a real temp directory. Every call of the segment log's file seam
// goes to the real disk (the page cache, as far as the running process can tell); the model
// remembers what a real disk would have kept if the power went out:
// - per file, its content at its last fsync/fdatasync (taken when the call starts, committed when
//   it completes: data written during an fsync is not promised by it);
// - per directory, its listing at its last directory fsync, and the entry operations since
//   (create, link, rename, unlink) in order.
// `powerCut()` stops the process (every later call of the old seam fails, nothing reaches the
// disk) and rewrites the directory to a state a disk could be left in:
// - each file keeps its synced bytes plus a random prefix of what came after, cut at any byte;
//   sometimes the file keeps a longer length whose unsynced data reads as zeros (the size reached
//   the disk, the data did not). The page cache writes data back a page at a time, so the zeros
//   start where the synced bytes end or at a page boundary after it, never mid-page after data
//   that did land; a truncation after the last sync is kept or undone;
// - each entry operation not covered by a directory fsync is kept or undone (a created file may
//   vanish, a rename revert, an unlink come back with its last content).
// Only what went through the seam is modelled: a file the process made or changed outside it
// (the lock's own files) is left as the real disk has it, and so are directories themselves.

/** The operations the model logs, with the path they touched. */
/** The page size of the page cache: data reaches the disk a page at a time. */
export const PAGE_BYTES = 4096;

export type PowerCutOperation = 'create' | 'write' | 'fsync' | 'fsyncDir' | 'link' | 'rename' | 'unlink' | 'truncate';

export interface PowerCutOptions {
  /** Seeds the choices of `powerCut()`: the same calls and seed leave the same directory. */
  seed: number;
  /** The directory modelled; everything under it that the seam touches. */
  root: string;
  /** The clock the log's retries wait on. */
  clock?: RetryClock | undefined;
  /**
   * How unsynced entry operations of one directory are kept: 'independent' (default), each kept or
   * undone on its own (what POSIX allows); 'ordered', a prefix of them in call order (a journalling
   * file system).
   */
  entries?: 'independent' | 'ordered';
}

/** What a power cut did, for a failing test's message. */
export interface PowerCutReport {
  seed: number;
  files: Array<{ file: string; synced: number; kept: number; lost: number; zeros: number; truncationUndone: boolean }>;
  entries: Array<{ dir: string; operation: string; kept: boolean }>;
  /** Names the model left alone: changed outside the seam. */
  untouched: string[];
}

interface FileRecord {
  readonly id: number;
  /** The content at the last completed fsync (empty for a file never synced). */
  durable: Buffer;
  /** The content when it lost its last name, for an unlink or a replacing rename that may be undone. */
  lastKnown: Buffer | undefined;
  /** The inode it had when the model last saw it on the real disk. */
  ino: number;
  /** Which fsync's snapshot `durable` is (fsyncs numbered as they start): one that started earlier and ends later changes nothing. */
  durableSync: number;
}

interface EntryChange {
  readonly name: string;
  readonly record: FileRecord | undefined;
}

interface EntryOperation {
  /** Increasing across the model: a directory fsync covers the operations up to the last one made before it started. */
  readonly seq: number;
  readonly what: string;
  readonly changes: EntryChange[];
}

type Listing = Map<string, FileRecord>;

interface OpenFile {
  readonly path: string;
  readonly record: FileRecord | undefined;
  readonly directory: boolean;
}

const EIO = (syscall: string): NodeJS.ErrnoException =>
  Object.assign(new Error(`EIO: the power is out (${syscall})`), { code: 'EIO', errno: -5, syscall }) as NodeJS.ErrnoException;

/** mulberry32: small, seeded, good enough to pick cut points. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class PowerCutFileSystem {
  readonly root: string;
  /** Every modelled call, in order, across power cuts. */
  /** Every operation that changes something, in order; `sync`: made with the synchronous call (on the event loop). */
  readonly log: Array<{ op: PowerCutOperation; path: string; sync: boolean }> = [];
  private readonly random: () => number;
  private readonly seed: number;
  private readonly clock: RetryClock | undefined;
  private readonly entryMode: 'independent' | 'ordered';
  private nextId = 1;
  private current = new Map<string, Listing>();
  private durableEntries = new Map<string, Listing>();
  private pending = new Map<string, EntryOperation[]>();
  private fds = new Map<number, OpenFile>();
  private generation = 0;
  private dead = false;
  private inflight = 0;
  private inflightDone: (() => void)[] = [];
  private readonly counts = new Map<PowerCutOperation, number>();
  private stop: ((op: PowerCutOperation, file: string, count: number) => boolean) | undefined;
  private killWaiters: (() => void)[] = [];
  private entrySeq = 0;
  private syncSeq = 0;
  /** Per directory, the last entry operation its completed fsyncs cover. */
  private dirSynced = new Map<string, number>();
  private seam: SegmentFileSystem;

  constructor(options: PowerCutOptions) {
    this.root = path.resolve(options.root);
    this.seed = options.seed;
    this.random = seededRandom(options.seed);
    this.clock = options.clock;
    this.entryMode = options.entries ?? 'independent';
    this.baseline();
    this.seam = this.makeSeam(this.generation);
  }

  /** The seam to hand to `HopperInternals.fileSystem`. A new one after each power cut: the old one stays dead. */
  get fs(): SegmentFileSystem {
    return this.seam;
  }

  /** True once the process is stopped (by `kill()`, a stop rule or a power cut) and not yet restarted. */
  get killed(): boolean {
    return this.dead;
  }

  /** How many calls of `op` the model saw. */
  count(op: PowerCutOperation): number {
    return this.counts.get(op) ?? 0;
  }

  /** The process dies just before the `k`-th call (1-based, counted from now) of `op`: that call and every later one fail with EIO. */
  stopBefore(op: PowerCutOperation, k: number): void {
    const start = this.count(op);
    this.stopWhen((seen, _file, count) => seen === op && count - start >= k);
  }

  /** The process dies just before the first call for which `rule` holds (counts are totals per operation, this one included). */
  stopWhen(rule: (op: PowerCutOperation, file: string, count: number) => boolean): void {
    this.stop = rule;
  }

  /** A process crash: every later call of this seam fails with EIO and changes nothing. Nothing is reverted (the page cache survives). */
  kill(): void {
    this.dead = true;
    this.stop = undefined;
    for (const wake of this.killWaiters.splice(0)) wake();
  }

  /** Resolves when the process dies (at once if it is dead): a test's wait on the channel can stop there. */
  whenKilled(): Promise<void> {
    if (this.dead) return Promise.resolve();
    return new Promise((resolve) => this.killWaiters.push(resolve));
  }

  /** Resolves once no real call started by the seam is still running (their effects are on the real disk then). */
  async settled(): Promise<void> {
    while (this.inflight > 0) await new Promise<void>((resolve) => this.inflightDone.push(resolve));
  }

  /**
   * After a `kill()` without a power cut (a process crash): a fresh seam for the restarted
   * process. Everything the page cache holds stays; what was synced stays synced.
   */
  async restart(): Promise<SegmentFileSystem> {
    this.kill();
    await this.settled();
    this.fds.clear();
    this.generation++;
    this.dead = false;
    this.seam = this.makeSeam(this.generation);
    return this.seam;
  }

  /**
   * The power goes out: the process stops, then every file and entry not synced is cut as
   * described at the top of this file (seeded). The directory is then what the disk holds, all of
   * it durable; `fs` is a fresh seam for the next process.
   */
  async powerCut(): Promise<PowerCutReport> {
    this.kill();
    await this.settled();
    const report: PowerCutReport = { seed: this.seed, files: [], entries: [], untouched: [] };
    const dirs = [...new Set([...this.current.keys(), ...this.durableEntries.keys()])].sort();
    const finals = new Map<string, Listing>();
    for (const dir of dirs) {
      const listing = new Map(this.durableEntries.get(dir) ?? []);
      const operations = this.pending.get(dir) ?? [];
      const prefix = Math.floor(this.random() * (operations.length + 1));
      operations.forEach((operation, i) => {
        const kept = this.entryMode === 'ordered' ? i < prefix : this.random() < 0.5;
        report.entries.push({ dir: path.relative(this.root, dir) || '.', operation: operation.what, kept });
        if (!kept) return;
        for (const change of operation.changes) {
          if (change.record) listing.set(change.name, change.record);
          else listing.delete(change.name);
        }
      });
      finals.set(dir, listing);
    }
    // The content of each file that keeps a name, from what the page cache held.
    const contents = new Map<FileRecord, Buffer>();
    for (const [dir, listing] of finals) {
      for (const [name, record] of listing) {
        if (contents.has(record)) continue;
        const now = this.contentNow(record);
        const { content, entry } = this.cutContent(record.durable, now);
        contents.set(record, content);
        report.files.push({ file: path.relative(this.root, path.join(dir, name)), ...entry });
      }
    }
    // Rewrite the real directory: remove the modelled names, then write what survives.
    for (const [dir, listing] of this.current) {
      for (const [name, record] of listing) {
        const file = path.join(dir, name);
        if (this.realIno(file) === record.ino) nodeFs.unlinkSync(file);
        else report.untouched.push(path.relative(this.root, file));
      }
    }
    const written = new Map<FileRecord, string>();
    this.current = new Map();
    for (const [dir, listing] of finals) {
      const survivors: Listing = new Map();
      if (!isDirectory(dir)) {
        for (const name of listing.keys()) report.untouched.push(path.relative(this.root, path.join(dir, name)));
        continue;
      }
      for (const [name, record] of listing) {
        const file = path.join(dir, name);
        if (this.realIno(file) !== undefined) {
          report.untouched.push(path.relative(this.root, file)); // made outside the seam since: left alone
          continue;
        }
        const first = written.get(record);
        if (first === undefined) {
          nodeFs.writeFileSync(file, contents.get(record)!, { flag: 'wx' });
          written.set(record, file);
        } else {
          nodeFs.linkSync(first, file);
        }
        survivors.set(name, record);
      }
      this.current.set(dir, survivors);
    }
    // What is on disk now is all durable.
    for (const [record, file] of written) {
      record.durable = contents.get(record)!;
      record.lastKnown = undefined;
      record.ino = nodeFs.lstatSync(file).ino;
    }
    this.durableEntries = new Map([...this.current].map(([dir, listing]) => [dir, new Map(listing)]));
    this.pending = new Map();
    this.fds.clear();
    this.generation++;
    this.dead = false;
    this.seam = this.makeSeam(this.generation);
    return report;
  }

  /** Synced bytes, then a random prefix of the rest; maybe zeros to the new length; a truncation kept or undone. */
  private cutContent(durable: Buffer, now: Buffer): { content: Buffer; entry: Omit<PowerCutReport['files'][number], 'file'> } {
    let common = 0;
    const limit = Math.min(durable.length, now.length);
    while (common < limit && durable[common] === now[common]) common++;
    if (common === now.length && common === durable.length) {
      return { content: now, entry: { synced: durable.length, kept: 0, lost: 0, zeros: 0, truncationUndone: false } };
    }
    const cut = common + Math.floor(this.random() * (now.length - common + 1));
    let tail: Buffer = Buffer.alloc(0);
    let zeros = 0;
    let truncationUndone = false;
    if (durable.length > cut && (cut < now.length || this.random() < 0.5)) {
      tail = durable.subarray(cut); // the old bytes under an unsynced overwrite, or a truncation undone
      truncationUndone = cut === now.length;
    } else if (cut < now.length && this.random() < 0.25) {
      // Zeros from the end of the synced bytes, or from a page boundary after it, up to the cut's page.
      const firstPage = Math.ceil((common + 1) / PAGE_BYTES) * PAGE_BYTES;
      const starts = [common];
      for (let page = firstPage; page <= cut; page += PAGE_BYTES) starts.push(page);
      const start = starts[Math.floor(this.random() * starts.length)]!;
      const end = cut + 1 + Math.floor(this.random() * (now.length - cut));
      zeros = end - start;
      const content = Buffer.concat([now.subarray(0, start), Buffer.alloc(zeros)]);
      return { content, entry: { synced: Math.min(common, durable.length), kept: start - common, lost: now.length - start, zeros, truncationUndone } };
    }
    const content = Buffer.concat([now.subarray(0, cut), tail]);
    return {
      content,
      entry: { synced: Math.min(common, durable.length), kept: cut - common, lost: now.length - cut, zeros, truncationUndone },
    };
  }

  /** The record's content in the page cache: read through a name it still has, else as it was when it lost its last one. */
  private contentNow(record: FileRecord): Buffer {
    for (const [dir, listing] of this.current) {
      for (const [name, held] of listing) {
        if (held !== record) continue;
        const file = path.join(dir, name);
        if (this.realIno(file) === record.ino) return nodeFs.readFileSync(file);
      }
    }
    return record.lastKnown ?? record.durable;
  }

  private realIno(file: string): number | undefined {
    try {
      const stat = nodeFs.lstatSync(file);
      return stat.isFile() ? stat.ino : -1;
    } catch {
      return undefined;
    }
  }

  /** Everything under the root as it is now is durable. */
  private baseline(): void {
    const byIno = new Map<number, FileRecord>();
    const walk = (dir: string): void => {
      const listing: Listing = new Map();
      for (const entry of nodeFs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) {
          walk(file);
        } else if (entry.isFile()) {
          const stat = nodeFs.lstatSync(file);
          let record = byIno.get(stat.ino);
          if (!record) {
            record = { id: this.nextId++, durable: nodeFs.readFileSync(file), lastKnown: undefined, ino: stat.ino, durableSync: 0 };
            byIno.set(stat.ino, record);
          }
          listing.set(entry.name, record);
        }
      }
      this.current.set(dir, listing);
      this.durableEntries.set(dir, new Map(listing));
    };
    walk(this.root);
  }

  private inside(file: string): boolean {
    const relative = path.relative(this.root, file);
    return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
  }

  private lookup(file: string): FileRecord | undefined {
    return this.current.get(path.dirname(file))?.get(path.basename(file));
  }

  private listing(dir: string): Listing {
    let listing = this.current.get(dir);
    if (!listing) {
      listing = new Map();
      this.current.set(dir, listing);
      this.durableEntries.set(dir, new Map());
    }
    return listing;
  }

  /** Records an entry operation in `dir` (applied to the current listing now, undoable until the directory's fsync). */
  private entryOperation(dir: string, what: string, changes: EntryChange[]): void {
    const listing = this.listing(dir);
    for (const change of changes) {
      if (change.record) listing.set(change.name, change.record);
      else listing.delete(change.name);
    }
    const operations = this.pending.get(dir) ?? [];
    this.pending.set(dir, operations);
    operations.push({ seq: ++this.entrySeq, what, changes });
  }

  /** Before a name goes: keep the content of a record that may have no name left, in case the loss is undone. */
  private losing(record: FileRecord | undefined, file: string): void {
    if (record && this.realIno(file) === record.ino) record.lastKnown = nodeFs.readFileSync(file);
  }

  /** Counts the call and applies the stop rule; throws EIO when the process is (now) dead. */
  private enter(generation: number, op: PowerCutOperation | undefined, file: string, syscall: string, sync = false): void {
    if (generation !== this.generation || this.dead) throw EIO(syscall);
    if (op === undefined) return;
    const count = (this.counts.get(op) ?? 0) + 1;
    this.counts.set(op, count);
    if (this.stop?.(op, file, count)) {
      this.kill();
      throw EIO(syscall);
    }
    this.log.push({ op, path: path.relative(this.root, file) || '.', sync });
  }

  private async track<T>(run: (done: () => void) => T): Promise<void> {
    this.inflight++;
    await new Promise<void>((resolve) => run(resolve));
    this.inflight--;
    if (this.inflight === 0) for (const wake of this.inflightDone.splice(0)) wake();
  }

  private fdPath(fd: number): string {
    return this.fds.get(fd)?.path ?? `fd ${fd}`;
  }

  /** What `openSync`/`open` learnt: the fd's file, and a new record when the call created it. */
  private opened(file: string, flags: nodeFs.OpenMode | undefined, fd: number, existed: boolean): void {
    const stat = nodeFs.fstatSync(fd);
    if (stat.isDirectory()) {
      this.fds.set(fd, { path: file, record: undefined, directory: true });
      return;
    }
    let record = this.lookup(file);
    if (creates(flags) && !existed && this.inside(file)) {
      record = { id: this.nextId++, durable: Buffer.alloc(0), lastKnown: undefined, ino: stat.ino, durableSync: 0 };
      this.entryOperation(path.dirname(file), `create ${path.basename(file)}`, [{ name: path.basename(file), record }]);
    }
    this.fds.set(fd, { path: file, record: record?.ino === stat.ino ? record : undefined, directory: false });
  }

  /** fsync/fdatasync of `fd` as it starts: what it will make durable once it completes. */
  private syncStart(fd: number): () => void {
    const open = this.fds.get(fd);
    // Two syncs may overlap: the one that started later covers more, whichever ends first.
    if (open?.directory) {
      const dir = open.path;
      const snapshot = new Map(this.current.get(dir) ?? []);
      const upTo = this.entrySeq;
      return () => {
        if (upTo <= (this.dirSynced.get(dir) ?? 0)) return;
        this.dirSynced.set(dir, upTo);
        this.durableEntries.set(dir, snapshot);
        const operations = this.pending.get(dir);
        if (operations)
          this.pending.set(
            dir,
            operations.filter((operation) => operation.seq > upTo),
          );
      };
    }
    if (!open?.record) return () => {};
    const record = open.record;
    const content = nodeFs.readFileSync(`/proc/self/fd/${fd}`);
    const sync = ++this.syncSeq;
    return () => {
      if (sync <= record.durableSync) return;
      record.durableSync = sync;
      record.durable = content;
    };
  }

  private makeSeam(generation: number): SegmentFileSystem {
    const resolve = (file: nodeFs.PathLike): string => path.resolve(String(file));
    const existsNow = (file: string): boolean => this.realIno(file) !== undefined || isDirectory(file);
    const syncOp = (fd: number): PowerCutOperation => (this.fds.get(fd)?.directory ? 'fsyncDir' : 'fsync');
    /** An asynchronous call: refused at once when dead; otherwise run, tracked, and its result reported (EIO if the process died meanwhile). */
    const later = <A extends unknown[]>(
      callback: (err: Error | null, ...rest: A) => void,
      run: (finish: (err: Error | null, ...rest: A) => void) => void,
    ): void => {
      void this.track((done) => {
        run((err, ...rest) => {
          done();
          if (generation !== this.generation || this.dead) callback(EIO('late call'), ...([] as unknown as A));
          else callback(err, ...rest);
        });
      });
    };
    const refuse = (callback: (...args: never[]) => void, err: unknown): void => {
      process.nextTick(callback as (err: unknown) => void, err);
    };

    const overrides = {
      openSync: ((file: nodeFs.PathLike, flags?: nodeFs.OpenMode, mode?: nodeFs.Mode) => {
        const full = resolve(file);
        const existed = existsNow(full);
        this.enter(generation, creates(flags) && !existed ? 'create' : undefined, full, 'open', true);
        const fd = nodeFs.openSync(file, flags ?? 'r', mode);
        this.opened(full, flags, fd, existed);
        return fd;
      }) as typeof nodeFs.openSync,
      open: ((file: nodeFs.PathLike, flags: nodeFs.OpenMode, ...rest: unknown[]) => {
        const callback = rest.pop() as (err: Error | null, fd: number) => void;
        const full = resolve(file);
        const existed = existsNow(full);
        try {
          this.enter(generation, creates(flags) && !existed ? 'create' : undefined, full, 'open');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        later(callback, (finish) =>
          nodeFs.open(file, flags, rest[0] as nodeFs.Mode, (err, fd) => {
            if (!err) this.opened(full, flags, fd, existed);
            finish(err, fd);
          }),
        );
      }) as typeof nodeFs.open,
      closeSync: (fd: number) => {
        this.fds.delete(fd);
        nodeFs.closeSync(fd); // a dead process's fds close too
      },
      close: ((fd: number, callback?: (err: Error | null) => void) => {
        this.fds.delete(fd);
        nodeFs.close(fd, (err) => callback?.(err));
      }) as typeof nodeFs.close,
      writevSync: (fd: number, buffers: readonly NodeJS.ArrayBufferView[], position?: number | null) => {
        this.enter(generation, 'write', this.fdPath(fd), 'writev', true);
        return nodeFs.writevSync(fd, buffers, position ?? undefined);
      },
      writev: ((fd: number, buffers: readonly NodeJS.ArrayBufferView[], position: number, callback: (err: Error | null, n: number) => void) => {
        try {
          this.enter(generation, 'write', this.fdPath(fd), 'writev');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        later(callback, (finish) => nodeFs.writev(fd, buffers, position, (err, n) => finish(err, n)));
      }) as typeof nodeFs.writev,
      writeSync: ((fd: number, buffer: NodeJS.ArrayBufferView | string, ...rest: unknown[]) => {
        this.enter(generation, 'write', this.fdPath(fd), 'write', true);
        return (nodeFs.writeSync as (...args: unknown[]) => number)(fd, buffer, ...rest);
      }) as typeof nodeFs.writeSync,
      write: ((fd: number, buffer: NodeJS.ArrayBufferView | string, ...rest: unknown[]) => {
        const callback = rest.pop() as (err: Error | null, n: number, buffer: unknown) => void;
        try {
          this.enter(generation, 'write', this.fdPath(fd), 'write');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        later(callback, (finish) =>
          (nodeFs.write as (...args: unknown[]) => void)(fd, buffer, ...rest, (err: Error | null, n: number, b: unknown) => finish(err, n, b)),
        );
      }) as typeof nodeFs.write,
      fsyncSync: (fd: number) => {
        this.enter(generation, syncOp(fd), this.fdPath(fd), 'fsync', true);
        const commit = this.syncStart(fd);
        nodeFs.fsyncSync(fd);
        commit();
      },
      fdatasyncSync: (fd: number) => {
        this.enter(generation, syncOp(fd), this.fdPath(fd), 'fdatasync', true);
        const commit = this.syncStart(fd);
        nodeFs.fdatasyncSync(fd);
        commit();
      },
      fsync: ((fd: number, callback: (err: Error | null) => void) => {
        try {
          this.enter(generation, syncOp(fd), this.fdPath(fd), 'fsync');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        const commit = this.syncStart(fd);
        later(callback, (finish) =>
          nodeFs.fsync(fd, (err) => {
            if (!err && generation === this.generation && !this.dead) commit();
            finish(err);
          }),
        );
      }) as typeof nodeFs.fsync,
      fdatasync: ((fd: number, callback: (err: Error | null) => void) => {
        try {
          this.enter(generation, syncOp(fd), this.fdPath(fd), 'fdatasync');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        const commit = this.syncStart(fd);
        later(callback, (finish) =>
          nodeFs.fdatasync(fd, (err) => {
            if (!err && generation === this.generation && !this.dead) commit();
            finish(err);
          }),
        );
      }) as typeof nodeFs.fdatasync,
      ftruncateSync: (fd: number, len?: number) => {
        this.enter(generation, 'truncate', this.fdPath(fd), 'ftruncate', true);
        nodeFs.ftruncateSync(fd, len);
      },
      ftruncate: ((fd: number, ...rest: unknown[]) => {
        const callback = rest.pop() as (err: Error | null) => void;
        try {
          this.enter(generation, 'truncate', this.fdPath(fd), 'ftruncate');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        later(callback, (finish) => nodeFs.ftruncate(fd, (rest[0] as number | undefined) ?? 0, finish));
      }) as typeof nodeFs.ftruncate,
      linkSync: (existing: nodeFs.PathLike, link: nodeFs.PathLike) => {
        const from = resolve(existing);
        const to = resolve(link);
        this.enter(generation, 'link', to, 'link', true);
        nodeFs.linkSync(existing, link);
        this.linked(from, to);
      },
      link: ((existing: nodeFs.PathLike, link: nodeFs.PathLike, callback: (err: Error | null) => void) => {
        const from = resolve(existing);
        const to = resolve(link);
        try {
          this.enter(generation, 'link', to, 'link');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        later(callback, (finish) =>
          nodeFs.link(existing, link, (err) => {
            if (!err) this.linked(from, to);
            finish(err);
          }),
        );
      }) as typeof nodeFs.link,
      renameSync: (oldPath: nodeFs.PathLike, newPath: nodeFs.PathLike) => {
        const from = resolve(oldPath);
        const to = resolve(newPath);
        this.enter(generation, 'rename', to, 'rename', true);
        this.losing(this.lookup(to), to);
        nodeFs.renameSync(oldPath, newPath);
        this.renamed(from, to);
      },
      rename: ((oldPath: nodeFs.PathLike, newPath: nodeFs.PathLike, callback: (err: Error | null) => void) => {
        const from = resolve(oldPath);
        const to = resolve(newPath);
        try {
          this.enter(generation, 'rename', to, 'rename');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        this.losing(this.lookup(to), to);
        later(callback, (finish) =>
          nodeFs.rename(oldPath, newPath, (err) => {
            if (!err) this.renamed(from, to);
            finish(err);
          }),
        );
      }) as typeof nodeFs.rename,
      unlinkSync: (file: nodeFs.PathLike) => {
        const full = resolve(file);
        this.enter(generation, 'unlink', full, 'unlink', true);
        this.losing(this.lookup(full), full);
        nodeFs.unlinkSync(file);
        this.unlinked(full);
      },
      unlink: ((file: nodeFs.PathLike, callback: (err: Error | null) => void) => {
        const full = resolve(file);
        try {
          this.enter(generation, 'unlink', full, 'unlink');
        } catch (err) {
          refuse(callback, err);
          return;
        }
        this.losing(this.lookup(full), full);
        later(callback, (finish) =>
          nodeFs.unlink(file, (err) => {
            if (!err) this.unlinked(full);
            finish(err);
          }),
        );
      }) as typeof nodeFs.unlink,
    };

    // Every other call of node:fs (reads, stats, listings) goes through as is while the process lives.
    const seam: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(nodeFs)) {
      if (typeof value !== 'function' || name in overrides || /^[A-Z]/.test(name)) continue;
      const real = value as (...args: unknown[]) => unknown;
      seam[name] = (...args: unknown[]) => {
        if (generation === this.generation && !this.dead) return real(...args);
        const last = args.at(-1);
        if (typeof last === 'function' && !name.endsWith('Sync')) {
          process.nextTick(last as (err: Error) => void, EIO(name));
          return undefined;
        }
        throw EIO(name);
      };
    }
    return { ...seam, ...overrides, retryClock: this.clock } as unknown as SegmentFileSystem;
  }

  private linked(from: string, to: string): void {
    const record = this.lookup(from);
    if (!record || !this.inside(to)) return;
    this.entryOperation(path.dirname(to), `link ${path.relative(this.root, from)} -> ${path.basename(to)}`, [{ name: path.basename(to), record }]);
  }

  private renamed(from: string, to: string): void {
    const record = this.lookup(from);
    if (!record) return;
    const what = `rename ${path.relative(this.root, from)} -> ${path.relative(this.root, to)}`;
    if (path.dirname(from) === path.dirname(to)) {
      // One entry operation: the old name goes and the new one comes together, or neither.
      this.entryOperation(path.dirname(to), what, [
        { name: path.basename(from), record: undefined },
        { name: path.basename(to), record },
      ]);
    } else {
      this.entryOperation(path.dirname(from), what, [{ name: path.basename(from), record: undefined }]);
      if (this.inside(to)) this.entryOperation(path.dirname(to), what, [{ name: path.basename(to), record }]);
    }
  }

  private unlinked(file: string): void {
    if (!this.lookup(file)) return;
    this.entryOperation(path.dirname(file), `unlink ${path.basename(file)}`, [{ name: path.basename(file), record: undefined }]);
  }
}

function creates(flags: nodeFs.OpenMode | undefined): boolean {
  return typeof flags === 'number' ? (flags & nodeFs.constants.O_CREAT) !== 0 : typeof flags === 'string' && /[wa]/.test(flags);
}

function isDirectory(file: string): boolean {
  try {
    return nodeFs.lstatSync(file).isDirectory();
  } catch {
    return false;
  }
}
