// The CLI's progress line: counters sampled a few times a second and drawn over one terminal
// line (or printed as plain lines, once a second, when stderr is not a terminal), then a
// summary line. The clock, the timer, the counters and the output are passed in, so tests drive it.

/** Counters at one moment. */
export interface ProgressSample {
  bytesIn: number;
  recordsIn: number;
  bytesOut: number;
  recordsOut: number;
  memoryBytes: number;
  memoryBudget: number;
  diskBytes: number;
  segments: number;
  /** Invalid lines skipped (`--on-invalid skip`). */
  skipped: number;
  /** Records dropped by a drop policy (`--on-full drop-newest|drop-oldest`). */
  dropped: number;
  /** Records taken in and not yet written out: `recordsIn = recordsOut + skipped + dropped + held`. */
  held: number;
}

/** What the summary adds to the last sample. */
export interface ProgressTotals {
  /** How the run ended: `done`, `interrupted by SIGINT`, `stopped` ... */
  status: string;
  peakMemoryBytes: number;
  peakDiskBytes: number;
  peakSegments: number;
  spilled: number;
}

export interface ProgressOptions {
  /** Where text goes: stderr. */
  write: (text: string) => void;
  /** A terminal: redraw one line in place. Otherwise print whole lines, less often. */
  tty: boolean;
  /** Counters now. */
  sample: () => ProgressSample;
  /** The terminal's width (the line is cut to fit, so that it never wraps). */
  columns?: () => number | undefined;
  /** Milliseconds, monotonic. */
  now?: () => number;
  /**
   * Calls `tick` every `ms` until the returned function is called. Default: `setInterval`,
   * unref'd so that it never keeps the process alive. Tests pass a fake clock.
   */
  every?: (ms: number, tick: () => void) => () => void;
  /** Show record counts (lines mode); in byte mode records are just pieces of the input. */
  records?: boolean | undefined;
  /** The input's size in bytes, if known (`-s`): the line shows percent and ETA. */
  size?: number | undefined;
  /** Whether output bytes are input bytes (not so with --schema), so that out has a percent too. */
  outputIsInput?: boolean | undefined;
}

