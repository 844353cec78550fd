import type { Readable, Writable } from 'node:stream';

/** Output is written in pieces of about this size (lines are gathered up to it), by `cat` too. */
export const OUTPUT_BATCH_BYTES = 64 * 1024;

/**
 * The buffer command's output: takes records from the hopper's readable and writes them to stdout
 * at the pace stdout drains, counting what went out. Byte mode writes the records (Buffers) as
 * they are; with `format` (--lines), each record's text.
 */
export class Output {
  /** Records read from the hopper. */
  recordsOut = 0;
  /** Bytes handed to stdout. */
  bytesOut = 0;
  private waitingForDrain = false;
  private stopped = false;

  constructor(
    private readonly readable: Readable,
    private readonly stdout: Writable,
    private readonly format: ((record: unknown) => string) | undefined,
  ) {}

  /** The run has finished: nothing more is written. */
  stop(): void {
    this.stopped = true;
  }

  /** Writes what the readable has now, until stdout asks to wait (then again once it drains). */
  pump(): void {
    if (this.waitingForDrain || this.stopped) return;
    const { readable, stdout, format } = this;
    if (format === undefined) {
      // Corked, the records of one turn go out in one writev (where stdout has one). Records
      // that lie side by side in memory (pieces of one stdin chunk) go out as one write of up
      // to OUTPUT_BATCH_BYTES: without that, a 64 KiB chunk cut in four would cost four writes.
      stdout.cork();
      try {
        let run: Buffer | undefined;
        let ok = true;
        for (let record: unknown = readable.read(); record !== null; record = readable.read()) {
          const piece = record as Buffer;
          this.recordsOut++;
          this.bytesOut += piece.length;
          if (
            run !== undefined &&
            run.buffer === piece.buffer &&
            run.byteOffset + run.length === piece.byteOffset &&
            run.length + piece.length <= OUTPUT_BATCH_BYTES
          ) {
            run = Buffer.from(run.buffer, run.byteOffset, run.length + piece.length);
            continue;
          }
          if (run !== undefined) ok = stdout.write(run);
          run = piece;
          if (!ok) break;
        }
        // A record read is a record written, even past a full stdout: it waits in stdout's buffer.
        if (run !== undefined) ok = stdout.write(run) && ok;
        if (!ok) this.waitForDrain();
      } finally {
        stdout.uncork();
      }
      return;
    }
    let batch = '';
    for (let record: unknown = readable.read(); record !== null; record = readable.read()) {
      this.recordsOut++;
      batch += format(record);
      if (batch.length >= OUTPUT_BATCH_BYTES) {
        const ok = this.writeText(batch);
        batch = '';
        if (!ok) {
          this.waitForDrain();
          return;
        }
      }
    }
    if (batch !== '' && !this.writeText(batch)) this.waitForDrain();
  }

  private writeText(text: string): boolean {
    this.bytesOut += Buffer.byteLength(text);
    return this.stdout.write(text);
  }

  private waitForDrain(): void {
    this.waitingForDrain = true;
    this.stdout.once('drain', () => {
      this.waitingForDrain = false;
      this.pump();
    });
  }
}
