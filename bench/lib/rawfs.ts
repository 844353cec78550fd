/**
 * The raw-fs baselines' files: appended with `fs.writeSync`, rolled over every 64 MiB (as
 * hopper-streams' default segments are: one 2 GiB file wrote 2–4× slower than 64 MiB files on
 * the machine measured, and a baseline should be the fastest plain way), read back in order
 * with `fs.readSync`, each file deleted once read through.
 */
import fs from 'node:fs';
import path from 'node:path';

export const RAW_FILE_BYTES = 64 * 1024 * 1024;

export class RawFileLog {
  private readonly files: { file: string; size: number }[] = [];
  private writeFd: number | undefined;
  private readFd: number | undefined;
  private readIndex = 0;
  private readOffset = 0;
  private lastSync = performance.now();
  private dirUnsynced = false;

  /**
   * `syncEveryMs`: the fsync cadence of a durable channel's group commit, for its ceiling: after a
   * write, `fdatasync` once that long has passed since the last one, and at each roll-over and at
   * the end, with an fsync of the directory after a file was created. Undefined: never synced.
   */
  constructor(
    private readonly dir: string,
    private readonly fileBytes = RAW_FILE_BYTES,
    private readonly syncEveryMs?: number,
  ) {}

  /** fdatasync of the file being written (and of the directory, when a file was created since). */
  private sync(): void {
    if (this.syncEveryMs === undefined || this.writeFd === undefined) return;
    fs.fdatasyncSync(this.writeFd);
    if (this.dirUnsynced) {
      const dirFd = fs.openSync(this.dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      fs.fsyncSync(dirFd);
      fs.closeSync(dirFd);
      this.dirUnsynced = false;
    }
    this.lastSync = performance.now();
  }

  /** Appends `length` bytes of `buffer`; a new file is started once the current one reaches the roll-over size. */
  write(buffer: Buffer, length: number = buffer.length): void {
    let current = this.files[this.files.length - 1];
    if (current === undefined || this.writeFd === undefined || current.size >= this.fileBytes) {
      if (this.writeFd !== undefined) {
        this.sync();
        fs.closeSync(this.writeFd);
      }
      current = { file: path.join(this.dir, `raw-${String(this.files.length).padStart(6, '0')}.bin`), size: 0 };
      this.writeFd = fs.openSync(current.file, 'wx');
      this.dirUnsynced = true;
      this.files.push(current);
    }
    for (let done = 0; done < length; ) done += fs.writeSync(this.writeFd, buffer, done, length - done, current.size + done);
    current.size += length;
    if (this.syncEveryMs !== undefined && performance.now() - this.lastSync >= this.syncEveryMs) this.sync();
  }

  /** No more writes (with a sync cadence: the last ones synced). */
  endWrites(): void {
    this.sync();
    if (this.writeFd !== undefined) fs.closeSync(this.writeFd);
    this.writeFd = undefined;
  }

  /** Reads up to `length` bytes into `buffer` at `offset`, from the next file when one is read through; 0 at the end. */
  read(buffer: Buffer, offset: number, length: number): number {
    for (;;) {
      const current = this.files[this.readIndex];
      if (current === undefined) return 0;
      if (this.readFd === undefined) {
        this.readFd = fs.openSync(current.file, 'r');
        this.readOffset = 0;
      }
      const want = Math.min(length, current.size - this.readOffset);
      if (want > 0) {
        const n = fs.readSync(this.readFd, buffer, offset, want, this.readOffset);
        if (n === 0) throw new Error(`raw fs: ${current.file} is shorter than what was written to it`);
        this.readOffset += n;
        return n;
      }
      fs.closeSync(this.readFd);
      this.readFd = undefined;
      fs.unlinkSync(current.file);
      this.readIndex++;
    }
  }

  /** Reads exactly `length` bytes unless the log ends first; returns the bytes read. */
  readFully(buffer: Buffer, length: number = buffer.length): number {
    let done = 0;
    while (done < length) {
      const n = this.read(buffer, done, length - done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  close(): void {
    this.endWrites();
    if (this.readFd !== undefined) fs.closeSync(this.readFd);
    this.readFd = undefined;
  }
}
