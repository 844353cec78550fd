import type { Type, Schema } from 'avsc';
import { invalidArgumentType, invalidOptionType, invalidOptionValue } from './errors.js';

/** An Avro schema in any form avsc takes: a schema object, its JSON text, or an avsc `Type`. */
export type AvroSchema = Schema | Type | string | object;

/** The `onFull` policies, in the order the docs list them. */
export const ON_FULL_POLICIES = ['block', 'error', 'drop-newest', 'drop-oldest'] as const;
/** The segment codecs. */
export const SEGMENT_CODECS = ['null', 'deflate'] as const;
/** What the reader does with a damaged segment. */
export const ON_CORRUPT_POLICIES = ['error', 'skip'] as const;

/** The fsync policies of a durable channel. */
export const FSYNC_POLICIES = ['always', 'batch', 'never'] as const;
/** When a durable channel's record is acknowledged. */
export const ACK_MODES = ['delivered', 'manual'] as const;

/** When a durable channel's write callback fires: after an fsync, at the next group commit, or once the OS has the bytes. */
export type FsyncPolicy = (typeof FSYNC_POLICIES)[number];

/** When a durable channel's record is done: once delivered, or once `hopper.ack()` says so. */
export type AckMode = (typeof ACK_MODES)[number];

/** What a write does when memory is full and a disk cap is reached. */
export type OnFull = (typeof ON_FULL_POLICIES)[number];

/** Avro block codec used in segment files. */
export type SegmentCodec = (typeof SEGMENT_CODECS)[number];

/** What the reader does with a damaged segment. */
export type OnCorrupt = (typeof ON_CORRUPT_POLICIES)[number];

