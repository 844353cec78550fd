import test from 'ava';
import { PLAIN_INTERVAL_MS, ProgressLine, TTY_INTERVAL_MS, formatBytes, formatCount, formatDuration, type ProgressSample } from '../lib/cli/progress.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function sample(overrides: Partial<ProgressSample> = {}): ProgressSample {
  return {
    bytesIn: 0,
    recordsIn: 0,
    bytesOut: 0,
    recordsOut: 0,
    memoryBytes: 0,
    memoryBudget: MiB,
    diskBytes: 0,
    segments: 0,
    skipped: 0,
    dropped: 0,
    held: 0,
    ...overrides,
  };
}

/** A progress line on a fake clock, writing into an array. */
function fakeLine(tty: boolean, options: { columns?: number; records?: boolean; size?: number; outputIsInput?: boolean } = {}) {
  let now = 10_000;
  let counters = sample();
  const written: string[] = [];
  const line = new ProgressLine({
    write: (text) => written.push(text),
    tty,
    sample: () => counters,
    now: () => now,
    columns: () => options.columns,
    records: options.records,
    size: options.size,
    outputIsInput: options.outputIsInput,
  });
  return {
    line,
    written,
    advance(ms: number, next: Partial<ProgressSample>) {
      now += ms;
      counters = { ...counters, ...next };
    },
  };
}

test('formatBytes() - binary units, one decimal below 10, unlimited for Infinity', (t) => {
  t.is(formatBytes(0), '0B');
  t.is(formatBytes(1023), '1023B');
  t.is(formatBytes(1024), '1.0KiB');
  t.is(formatBytes(1536), '1.5KiB');
  t.is(formatBytes(256 * KiB), '256KiB');
  t.is(formatBytes(10 * MiB - 1), '10MiB');
  t.is(formatBytes(MiB - 300), '1.0MiB');
  t.is(formatBytes(64 * MiB), '64MiB');
  t.is(formatBytes(10 * 1024 * MiB), '10GiB');
  t.is(formatBytes(123.6), '124B');
  t.is(formatBytes(Infinity), 'unlimited');
});

test('formatCount() and formatDuration() - short forms', (t) => {
  t.is(formatCount(9999), '9999');
  t.is(formatCount(12_345), '12.3k');
  t.is(formatCount(4_500_000), '4.5M');
  t.is(formatDuration(400), '0.4s');
  t.is(formatDuration(59_940), '59.9s');
  t.is(formatDuration(187_000), '3m07s');
  t.is(formatDuration(3_720_000), '1h02m');
});

test('ProgressLine - on a terminal each update redraws one line: carriage return, the line, erase to its end', (t) => {
  const { line, written, advance } = fakeLine(true, { columns: 120 });
  advance(500, { bytesIn: 2 * MiB, bytesOut: MiB, memoryBytes: 512 * KiB, diskBytes: 3 * MiB, segments: 2 });
  line.update();
  t.deepEqual(written, ['\rin 2.0MiB 4.0MiB/s | out 1.0MiB 2.0MiB/s | mem 512KiB/1.0MiB | disk 3.0MiB 2 seg\x1b[K']);
});

test('ProgressLine - rates cover about the last second, not the whole run', (t) => {
  const { line, written, advance } = fakeLine(false);
  // 10 MiB in the first second, then 1 MiB a second.
  advance(1000, { bytesIn: 10 * MiB });
  line.update();
  for (let i = 1; i <= 4; i++) {
    advance(250, { bytesIn: 10 * MiB + (i * MiB) / 4 });
    line.update();
  }
  t.regex(written[0]!, /^in 10MiB 10MiB\/s \|/);
  t.regex(written[4]!, /^in 11MiB 1\.0MiB\/s \|/);
});

test('ProgressLine - lines mode shows record counts that add up: in = out + skipped + dropped + held', (t) => {
  const { line, written, advance } = fakeLine(false, { records: true });
  advance(1000, { bytesIn: 4 * KiB, recordsIn: 12_345, bytesOut: KiB, recordsOut: 100, skipped: 3, dropped: 40, held: 12_202 });
  line.update();
  t.deepEqual(written, [
    'in 4.0KiB 12.3k rec 4.0KiB/s | out 1.0KiB 100 rec 1.0KiB/s | mem 0B/1.0MiB | disk 0B 0 seg | held 12.2k rec | 3 skipped | 40 dropped\n',
  ]);
});

test('ProgressLine - with the input size known (-s): percent in and out, and the ETA of the input at its rate', (t) => {
  const { line, written, advance } = fakeLine(false, { size: 10 * MiB });
  advance(1000, { bytesIn: 4 * MiB, bytesOut: MiB });
  line.update();
  t.is(written[0], 'in 4.0MiB 40% 4.0MiB/s ETA 1.5s | out 1.0MiB 10% 1.0MiB/s | mem 0B/1.0MiB | disk 0B 0 seg\n');
  advance(1000, {});
  line.update();
  t.regex(written[1]!, /^in 4\.0MiB 40% 0B\/s ETA \? \|/, 'no rate: no estimate');
  advance(1000, { bytesIn: 10 * MiB });
  line.update();
  t.regex(written[2]!, /^in 10MiB 100% 6\.0MiB\/s \| out 1\.0MiB 10% /, 'the input is all in: no ETA');
});

