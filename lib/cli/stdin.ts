import fs from 'node:fs';
import { Readable } from 'node:stream';

/** A regular file on stdin is read in pieces of this size, at most this many per turn of the loop. */
const FILE_READ_BYTES = 64 * 1024;
const FILE_PIECES_PER_TURN = 4;

/**
 * A regular file on stdin (`< file`), read with synchronous reads from where the shell left
 * its offset, a few pieces per turn of the event loop: a read from a regular file does not wait
 * on another process, and it spares each piece a trip through libuv's thread pool, where
 * `fs.ReadStream` (Node's own stdin for a file) sends it. Turning the loop between pieces
 * keeps signals, timers and stdout's writes going.
 */
class FileInput extends Readable {
  private readonly fd: number;
  /** The end was read: a turn still scheduled reads nothing more. */
  private atEnd = false;

  constructor(fd: number) {
    super({ highWaterMark: FILE_READ_BYTES });
    this.fd = fd;
  }

  override _read(): void {
    setImmediate(() => {
      for (let pieces = 0; pieces < FILE_PIECES_PER_TURN && !this.destroyed && !this.atEnd; pieces++) {
        // A new buffer for each piece: it becomes a record, and records are held.
        const piece = Buffer.allocUnsafeSlow(FILE_READ_BYTES);
        let bytes: number;
        try {
          bytes = fs.readSync(this.fd, piece, 0, piece.length, null);
        } catch (err) {
          this.destroy(err as Error);
          return;
        }
        if (bytes === 0) {
          this.atEnd = true;
          this.push(null);
          return;
        }
        // push() is false once the reader wants no more for now (paused, or its buffer full).
        if (!this.push(bytes === piece.length ? piece : piece.subarray(0, bytes))) return;
      }
    });
  }
}

/**
 * Standard input as a stream: a regular file as a {@link FileInput}; anything else (a pipe, a
 * terminal, a socket) is `process.stdin` as Node makes it, since reading it could block.
 */
export function standardInput(): Readable {
  let regular = false;
  try {
    regular = fs.fstatSync(0).isFile();
  } catch {
    // No stdin at all (closed): process.stdin reports that its own way.
  }
  return regular ? new FileInput(0) : process.stdin;
}