/** Options of {@link createHopperStreams}. Every option is optional. */
export interface HopperOptions {
  /**
   * Channel name: the directory `<dataDir>/<name>/` that holds the segment files.
   * Must be a single path component (no separators, not `.` or `..`), at most 255 bytes.
   * @default 'hopper'
   */
  name?: string | undefined;
  /**
   * Directory under which the channel directory is made (created if missing).
   * By default a fresh directory from `fs.mkdtemp(os.tmpdir())`, removed when the channel closes.
   */
  dataDir?: string | undefined;
  /**
   * Avro schema of the records: a JSON object, a JSON string or an avsc `Type`.
   * Records are validated against it when written and Avro-encoded on disk.
   * Without one, Buffers, strings and JSON values are accepted.
   * A plain object literal is accepted as is (also `as const`); avsc checks it at creation.
   */
  schema?: AvroSchema | undefined;
  /**
   * Memory budget, in bytes, for records held in memory. A record that does not fit goes to disk.
   * @default 16 MiB
   */
  maxMemoryBytes?: number | undefined;
  /**
   * A segment file is sealed once it passes this size, and the next one is opened.
   * @default 64 MiB
   */
  maxSegmentBytes?: number | undefined;
  /**
   * Cap on the number of segment files existing at once (hopper's `max_disk_files`).
   * @default Infinity
   */
  maxSegments?: number | undefined;
  /**
   * Cap on the bytes of all segment files together.
   * @default Infinity
   */
  maxDiskBytes?: number | undefined;
  /**
   * Bytes that may wait for the disk. Blocks are written behind the producer's back, on libuv's
   * thread pool, so a slow disk does not stall the event loop; past this bound (a disk slower than
   * the producer for a while), the oldest waiting bytes are written synchronously, as the last
   * resort: no write is refused or held for it, and memory stays bounded. Each such write is
   * counted in `stats().syncWrites`, and each episode announced once with a `'diskBehind'` event.
   * 0 writes every block synchronously.
   * @default 4 MiB
   */
  maxPendingDiskBytes?: number | undefined;
  /**
   * When memory is full and a disk cap is reached:
   * - `'block'` holds the write callback until the reader frees room (`send()` throws `ERR_HOPPER_FULL`);
   * - `'error'` fails the write (and `send()`) with `ERR_HOPPER_FULL` carrying the record;
   * - `'drop-newest'` drops the incoming record;
   * - `'drop-oldest'` deletes the oldest sealed segment the reader is not reading, and drops its
   *   records, to make room (the incoming record is dropped when no segment can go).
   * Every drop is counted in `stats().dropped` and announced with a `'drop'` event.
   * @default 'block'
   */
  onFull?: OnFull | undefined;
  /**
   * Avro block codec of segment files.
   * @default 'null'
   */
  codec?: SegmentCodec | undefined;
  /**
   * What the reader does when a segment file was damaged after it was written (bytes changed, cut
   * short, a header overwritten): `'error'` fails the readable with `ERR_HOPPER_CORRUPT_SEGMENT`
   * naming the file and byte offset; `'skip'` steps over the damaged block (or segment), counts the
   * records lost in `stats().corrupted`, emits `'corrupt'`, and goes on.
   * @default 'error'
   */
  onCorrupt?: OnCorrupt | undefined;
  /**
   * Staleness window of the channel's lock, in ms: a lock whose owner cannot be proved dead (it is
   * on another host, or in another container's pid namespace) is taken over once its heartbeat is
   * older than this. The owner refreshes its heartbeat every third of the window; an owner that
   * stalls past it and finds its lock taken stops with `ERR_HOPPER_LOCKED`. An owner proved dead on
   * this host (pid gone, or reused by another process) is taken over at once.
   * @default 30000
   */
  staleLockMs?: number | undefined;
  /**
   * Aborting this signal destroys the hopper (both sides, and its files) with an `AbortError`.
   */
  signal?: AbortSignal | undefined;
  /**
   * Records survive the process: every accepted record goes to the segment log (memory stays a
   * read cache), and a record leaves the disk only once acknowledged (see `ack`). Opening the
   * channel again resumes it: the oldest unacknowledged record comes first. Needs `dataDir` and
   * `name`; `onFull: 'drop-oldest'` is refused.
   * @default false
   */
  durable?: boolean | undefined;
  /**
   * When a durable channel's write callback (and `'finish'`) fires:
   * - `'always'`: after an fsync that covers the record;
   * - `'batch'`: at the next group commit, at most `fsyncIntervalMs` after its bytes were written;
   * - `'never'`: once the OS has the bytes (survives a process crash, not a power cut).
   * Only with `durable: true`.
   * @default 'batch'
   */
  fsync?: FsyncPolicy | undefined;
  /**
   * With `fsync: 'batch'`: the longest wait, in ms, between a record's bytes being written and the
   * group commit that makes them durable. From 1 to 60000. Only with `durable: true`.
   * @default 100
   */
  fsyncIntervalMs?: number | undefined;
  /**
   * When a durable channel's record is done (and may leave the disk):
   * - `'delivered'`: once the readable hands it to the consumer;
   * - `'manual'`: once `hopper.ack(count)` acknowledges it (end to end, e.g. after a Kafka broker acknowledged it).
   * Only with `durable: true`.
   * @default 'delivered'
   */
  ack?: AckMode | undefined;
}

export interface ResolvedOptions {
  name: string;
  dataDir: string | undefined;
  schema: AvroSchema | undefined;
  maxMemoryBytes: number;
  maxSegmentBytes: number;
  maxSegments: number;
  maxDiskBytes: number;
  maxPendingDiskBytes: number;
  onFull: OnFull;
  codec: SegmentCodec;
  onCorrupt: OnCorrupt;
  staleLockMs: number;
  signal: AbortSignal | undefined;
  durable: boolean;
  fsync: FsyncPolicy;
  fsyncIntervalMs: number;
  ack: AckMode;
}

const MiB = 1024 * 1024;

export const DEFAULTS = {
  name: 'hopper',
  maxMemoryBytes: 16 * MiB,
  maxSegmentBytes: 64 * MiB,
  maxSegments: Infinity,
  maxDiskBytes: Infinity,
  maxPendingDiskBytes: 4 * MiB,
  onFull: 'block',
  codec: 'null',
  onCorrupt: 'error',
  staleLockMs: 30_000,
  durable: false,
  fsync: 'batch',
  fsyncIntervalMs: 100,
  ack: 'delivered',
} as const;