test('ProgressLine - with --schema the output is not the input: only the input has a percent', (t) => {
  const { line, written, advance } = fakeLine(false, { size: 8 * KiB, records: true, outputIsInput: false });
  advance(1000, { bytesIn: 2 * KiB, recordsIn: 10, bytesOut: 3 * KiB, recordsOut: 10 });
  line.update();
  t.regex(written[0]!, /^in 2\.0KiB 25% 10 rec 2\.0KiB\/s ETA 3\.0s \| out 3\.0KiB 10 rec 3\.0KiB\/s \|/);
});

test('ProgressLine - the line is cut to the terminal width so that it never wraps', (t) => {
  const { line, written, advance } = fakeLine(true, { columns: 40 });
  advance(1000, { bytesIn: MiB });
  line.update();
  t.is(written[0], `\r${'in 1.0MiB 1.0MiB/s | out 0B 0B/s | mem 0B/1.0MiB'.slice(0, 39)}\x1b[K`);
});

test('ProgressLine - a message goes on a line of its own and the progress line is drawn again below it', (t) => {
  const { line, written, advance } = fakeLine(true);
  advance(1000, { bytesIn: KiB });
  line.update();
  line.message('hopper-streams: SIGINT: stopped reading');
  t.is(written[1], '\r\x1b[Khopper-streams: SIGINT: stopped reading\n');
  t.regex(written[2]!, /^\rin 1\.0KiB /);
});

test('ProgressLine.finish() - replaces the line with the summary: totals, average rates, peaks', (t) => {
  const { line, written, advance } = fakeLine(true, { records: true });
  advance(2000, { bytesIn: 8 * MiB, recordsIn: 1003, bytesOut: 8 * MiB, recordsOut: 1000, skipped: 2, dropped: 1 });
  line.update();
  line.finish({ status: 'done', peakMemoryBytes: MiB, peakDiskBytes: 7 * MiB, peakSegments: 1, spilled: 870 });
  t.is(
    written[1],
    '\r\x1b[Khopper-streams: done in 2.0s: in 8.0MiB 1003 rec (4.0MiB/s), out 8.0MiB 1000 rec (4.0MiB/s);' +
      ' memory peak 1.0MiB of 1.0MiB; disk peak 7.0MiB in 1 segment, 870 rec spilled; 2 invalid lines skipped; 1 record dropped\n',
  );
});

test('ProgressLine.finish() - records still held when the run ends are named as not delivered', (t) => {
  const { line, written, advance } = fakeLine(false, { records: true });
  advance(1000, { bytesIn: KiB, recordsIn: 50, bytesOut: 100, recordsOut: 20, held: 30 });
  line.finish({ status: 'interrupted by SIGTERM', peakMemoryBytes: KiB, peakDiskBytes: 0, peakSegments: 0, spilled: 0 });
  t.regex(written[0]!, /: in 1\.0KiB 50 rec .* out 100B 20 rec .*; 30 records not delivered\n$/);
});

test('ProgressLine.finish() - without a terminal, the summary is a plain line; byte mode leaves records out', (t) => {
  const { line, written, advance } = fakeLine(false);
  advance(500, { bytesIn: 100, bytesOut: 100, recordsIn: 1, recordsOut: 1 });
  line.finish({ status: 'interrupted (exit 130)', peakMemoryBytes: 100, peakDiskBytes: 0, peakSegments: 0, spilled: 0 });
  t.deepEqual(written, [
    'hopper-streams: interrupted (exit 130) in 0.5s: in 100B (200B/s), out 100B (200B/s); memory peak 100B of 1.0MiB; disk peak 0B in 0 segments\n',
  ]);
});

/** A fake clock for ProgressLine's `every`: tick() fires every timer still running. */
function fakeTimers() {
  const timers = new Set<{ ms: number; tick: () => void }>();
  return {
    every: (ms: number, tick: () => void) => {
      const timer = { ms, tick };
      timers.add(timer);
      return () => timers.delete(timer);
    },
    running: () => [...timers].map((timer) => timer.ms),
    tick: () => {
      for (const timer of [...timers]) timer.tick();
    },
  };
}

test('ProgressLine.start() - refreshes on a timer a few times a second on a terminal, once a second otherwise; finish() stops it', (t) => {
  t.true(TTY_INTERVAL_MS <= 334 && TTY_INTERVAL_MS >= 100);
  t.is(PLAIN_INTERVAL_MS, 1000);
  for (const tty of [true, false]) {
    const clock = fakeTimers();
    const written: string[] = [];
    const line = new ProgressLine({ write: (text) => written.push(text), tty, sample: () => sample(), every: clock.every });
    line.start();
    line.start(); // a second start() does not add a second timer
    t.deepEqual(clock.running(), [tty ? TTY_INTERVAL_MS : PLAIN_INTERVAL_MS]);
    for (let i = 0; i < 3; i++) clock.tick();
    t.is(written.length, 3, 'one draw per tick');
    line.finish({ status: 'done', peakMemoryBytes: 0, peakDiskBytes: 0, peakSegments: 0, spilled: 0 });
    t.deepEqual(clock.running(), [], 'finish() stops the timer');
    clock.tick();
    t.is(written.length, 4, 'the summary, and nothing drawn after it');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the progress line's escape codes are what is checked
    t.regex(written[3]!, /^(\r\x1b\[K)?hopper-streams: done in /);
  }
});
