import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import type { BufferCommand } from './args.js';
import type { RecordCodec } from '../codec.js';
import { LineSplitter, lineRecord, schemaHasBytes, stringifyRecord } from './json-lines.js';
import { openFailureMessage, refusalMessage } from './messages.js';
import { Output } from './output.js';
import { ProgressLine, type ProgressSample } from './progress.js';
import { createHopperStreams, type HopperStreams } from '../streams.js';

// `hopper-streams [buffer]`: stdin into a hopper's writable as fast as it comes, the hopper's
// readable to stdout at the pace stdout drains. Byte mode writes stdin's Buffers as records;
// --lines writes lines (strings), and with --schema, parsed, validated records. Standard input
// is stdin.ts's, the output output.ts's, and the words for refusals messages.ts's.
/**
 * Byte mode cuts stdin's chunks (64 KiB from a pipe or a file) into records of at most this
 * size: the hopper's readable buffers up to 16 records beyond the memory budget, so small
 * records keep that overshoot small. Output puts the pieces of a chunk back together.
 */
const BYTE_RECORD_BYTES = 16 * 1024;
/** Skipped invalid lines reported one by one; past this, only counted. */
const SKIP_MESSAGES = 10;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

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
  const separator = command.separator;
  const output = new Output(
    readable,
    stdout,
    splitter === undefined
      ? undefined
      : codec === undefined
        ? (record) => `${record as string}${separator}`
        : (record) => `${stringifyRecord(record, buffers)}${separator}`,
  );
  // A piece of a chunk is a view of it: records are taken and leave in order, so the chunk
  // bytes a view keeps alive beyond the held records' own are those of a chunk partly
  // delivered or partly spilled, at the two ends of what memory holds (a chunk at most, each).
  // drop-newest refuses pieces one by one when full, and could leave one held piece of each
  // of many chunks, each keeping its whole chunk alive: there, pieces are copies.
  const copyPieces = command.onFull === 'drop-newest';

  let bytesIn = 0;
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
  const held = (stats = hopper.stats()): number => stats.memoryRecords + stats.diskRecords + stats.recordsOut - output.recordsOut;
  /** The counters as the run ended, taken before the hopper is destroyed. */
  let finalSample: ProgressSample | undefined;
  const sample = (): ProgressSample => {
    if (finalSample !== undefined) return finalSample;
    const stats = hopper.stats();
    trackPeaks(stats);
    return {
      bytesIn,
      recordsIn: recordsTaken + skipped,
      bytesOut: output.bytesOut,
      recordsOut: output.recordsOut,
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

  const writeLine = (line: string): boolean => {
    lineNumber++;
    const made = lineRecord(line, codec, buffers);
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

  // What was written to stdout is in its hands; the exit waits until stdout has taken it all.
  const finishAfterFlush = (): void => {
    stdout.write('', () => finish(true));
  };
  readable.on('readable', () => output.pump());
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
    output.stop();
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