const KNOWN = new Set([
  'name',
  'dataDir',
  'schema',
  'maxMemoryBytes',
  'maxSegmentBytes',
  'maxSegments',
  'maxDiskBytes',
  'maxPendingDiskBytes',
  'onFull',
  'codec',
  'onCorrupt',
  'staleLockMs',
  'signal',
  'durable',
  'fsync',
  'fsyncIntervalMs',
  'ack',
]);

/** Shows a value in an option error: its text (cut at 60 characters) and its type. */
export function describe(value: unknown): string {
  let shown: string;
  try {
    shown = typeof value === 'string' ? JSON.stringify(value) : typeof value === 'bigint' ? `${value}n` : String(value);
  } catch {
    shown = Object.prototype.toString.call(value);
  }
  if (shown.length > 60) shown = `${shown.slice(0, 57)}...`;
  return `\`${shown}\` (${value === null ? 'null' : typeof value})`;
}

function sizeOption(options: HopperOptions, key: keyof HopperOptions, fallback: number, min: number, allowInfinity: boolean): number {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw invalidOptionType(key, value, `Expected \`${key}\` to be a number, got ${describe(value)}`);
  }
  const ok = (Number.isInteger(value) && value >= min) || (allowInfinity && value === Infinity);
  if (!ok) {
    const range = `an integer from ${min} and up${allowInfinity ? ' or Infinity' : ''}`;
    throw invalidOptionValue(key, value, `Expected \`${key}\` to be ${range}, got ${describe(value)}`);
  }
  return value;
}

function choiceOption<T extends string>(options: HopperOptions, key: keyof HopperOptions, fallback: T, choices: readonly T[]): T {
  const value = options[key];
  if (value === undefined) return fallback;
  if (typeof value !== 'string') {
    throw invalidOptionType(key, value, `Expected \`${key}\` to be one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${describe(value)}`);
  }
  if (!(choices as readonly string[]).includes(value)) {
    throw invalidOptionValue(key, value, `Expected \`${key}\` to be one of ${choices.map((c) => `'${c}'`).join(', ')}, got ${describe(value)}`);
  }
  return value as T;
}

/** Why a string is not a channel name (one path component, no NUL, at most 255 bytes), or undefined. */
export function nameProblem(value: string): string | undefined {
  return value === ''
    ? 'it is empty'
    : value === '.' || value === '..'
      ? 'it names a directory link'
      : /[/\\]/.test(value)
        ? 'it contains a path separator'
        : value.includes('\0')
          ? 'it contains a NUL byte'
          : Buffer.byteLength(value) > 255
            ? 'it is longer than 255 bytes'
            : undefined;
}

/** Checks a channel name: one path component, no NUL, at most 255 bytes. */
export function checkName(value: unknown): string {
  if (typeof value !== 'string') throw invalidOptionType('name', value, `Expected \`name\` to be a string, got ${describe(value)}`);
  const problem = nameProblem(value);
  if (problem) throw invalidOptionValue('name', value, `Expected \`name\` to be a single directory name, got ${describe(value)}: ${problem}`);
  return value;
}

/**
 * Validates user options and fills in defaults. Throws a TypeError (unknown option, wrong type) or
 * RangeError (wrong value) naming the option and the value, with `code: 'ERR_HOPPER_INVALID_OPTION'`
 * (see `invalidOptionType()`); options that are not an object are `ERR_HOPPER_INVALID_ARGUMENT`.
 */
