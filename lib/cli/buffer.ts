import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import type { BufferCommand, BufferFlag } from './args.js';
import type { RecordCodec } from '../codec.js';
import { HopperError } from '../errors.js';
import { LineSplitter, parseRecord, schemaHasBytes, stringifyRecord } from './json-lines.js';
import { ProgressLine, formatBytes, type ProgressSample } from './progress.js';
import { createHopperStreams, type HopperStreams } from '../streams.js';

// `hopper-streams [buffer]`: stdin into a hopper's writable as fast as it comes, the hopper's
// readable to stdout at the pace stdout drains. Byte mode writes stdin's Buffers as records;
// --lines writes lines (strings), and with --schema, parsed, validated records.

/** Output is written in pieces of about this size (lines are gathered up to it), by `cat` too. */
export const OUTPUT_BATCH_BYTES = 64 * 1024;
/**
 * Byte mode cuts stdin's chunks (64 KiB from a pipe or a file) into records of at most this
 * size: the hopper's readable buffers up to 16 records beyond the memory budget, so small
 * records keep that overshoot small. Output puts the pieces of a chunk back together.
 */
const BYTE_RECORD_BYTES = 16 * 1024;
/** A regular file on stdin is read in pieces of this size, at most this many per turn of the loop. */
const FILE_READ_BYTES = 64 * 1024;
const FILE_PIECES_PER_TURN = 4;
/** Skipped invalid lines reported one by one; past this, only counted. */
const SKIP_MESSAGES = 10;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * What the user is told when the hopper refuses a record: the library's message names its
 * options, so refusals that concern flags are said again in the flags' terms, from the error's
 * code and the cap it names (`option`).
 */
function refusalMessage(err: Error, command: BufferCommand): string {
  const memory = `${flag(command, 'memory')} ${formatBytes(command.memory)}`;
  const maxDisk = `${flag(command, 'max-disk')} ${formatBytes(command.maxDisk)}`;
  if (HopperError.is(err, 'ERR_HOPPER_FULL') && err.option !== undefined) {
    const cap = err.option === 'maxSegments' ? `${flag(command, 'max-segments')} ${command.maxSegments}` : maxDisk;
    return `hopper is full: neither memory (${memory}) nor the disk cap (${cap}) has room for it; the record was not accepted`;
  }
  if (HopperError.is(err, 'ERR_HOPPER_RECORD_TOO_LARGE')) {
    return `record too large: it is bigger than ${memory} and, encoded, than ${maxDisk} allows`;
  }
  return err.message;
}

/** A flag as the user typed it (`-m` or `--memory`), by its long name. */
function flag(command: BufferCommand, name: BufferFlag): string {
  return command.typed[name] ?? `--${name}`;
}

/** Why a directory operation failed, from its system error, in the user's words. */
function systemReason(err: unknown, enoent = 'its file system does not take new directories (as /proc and /sys do not)'): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied: this user may not write there';
    case 'EROFS':
      return 'it is on a read-only file system';
    case 'ENOENT':
      return enoent;
    case 'ENOTDIR':
      return 'a part of the path is a file, not a directory';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'the disk quota is used up';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/**
 * What the user is told when the channel directory cannot be opened: the library's message names
 * `dataDir`, an option the CLI user never typed, so the CLI looks at --dir itself and says what is
 * wrong with it, and what would work.
 */
function openFailureMessage(err: unknown, command: BufferCommand): string {
  if (!HopperError.is(err, 'ERR_HOPPER_IO')) return (err as Error).message;
  if (command.dir === undefined) {
    const reason = systemReason(err.cause, fs.existsSync(os.tmpdir()) ? undefined : 'it does not exist');
    return `cannot make a temp directory in ${os.tmpdir()} (TMPDIR): ${reason}; set TMPDIR to a directory this user can write to, or give --dir`;
  }
  const dir = command.dir;
  const name = command.name ?? 'hopper';
  const instead = 'give --dir a directory this user can write to (one that does not exist yet is made), or leave --dir out to use a temp directory';
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dir);
  } catch (statErr) {
    if ((statErr as NodeJS.ErrnoException).code !== 'ENOENT') return `--dir ${dir}: ${systemReason(statErr)}; ${instead}`;
    return `--dir ${dir}: cannot make it: ${systemReason(err.cause)}; ${instead}`;
  }
  if (!stat.isDirectory()) return `--dir ${dir} is a file, not a directory; ${instead}`;
  let channel: fs.Stats | undefined;
  try {
    channel = fs.lstatSync(path.join(dir, name));
  } catch {}
  if (channel !== undefined && !channel.isDirectory()) {
    const named = command.name === undefined ? 'the channel directory' : `--name ${name}`;
    return `${named}: ${path.join(dir, name)} exists and is not a directory; give another --name, or remove it`;
  }
  const what = `cannot make the channel directory ${JSON.stringify(name)} in it`;
  return `--dir ${dir}: ${err.cause === undefined ? err.message : `${what}: ${systemReason(err.cause)}`}; ${instead}`;
}

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