/** Refresh period on a terminal, and between plain lines otherwise. */
export const TTY_INTERVAL_MS = 250;
export const PLAIN_INTERVAL_MS = 1000;
/** Rates are measured over about this much of the recent past. */
const RATE_WINDOW_MS = 1000;

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `512B`, `1.5KiB`, `12MiB`, `unlimited`: binary units, one decimal below 10. */
export function formatBytes(bytes: number): string {
  if (bytes === Infinity) return 'unlimited';
  let value = Math.round(bytes);
  let unit = 0;
  // Past 1023.5 the value would show as 1024 of this unit: the next unit reads better.
  while (value >= 1023.5 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value}B`;
  return `${value < 9.95 ? value.toFixed(1) : Math.round(value)}${UNITS[unit]}`;
}

/** `999`, `12.3k`, `4.5M`: record counts, short. */
export function formatCount(count: number): string {
  if (count < 10_000) return String(count);
  if (count < 1_000_000) return `${(count / 1000).toFixed(1)}k`;
  return `${(count / 1_000_000).toFixed(1)}M`;
}

/** `0.4s`, `12.0s`, `3m07s`, `1h02m`. */
export function formatDuration(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const whole = Math.floor(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** What the progress line knows of the input's size (`-s`). */
export interface KnownSize {
  bytes: number;
  /** Output bytes are input bytes, so out has a percent too. */
  outputIsInput: boolean;
}

/** `40%`: floored, so that 100% means all of it (past the given size, it goes on counting). */
function percent(part: number, whole: number): string {
  return `${Math.floor((part / whole) * 100)}%`;
}

/**
 * The progress line for a sample, with byte rates in and out per second (and record counts, if
 * `records`; percent of the input's size and the ETA of the input at its current rate, if `size`).
 */
export function formatProgress(sample: ProgressSample, rateIn: number, rateOut: number, records: boolean, size?: KnownSize): string {
  const count = (n: number): string => (records ? ` ${formatCount(n)} rec` : '');
  let eta = '';
  if (size !== undefined && sample.bytesIn < size.bytes) {
    eta = rateIn > 0 ? ` ETA ${formatDuration(((size.bytes - sample.bytesIn) / rateIn) * 1000)}` : ' ETA ?';
  }
  const parts = [
    `in ${formatBytes(sample.bytesIn)}${size ? ` ${percent(sample.bytesIn, size.bytes)}` : ''}${count(sample.recordsIn)} ${formatBytes(rateIn)}/s${eta}`,
    `out ${formatBytes(sample.bytesOut)}${size?.outputIsInput ? ` ${percent(sample.bytesOut, size.bytes)}` : ''}${count(sample.recordsOut)} ${formatBytes(rateOut)}/s`,
    `mem ${formatBytes(sample.memoryBytes)}/${formatBytes(sample.memoryBudget)}`,
    `disk ${formatBytes(sample.diskBytes)} ${sample.segments} seg`,
  ];
  if (records) parts.push(`held ${formatCount(sample.held)} rec`);
  if (sample.skipped > 0) parts.push(`${formatCount(sample.skipped)} skipped`);
  if (sample.dropped > 0) parts.push(`${formatCount(sample.dropped)} dropped`);
  return parts.join(' | ');
}

/** The summary line at the end of a run (with record counts, if `records`). */
export function formatSummary(sample: ProgressSample, totals: ProgressTotals, elapsedMs: number, records: boolean): string {
  const seconds = Math.max(elapsedMs, 1) / 1000;
  const segments = `${totals.peakSegments} segment${totals.peakSegments === 1 ? '' : 's'}`;
  const count = (n: number): string => (records ? ` ${n} rec` : '');
  let text =
    `hopper-streams: ${totals.status} in ${formatDuration(elapsedMs)}:` +
    ` in ${formatBytes(sample.bytesIn)}${count(sample.recordsIn)} (${formatBytes(sample.bytesIn / seconds)}/s),` +
    ` out ${formatBytes(sample.bytesOut)}${count(sample.recordsOut)} (${formatBytes(sample.bytesOut / seconds)}/s);` +
    ` memory peak ${formatBytes(totals.peakMemoryBytes)} of ${formatBytes(sample.memoryBudget)};` +
    ` disk peak ${formatBytes(totals.peakDiskBytes)} in ${segments}${records ? `, ${totals.spilled} rec spilled` : ''}`;
  if (sample.skipped > 0) text += `; ${sample.skipped} invalid line${sample.skipped === 1 ? '' : 's'} skipped`;
  if (sample.dropped > 0) text += `; ${sample.dropped} record${sample.dropped === 1 ? '' : 's'} dropped`;
  if (records && sample.held > 0) text += `; ${sample.held} record${sample.held === 1 ? '' : 's'} not delivered`;
  return text;
}

function everyUnref(ms: number, tick: () => void): () => void {
  const timer = setInterval(tick, ms);
  timer.unref();
  return () => clearInterval(timer);
}

interface Point {
  at: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * Draws the progress line. On a terminal: `\r`, the line cut to the width, and erase-to-end,
 * every {@link TTY_INTERVAL_MS}; elsewhere a plain line every {@link PLAIN_INTERVAL_MS}.
 */
export class ProgressLine {
  private readonly options: ProgressOptions;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly history: Point[];
  /** Stops the refresh timer, while it runs. */
  private stopTimer: (() => void) | undefined;
  /** Whether a line is drawn and not yet ended (terminal only). */
  private drawn = false;

  constructor(options: ProgressOptions) {
    this.options = options;
    this.now = options.now ?? (() => performance.now());
    this.startedAt = this.now();
    this.history = [{ at: this.startedAt, bytesIn: 0, bytesOut: 0 }];
  }

  /** Starts refreshing on a timer that does not keep the process alive. */
  start(): void {
    if (this.stopTimer !== undefined) return;
    const every = this.options.every ?? everyUnref;
    this.stopTimer = every(this.options.tty ? TTY_INTERVAL_MS : PLAIN_INTERVAL_MS, () => this.update());
  }

  /** Samples the counters and draws the line now. */
  update(): void {
    const sample = this.options.sample();
    const at = this.now();
    const history = this.history;
    history.push({ at, bytesIn: sample.bytesIn, bytesOut: sample.bytesOut });
    // Keep one point at or before the window's start: rates span about the last second.
    while (history.length > 2 && history[1]!.at <= at - RATE_WINDOW_MS) history.shift();
    const oldest = history[0]!;
    const seconds = (at - oldest.at) / 1000;
    const rate = (now: number, then: number): number => (seconds > 0 ? (now - then) / seconds : 0);
    const { size, outputIsInput = true } = this.options;
    const known = size === undefined ? undefined : { bytes: size, outputIsInput };
    const line = formatProgress(sample, rate(sample.bytesIn, oldest.bytesIn), rate(sample.bytesOut, oldest.bytesOut), this.options.records ?? false, known);
    if (this.options.tty) {
      const width = this.options.columns?.() || 80;
      this.options.write(`\r${line.slice(0, Math.max(width - 1, 20))}\x1b[K`);
      this.drawn = true;
    } else {
      this.options.write(`${line}\n`);
    }
  }

  /** Writes a message on a line of its own; the progress line is drawn again after it. */
  message(text: string): void {
    if (this.drawn) {
      this.options.write(`\r\x1b[K${text}\n`);
      this.drawn = false;
      this.update();
    } else {
      this.options.write(`${text}\n`);
    }
  }

  /** Stops refreshing and replaces the line with the summary. */
  finish(totals: ProgressTotals): void {
    this.stopTimer?.();
    this.stopTimer = undefined;
    const summary = formatSummary(this.options.sample(), totals, this.now() - this.startedAt, this.options.records ?? false);
    this.options.write(`${this.drawn ? '\r\x1b[K' : ''}${summary}\n`);
    this.drawn = false;
  }
}
