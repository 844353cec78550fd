/** Helpers the scenarios share inside a child process: order checks, sinks, timing, disk usage. */
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import type { RunReport } from './define-scenario.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export const now = (): number => performance.now();

/** Lets the event loop turn once (timers, I/O, setImmediate callbacks). */
export const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Per second, from a count and a duration in milliseconds. */
export function perSecond(count: number, ms: number): number {
  return ms > 0 ? (count * 1000) / ms : Number.NaN;
}

/** Checks that sequence numbers arrive as 1, 2, 3, … with no gap, repeat or swap. */
export class OrderCheck {
  received = 0;
  private next = 1;
  firstProblem: string | undefined;

  constructor(readonly expected: number) {}

  see(seq: number): void {
    if (seq !== this.next && this.firstProblem === undefined) {
      this.firstProblem = `record #${this.received + 1} had seq ${seq}, expected ${this.next}`;
    }
    this.next = seq + 1;
    this.received++;
  }

  result(): RunReport['check'] {
    return checkResult(this.expected, this.received, this.firstProblem);
  }
}

/** A run's order check: every record seen, and no problem found. */
function checkResult(expected: number, received: number, firstProblem: string | undefined): RunReport['check'] {
  const check: RunReport['check'] = { expected, received, inOrder: firstProblem === undefined && received === expected };
  if (firstProblem !== undefined) check.firstProblem = firstProblem;
  return check;
}

/**
 * Checks several interleaved streams of sequence numbers: stream k must see its own numbers in
 * increasing order (the global order is whatever order the channel accepted them in).
 */
export class InterleavedOrderCheck {
  received = 0;
  private readonly last: number[];
  firstProblem: string | undefined;

  constructor(
    readonly expected: number,
    streams: number,
    private readonly streamOf: (seq: number) => number,
  ) {
    this.last = new Array<number>(streams).fill(0);
  }

  see(seq: number): void {
    const stream = this.streamOf(seq);
    const last = this.last[stream];
    if ((last === undefined || seq <= last) && this.firstProblem === undefined) {
      this.firstProblem = `record #${this.received + 1} had seq ${seq} after ${last} from sender ${stream}`;
    }
    this.last[stream] = seq;
    this.received++;
  }

  result(): RunReport['check'] {
    return checkResult(this.expected, this.received, this.firstProblem);
  }
}

/** An objectMode sink that hands each record to `see` and calls back at once: a consumer that keeps up. */
export function recordSink<T>(see: (record: T) => void): Writable {
  return new Writable({
    objectMode: true,
    highWaterMark: 16,
    write(record: T, _encoding, callback) {
      see(record);
      callback();
    },
  });
}

/** Bytes of all files under `dir` (what the implementation holds on disk now). */
export function dirBytes(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += dirBytes(full);
    else if (entry.isFile()) {
      try {
        total += fs.statSync(full).size;
      } catch {
        // Removed while we looked.
      }
    }
  }
  return total;
}

/** Resolves on the first of `events` emitted by `emitter`; rejects on its 'error'. */
export function once(emitter: NodeJS.EventEmitter, event: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onEvent = (): void => {
      emitter.off('error', onError);
      resolve();
    };
    const onError = (err: Error): void => {
      emitter.off(event, onEvent);
      reject(err);
    };
    emitter.once(event, onEvent);
    emitter.once('error', onError);
  });
}