export function resolveOptions(options: HopperOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {};
  if (options === null || typeof options !== 'object') {
    throw invalidArgumentType('options', options, `Expected options to be an object, got ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key))
      throw invalidOptionType(key, (options as Record<string, unknown>)[key], `Unknown option \`${key}\`; known options are ${[...KNOWN].join(', ')}`);
  }
  const name = options.name === undefined ? DEFAULTS.name : checkName(options.name);
  const { dataDir, schema } = options;
  if (dataDir !== undefined && (typeof dataDir !== 'string' || dataDir === '' || dataDir.includes('\0'))) {
    throw invalidOptionType('dataDir', dataDir, `Expected \`dataDir\` to be a non-empty path string, got ${describe(dataDir)}`);
  }
  if (schema !== undefined && (schema === null || (typeof schema !== 'string' && typeof schema !== 'object'))) {
    throw invalidOptionType('schema', schema, `Expected \`schema\` to be an Avro schema (object, JSON string or avsc Type), got ${describe(schema)}`);
  }
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidOptionType('signal', signal, `Expected \`signal\` to be an AbortSignal, got ${describe(signal)}`);
  }
  const durable = durableOptions(options);
  return {
    ...durable,
    name,
    dataDir,
    signal,
    schema,
    maxMemoryBytes: sizeOption(options, 'maxMemoryBytes', DEFAULTS.maxMemoryBytes, 0, true),
    maxSegmentBytes: sizeOption(options, 'maxSegmentBytes', DEFAULTS.maxSegmentBytes, 1, false),
    maxSegments: sizeOption(options, 'maxSegments', DEFAULTS.maxSegments, 1, true),
    maxDiskBytes: sizeOption(options, 'maxDiskBytes', DEFAULTS.maxDiskBytes, 1, true),
    maxPendingDiskBytes: sizeOption(options, 'maxPendingDiskBytes', DEFAULTS.maxPendingDiskBytes, 0, false),
    onFull: choiceOption(options, 'onFull', DEFAULTS.onFull, ON_FULL_POLICIES),
    codec: choiceOption(options, 'codec', DEFAULTS.codec, SEGMENT_CODECS),
    onCorrupt: choiceOption(options, 'onCorrupt', DEFAULTS.onCorrupt, ON_CORRUPT_POLICIES),
    staleLockMs: sizeOption(options, 'staleLockMs', DEFAULTS.staleLockMs, 1_000, false),
  };
}

/** The durable options, checked together: `durable` needs `dataDir` and `name`, the others need `durable`. */
function durableOptions(options: HopperOptions): Pick<ResolvedOptions, 'durable' | 'fsync' | 'fsyncIntervalMs' | 'ack'> {
  const { durable } = options;
  if (durable !== undefined && typeof durable !== 'boolean')
    throw invalidOptionType('durable', durable, `Expected \`durable\` to be a boolean, got ${describe(durable)}`);
  const fsync = choiceOption(options, 'fsync', DEFAULTS.fsync, FSYNC_POLICIES);
  const ack = choiceOption(options, 'ack', DEFAULTS.ack, ACK_MODES);
  const fsyncIntervalMs = sizeOption(options, 'fsyncIntervalMs', DEFAULTS.fsyncIntervalMs, 1, false);
  if (fsyncIntervalMs > 60_000)
    throw invalidOptionValue(
      'fsyncIntervalMs',
      fsyncIntervalMs,
      `Expected \`fsyncIntervalMs\` to be an integer from 1 to 60000, got ${describe(fsyncIntervalMs)}`,
    );
  if (durable !== true) {
    for (const key of ['fsync', 'fsyncIntervalMs', 'ack'] as const) {
      if (options[key] !== undefined)
        throw invalidOptionValue(key, options[key], `Expected \`${key}\` only with \`durable: true\`, got ${describe(options[key])} without it`);
    }
    return { durable: false, fsync, fsyncIntervalMs, ack };
  }
  if (options.dataDir === undefined)
    throw invalidOptionValue('dataDir', undefined, 'Expected `dataDir` with `durable: true`: a durable channel lives in a directory that outlasts the process');
  if (options.name === undefined)
    throw invalidOptionValue('name', undefined, 'Expected `name` with `durable: true`: the next open finds the channel by its name');
  if (options.onFull === 'drop-oldest') {
    throw invalidOptionValue(
      'onFull',
      options.onFull,
      "Expected `onFull` to be 'block', 'error' or 'drop-newest' with `durable: true`, got `\"drop-oldest\"` (string): a durable channel never drops records it accepted",
    );
  }
  return { durable: true, fsync, fsyncIntervalMs, ack };
}