export interface BufferIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable & { isTTY?: boolean; columns?: number };
}

/** How a run ended; `code` is the exit status. `flushed`: stdout has taken everything written. */
export interface BufferOutcome {
  code: number;
  flushed: boolean;
}

/**
 * Runs the buffer until the input has ended and everything has been written to stdout, or
 * until a failure or signals end it. Resolves with the exit status; never rejects for I/O.
 * `codec`: with --schema, the schema's codec, for validating lines before they are written.
 */
export function runBuffer(command: BufferCommand, codec: RecordCodec | undefined, io: BufferIo): Promise<BufferOutcome> {
  const { stdin, stdout, stderr } = io;
  let hopper: HopperStreams<unknown>;
  try {
    hopper = createHopperStreams<unknown>({
      dataDir: command.dir,
      name: command.name,
      schema: codec?.type,
      maxMemoryBytes: command.memory,
      maxSegmentBytes: command.segmentSize,
      maxSegments: command.maxSegments,
      maxDiskBytes: command.maxDisk,
      onFull: command.onFull,
      codec: command.codec,
    });
  } catch (err) {
    throw new Error(openFailureMessage(err, command), { cause: err });
  }
  const { writable, readable } = hopper;
  const buffers = codec !== undefined && schemaHasBytes(codec.type.schema());
  const splitter = command.lines ? new LineSplitter(command.separator) : undefined;
  // A piece of a chunk is a view of it: records are taken and leave in order, so the chunk
  // bytes a view keeps alive beyond the held records' own are those of a chunk partly
  // delivered or partly spilled, at the two ends of what memory holds (a chunk at most, each).
  // drop-newest refuses pieces one by one when full, and could leave one held piece of each
  // of many chunks, each keeping its whole chunk alive: there, pieces are copies.
  const copyPieces = command.onFull === 'drop-newest';

  let bytesIn = 0;
  let bytesOut = 0;
  let recordsOut = 0;
  /** Records the hopper took from the input (refused ones are not; dropped ones are). */
  let recordsTaken = 0;
  let lineNumber = 0;
  let skipped = 0;
  const peak = { memoryBytes: 0, diskBytes: 0, segments: 0 };
  let inputOpen = true;
  let inputPaused = false;
  let failure: string | undefined;
  /** Whether the failure was said when it stopped the input (not left for the exit). */
  let failureSaid = false;
  let signalCount = 0;
  /** Set by the first signal (or by stdout closing: SIGPIPE's status): the exit status, 128 + n. */
  let signalCode = 0;
  let stoppedBy = '';
  let finished = false;
  let resolveOutcome!: (outcome: BufferOutcome) => void;
  const outcome = new Promise<BufferOutcome>((resolve) => {
    resolveOutcome = resolve;
  });

  // Counts that add up: in = out + skipped + dropped + held. `in` counts every record read from
  // the input (skipped lines too); `held` counts what is in memory, on disk and in the readable's
  // buffer (delivered by the hopper, not yet written out).
  const held = (stats = hopper.stats()): number => stats.memoryRecords + stats.diskRecords + stats.recordsOut - recordsOut;
  /** The counters as the run ended, taken before the hopper is destroyed. */
  let finalSample: ProgressSample | undefined;
  const sample = (): ProgressSample => {
    if (finalSample !== undefined) return finalSample;
    const stats = hopper.stats();
    trackPeaks(stats);
    return {
      bytesIn,
      recordsIn: recordsTaken + skipped,
      bytesOut,
      recordsOut,
      memoryBytes: stats.memoryBytes,
      memoryBudget: command.memory,
      diskBytes: stats.diskBytes,
      segments: stats.segments,
      skipped,
      dropped: stats.dropped,
      held: held(stats),
    };
  };
  const trackPeaks = (stats = hopper.stats()): void => {
    if (stats.memoryBytes > peak.memoryBytes) peak.memoryBytes = stats.memoryBytes;
    if (stats.diskBytes > peak.diskBytes) peak.diskBytes = stats.diskBytes;
    if (stats.segments > peak.segments) peak.segments = stats.segments;
  };
  const showProgress = command.progress ?? stderr.isTTY === true;
  const progress = showProgress
    ? new ProgressLine({
        write: (text) => stderr.write(text),
        tty: stderr.isTTY === true,
        sample,
        columns: () => stderr.columns,
        records: command.lines,
        // With --schema, the output is JSON written anew: its bytes are not the input's.
        size: command.size,
        outputIsInput: command.schemaFile === undefined,
      })
    : undefined;
  const say = (text: string): void => {
    if (progress) progress.message(text);
    else stderr.write(`${text}\n`);
  };

  // Input -------------------------------------------------------------------------------------

  const stopInput = (): void => {
    if (!inputOpen) return;
    inputOpen = false;
    stdin.removeListener('data', onData);
    stdin.removeListener('end', onEnd);
    stdin.pause();
    stdin.destroy();
    if (!writable.writableEnded && !writable.destroyed && !writable.errored) writable.end();
  };
  // Said at once: what is held is still being written out, and the user learns now why the
  // input stopped, not only at the exit.
  const failInput = (message: string): void => {
    if (failure === undefined) {
      failure = message;
      if (inputOpen) {
        say(`hopper-streams: ${message}`);
        failureSaid = true;
      }
    }
    stopInput();
  };

  /** Writes one record; false when the writable wants the input paused (or has failed). */
  const writeRecord = (record: unknown, where: string): boolean => {
    const ok = writable.write(record);
    if (writable.errored) {
      failInput(`${where}: ${refusalMessage(writable.errored, command)}`);
      return false;
    }
    recordsTaken++;
    return ok;
  };

  /** A line made into a record: the string, or with --schema the parsed record fitted to the schema. */
  const lineRecord = (line: string): { record: unknown } | { invalid: string } => {
    if (codec === undefined) return { record: line };
    let parsed: unknown;
    try {
      parsed = parseRecord(line, buffers);
    } catch (err) {
      return { invalid: `not JSON (${(err as Error).message})` };
    }
    // Fitted to the schema (defaults filled in, undeclared fields dropped), a record prints the
    // same whether it comes back from memory or from disk.
    let record: unknown;
    let cloneError: Error | undefined;
    try {
      record = codec.type.clone(parsed, {});
    } catch (err) {
      record = parsed;
      cloneError = err as Error;
    }
    try {
      codec.validate(record);
    } catch (err) {
      if (HopperError.is(err, 'ERR_HOPPER_INVALID_RECORD')) return { invalid: err.message };
      throw err;
    }
    return cloneError ? { invalid: `invalid record: ${cloneError.message}` } : { record };
  };

  const writeLine = (line: string): boolean => {
    lineNumber++;
    const made = lineRecord(line);
    if ('record' in made) return writeRecord(made.record, `stopped at line ${lineNumber}`);
    if (command.onInvalid === 'error') {
      failInput(`line ${lineNumber}: ${made.invalid}`);
      return false;
    }
    skipped++;
    if (skipped <= SKIP_MESSAGES) say(`hopper-streams: skipped line ${lineNumber}: ${made.invalid}`);
    if (skipped === SKIP_MESSAGES) say('hopper-streams: further invalid lines are skipped without a message');
    return true;
  };

  const onData = (chunk: Buffer): void => {
    const before = bytesIn;
    bytesIn += chunk.length;
    let ok = true;
    if (splitter === undefined) {
      for (let start = 0; start < chunk.length; start += BYTE_RECORD_BYTES) {
        const piece = chunk.subarray(start, start + BYTE_RECORD_BYTES);
        const record = chunk.length <= BYTE_RECORD_BYTES ? chunk : copyPieces ? Buffer.from(piece) : piece;
        ok = writeRecord(record, `stopped at input byte ${before + start}`) && ok;
        if (!inputOpen) return;
      }
    } else {
      for (const line of splitter.push(chunk)) {
        ok = writeLine(line) && ok;
        if (!inputOpen) return;
      }
    }
    trackPeaks();
    if (!ok && inputOpen && !inputPaused) {
      // The hopper holds this write until the reader frees room (--on-full block at the cap).
      inputPaused = true;
      stdin.pause();
      writable.once('drain', () => {
        inputPaused = false;
        if (inputOpen) stdin.resume();
      });
    }
  };

  const onEnd = (): void => {
    const last = splitter?.end();
    if (last !== undefined) writeLine(last);
    if (!inputOpen) return;
    inputOpen = false;
    writable.end();
  };

  stdin.on('data', onData);
  stdin.on('end', onEnd);
  stdin.on('error', (err: Error) => failInput(`reading stdin failed: ${err.message}`));
  // A refused write (full with --on-full error, a record too large) ends the input; what was
  // accepted before it is still delivered. writeRecord reports it with its position.
  writable.on('error', (err: Error) => failInput(refusalMessage(err, command)));

  // Output ------------------------------------------------------------------------------------

  let waitingForDrain = false;
  const separator = command.separator;
  const format = (record: unknown): string => (codec === undefined ? `${record as string}${separator}` : `${stringifyRecord(record, buffers)}${separator}`);

  const pumpOutput = (): void => {
    if (waitingForDrain || finished) return;
    if (splitter === undefined) {
      // Corked, the records of one turn go out in one writev (where stdout has one). Records
      // that lie side by side in memory (pieces of one stdin chunk) go out as one write of up
      // to OUTPUT_BATCH_BYTES: without that, a 64 KiB chunk cut in four would cost four writes.
      stdout.cork();
      try {
        let run: Buffer | undefined;
        let ok = true;
        for (let record: unknown = readable.read(); record !== null; record = readable.read()) {
          const piece = record as Buffer;
          recordsOut++;
          bytesOut += piece.length;
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
        if (!ok) waitForDrain();
      } finally {
        stdout.uncork();
      }
      return;
    }
    let batch = '';
    for (let record: unknown = readable.read(); record !== null; record = readable.read()) {
      recordsOut++;
      batch += format(record);
      if (batch.length >= OUTPUT_BATCH_BYTES) {
        const ok = writeText(batch);
        batch = '';
        if (!ok) {
          waitForDrain();
          return;
        }
      }
    }
    if (batch !== '' && !writeText(batch)) waitForDrain();
  };
  const writeText = (text: string): boolean => {
    bytesOut += Buffer.byteLength(text);
    return stdout.write(text);
  };
  const waitForDrain = (): void => {
    waitingForDrain = true;
    stdout.once('drain', () => {
      waitingForDrain = false;
      pumpOutput();
    });
  };

  // What was written to stdout is in its hands; the exit waits until stdout has taken it all.
  const finishAfterFlush = (): void => {
    stdout.write('', () => finish(true));
  };
  readable.on('readable', pumpOutput);
  readable.on('end', finishAfterFlush);
  readable.on('error', (err: Error) => {
    // The hopper failed (a corrupt segment, a disk error): the records it still held are lost.
    failure ??= refusalMessage(err, command);
    stopInput();
    finishAfterFlush();
  });
  stdout.on('error', (err: NodeJS.ErrnoException) => {
    stopInput();
    hopper.destroy();
    if (err.code === 'EPIPE') {
      // The reader went away: what is held has nowhere to go. Exit as a SIGPIPE death would.
      signalCode = 128 + os.constants.signals.SIGPIPE;
      stoppedBy = 'stopped: stdout was closed';
    } else {
      failure ??= `writing stdout failed: ${err.message}`;
    }
    finish(false);
  });

  // Signals -----------------------------------------------------------------------------------

  const onSignal = (signal: NodeJS.Signals): void => {
    signalCount++;
    signalCode = 128 + os.constants.signals[signal];
    stoppedBy = `interrupted by ${signal}`;
    if (signalCount === 1) {
      stopInput();
      say(`hopper-streams: ${signal}: stopped reading; writing out the ${held()} records held (signal again to discard them)`);
      return;
    }
    hopper.destroy();
    finish(false);
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);

  const finish = (flushed: boolean): void => {
    if (finished) return;
    finished = true;
    for (const signal of SIGNALS) process.removeListener(signal, onSignal);
    stopInput();
    const { spilled, dropped } = hopper.stats();
    finalSample = sample();
    hopper.destroy();
    const code = failure !== undefined ? 1 : signalCode;
    if (progress) {
      const status = failure !== undefined ? 'failed' : stoppedBy || 'done';
      progress.finish({ status, peakMemoryBytes: peak.memoryBytes, peakDiskBytes: peak.diskBytes, peakSegments: peak.segments, spilled });
    } else {
      // Without the summary, what was skipped or dropped is still said: a drop is never silent.
      if (skipped > 0) stderr.write(`hopper-streams: ${skipped} invalid line${skipped === 1 ? '' : 's'} skipped\n`);
      if (dropped > 0) stderr.write(`hopper-streams: ${dropped} record${dropped === 1 ? '' : 's'} dropped (--on-full ${command.onFull})\n`);
    }
    if (failure !== undefined && !failureSaid) stderr.write(`hopper-streams: ${failure}\n`);
    resolveOutcome({ code, flushed });
  };

  progress?.start();
  return outcome;
}
