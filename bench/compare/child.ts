/**
 * One run of `bench/compare/run.ts`, in the checkout given as its first argument: a burst of events
 * into a hopper with the reader paused, then the drain, timed apart; or a pass-through (the mode's
 * `through`). Prints one JSON line: the rates, the process's peak RSS, and per phase the CPU time
 * of the main thread and of the process and the event loop's idle time (ms).
 *
 *   node --import tsx/esm bench/compare/child.ts CHECKOUT MODE RECORDS
 */
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { eventSchema, events, makeEvent, type Event } from '../../examples/events.js';
import { MODES, type Mode } from './modes.js';

const [checkout, modeName, recordsArg] = process.argv.slice(2);
const mode: Mode | undefined = MODES[modeName ?? ''];
if (checkout === undefined || mode === undefined || recordsArg === undefined) throw new Error('usage: child.ts CHECKOUT MODE RECORDS');
if (mode.bytes !== undefined && (mode.schema || mode.through !== undefined)) throw new Error('a bytes mode is a schemaless burst');
const records = Number(recordsArg);
const lib = (await import(path.join(path.resolve(checkout), 'lib/index.ts'))) as typeof import('../../lib/index.js');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-compare-'));
const rate = (ms: number): number => (records * 1000) / ms;
/** CPU time of the main thread so far, in ms (Linux: its schedstat, in ns); NaN where there is none. */
const mainCpuMs = (): number => {
  try {
    return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
};
/** CPU time of the whole process so far (the thread pool's reads and writes too), in ms. */
const processCpuMs = (): number => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
/** Main-thread and process CPU ms, and the event loop's idle ms, of each phase: where the time went, which holds still on a busy machine. */
const phases: Record<string, { cpu: number; processCpu: number; idle: number }> = {};
let mark = { cpu: mainCpuMs(), processCpu: processCpuMs(), elu: performance.eventLoopUtilization() };
const endPhase = (name: string): void => {
  const now = { cpu: mainCpuMs(), processCpu: processCpuMs(), elu: performance.eventLoopUtilization() };
  phases[name] = {
    cpu: Math.round(now.cpu - mark.cpu),
    processCpu: Math.round(now.processCpu - mark.processCpu),
    idle: Math.round(performance.eventLoopUtilization(now.elu, mark.elu).idle),
  };
  mark = { cpu: mainCpuMs(), processCpu: processCpuMs(), elu: performance.eventLoopUtilization() };
};
// maxRSS is in KiB.
const peakRssMiB = (): number => process.resourceUsage().maxRSS / 1024;
try {
  const options = { dataDir, name: 'compare', maxMemoryBytes: mode.maxMemoryBytes, ...(mode.schema ? { schema: eventSchema() } : {}) };
  let seen = 0;
  const bytes = mode.bytes;
  // A bytes mode's record is a Buffer whose first four bytes hold its seq.
  const seqOf = (record: { seq: number } | Buffer): number => (Buffer.isBuffer(record) ? record.readUInt32LE(0) : record.seq);
  const check = (record: { seq: number } | Buffer): void => {
    if (seqOf(record) !== ++seen) throw new Error(`record ${seen} had seq ${seqOf(record)}`);
  };
  const makeRecord = (seq: number): { seq: number } | Buffer => {
    if (bytes === undefined) return makeEvent(seq);
    const buffer = Buffer.allocUnsafe(bytes).fill(seq & 0xff);
    buffer.writeUInt32LE(seq, 0);
    return buffer;
  };
  if (mode.through !== undefined) {
    const sink = new Writable({
      objectMode: true,
      write(record: { seq: number }, _encoding, callback) {
        check(record);
        callback();
      },
    });
    const source = Readable.from(events(records));
    const started = performance.now();
    endPhase('setup');
    if (mode.through === 'duplex') {
      await pipeline(source, lib.createHopperStream<Event>(options), sink);
    } else {
      const hopper = lib.createHopperStreams<Event>(options);
      await Promise.all([pipeline(source, hopper.writable), pipeline(hopper.readable, sink)]);
    }
    const ended = performance.now();
    endPhase('total');
    if (seen !== records) throw new Error(`read ${seen} of ${records} records`);
    console.log(JSON.stringify({ total: rate(ended - started), peakRssMiB: peakRssMiB(), phases }));
  } else {
    const hopper = lib.createHopperStreams<{ seq: number } | Buffer>(options);
    const turn = (): Promise<unknown> => new Promise((resolve) => setImmediate(resolve));
    const started = performance.now();
    endPhase('setup');
    for (let seq = 1; seq <= records; seq++) {
      if (mode.streams !== true) hopper.send(makeRecord(seq));
      else if (!hopper.writable.write(makeRecord(seq))) await once(hopper.writable, 'drain');
      if (seq % 16_384 === 0) await turn();
    }
    hopper.writable.end();
    if (mode.streams === true) await once(hopper.writable, 'finish');
    const written = performance.now();
    endPhase('write');
    if (mode.streams !== true) {
      for await (const record of hopper.readable) check(record);
    } else {
      const sink = new Writable({
        objectMode: true,
        highWaterMark: 16,
        write(record: { seq: number } | Buffer, _encoding, callback) {
          check(record);
          callback();
        },
      });
      await pipeline(hopper.readable, sink);
    }
    const drained = performance.now();
    endPhase('drain');
    if (seen !== records) throw new Error(`read ${seen} of ${records} records`);
    console.log(
      JSON.stringify({ write: rate(written - started), drain: rate(drained - written), total: rate(drained - started), peakRssMiB: peakRssMiB(), phases }),
    );
  }
} finally {
  fs.rmSync(dataDir, { recursive: true, force: true });
}
