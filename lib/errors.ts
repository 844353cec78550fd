import path from 'node:path';

/**
 * Every failure code hopper-streams reports.
 *
 * - `ERR_HOPPER_FULL`: memory is full and a disk cap is reached; `.record` holds the refused record.
 * - `ERR_HOPPER_RECORD_TOO_LARGE`: a record can never fit, even in an empty channel.
 * - `ERR_HOPPER_INVALID_RECORD`: a record does not match the schema or cannot be encoded.
 * - `ERR_HOPPER_LOCKED`: another open channel holds the channel directory, or this channel lost its lock.
 * - `ERR_HOPPER_CORRUPT_SEGMENT`: a segment file does not frame or decode as written.
 * - `ERR_HOPPER_IO`: a file operation on the channel directory failed; `.cause` is the system error.
 * - `ERR_HOPPER_KAFKA_SEND`: the Kafka sink met an error that retrying cannot fix (a record larger
 *   than the broker accepts, authorization, an unknown topic); `.records` holds the records it had
 *   taken and the brokers had not acknowledged, `.cause` the client's error.
 * - `ERR_HOPPER_PRODUCER_FAILED`: the hopper's writable was destroyed before `end()` (its source
 *   failed in a `pipeline`, `destroy(err)`, an aborted request): the readable fails with it after
 *   every record accepted before that; `.cause` is the producer's error, if it had one.
 * - `ERR_HOPPER_ACK_BEYOND_DELIVERED`: `ack(count)` named more records than were delivered and not
 *   acknowledged; nothing was acknowledged. `.count` and `.unacknowledged` say by how much.
 * - `ERR_HOPPER_NOT_DURABLE`: `ack()` or `flush()` on a channel opened without `durable: true`.
 * - `ERR_HOPPER_ACK_MODE`: `ack()` on a durable channel with `ack: 'delivered'` (records are
 *   acknowledged when delivered).
 * - `ERR_HOPPER_DURABLE_CHANNEL`: a non-durable open of a directory that holds a durable channel's records.
 * - `ERR_HOPPER_SCHEMA_MISMATCH`: a durable channel's backlog was written with another schema.
 * - `ERR_HOPPER_INVALID_OPTION`: an option of `createHopperStreams()` or `createKafkaSink()` was
 *   refused (unknown, wrong type, out of range, or not allowed with the others). The error is a
 *   `TypeError` (unknown option, wrong type) or a `RangeError` (wrong value) as well as a
 *   `HopperError`; `.option` names the option (`'maxMemoryBytes'`, `'retry.maxMs'`), `.value` is
 *   what was given.
 * - `ERR_HOPPER_INVALID_ARGUMENT`: an argument that is not an option was refused (`ack(count)`'s
 *   count, an options argument that is not an object); a `TypeError` or `RangeError` too, with
 *   `.argument` and `.value`.
 * - `ERR_STREAM_WRITE_AFTER_END` / `ERR_STREAM_DESTROYED`: Node's codes, used where Node would.
 */
export type HopperErrorCode =
  | 'ERR_HOPPER_FULL'
  | 'ERR_HOPPER_RECORD_TOO_LARGE'
  | 'ERR_HOPPER_INVALID_RECORD'
  | 'ERR_HOPPER_LOCKED'
  | 'ERR_HOPPER_CORRUPT_SEGMENT'
  | 'ERR_HOPPER_IO'
  | 'ERR_HOPPER_KAFKA_SEND'
  | 'ERR_HOPPER_PRODUCER_FAILED'
  | 'ERR_HOPPER_ACK_BEYOND_DELIVERED'
  | 'ERR_HOPPER_NOT_DURABLE'
  | 'ERR_HOPPER_ACK_MODE'
  | 'ERR_HOPPER_DURABLE_CHANNEL'
  | 'ERR_HOPPER_SCHEMA_MISMATCH'
  | 'ERR_HOPPER_INVALID_OPTION'
  | 'ERR_HOPPER_INVALID_ARGUMENT'
  | 'ERR_STREAM_WRITE_AFTER_END'
  | 'ERR_STREAM_DESTROYED';

/** The options whose limit can refuse a record (`HopperError.option`). */
export type LimitOption = 'maxDiskBytes' | 'maxSegments';

/** Extra facts an error carries, depending on its code. */
export interface HopperErrorDetails {
  /** The record that was refused (`ERR_HOPPER_FULL`, `ERR_HOPPER_INVALID_RECORD`, `ERR_HOPPER_RECORD_TOO_LARGE`). */
  record?: unknown;
  /** Path of the offending field inside the record (`ERR_HOPPER_INVALID_RECORD`), e.g. `['user', 'age']`. */
  path?: string[] | undefined;
  /** Segment file concerned (`ERR_HOPPER_CORRUPT_SEGMENT`, `ERR_HOPPER_IO`). */
  file?: string | undefined;
  /** Byte offset in `file` where the problem was found (`ERR_HOPPER_CORRUPT_SEGMENT`). */
  offset?: number | undefined;
  /**
   * The option concerned, to name a setting without parsing the message: the disk cap that had no
   * room for the record (`ERR_HOPPER_FULL`, a {@link LimitOption}), or the option refused
   * (`ERR_HOPPER_INVALID_OPTION`, e.g. `'maxMemoryBytes'`, `'retry.maxMs'`).
   */
  option?: string | undefined;
  /** The argument refused (`ERR_HOPPER_INVALID_ARGUMENT`), e.g. `'count'`. */
  argument?: string | undefined;
  /** What was given for the option or argument (`ERR_HOPPER_INVALID_OPTION`, `ERR_HOPPER_INVALID_ARGUMENT`). */
  value?: unknown;
  /** Records taken and not acknowledged by the brokers, in order (the Kafka sink's errors). */
  records?: unknown[] | undefined;
  /** Records `ack(count)` named (`ERR_HOPPER_ACK_BEYOND_DELIVERED`). */
  count?: number | undefined;
  /** Records delivered and not acknowledged when `ack()` was refused (`ERR_HOPPER_ACK_BEYOND_DELIVERED`). */
  unacknowledged?: number | undefined;
  /**
   * When the lock can be taken over if its owner stays silent, in epoch ms (`ERR_HOPPER_LOCKED`,
   * only when the owner cannot be proved alive or dead from here: another host, pid namespace or boot).
   */
  retryAt?: number | undefined;
  /** The underlying error. */
  cause?: unknown;
}

/** Codes whose error hands the refused record back in `.record`, typed as the hopper's `T`. */
export type HopperRecordCode = 'ERR_HOPPER_FULL' | 'ERR_HOPPER_IO';

/**
 * What `HopperError.is(err, code)` narrows `err` to: a `HopperError` with that `code`, and with
 * `ERR_HOPPER_FULL` a `record: T`; `ERR_HOPPER_IO` carries `record?: T` (only when a write was
 * handed back: a failed read or directory has no record) and the system error as `cause`;
 * `ERR_HOPPER_KAFKA_SEND` carries `records: T[]` (those the Kafka sink had taken and the brokers
 * had not acknowledged, in order) and the client's error as `cause`.
 */
export type HopperErrorOf<C extends HopperErrorCode, T = unknown> = C extends 'ERR_HOPPER_KAFKA_SEND'
  ? // Omitted first: `unknown[] & T[]` would type `records.map()` with unknown[]'s overload.
    Omit<HopperError, 'records'> & { readonly code: C; readonly records: T[]; readonly cause: unknown }
  : HopperError & { readonly code: C } & (C extends 'ERR_HOPPER_FULL'
        ? { readonly record: T; readonly option?: LimitOption }
        : C extends 'ERR_HOPPER_IO'
          ? { readonly record?: T; readonly cause: unknown }
          : C extends 'ERR_HOPPER_INVALID_OPTION'
            ? { readonly option: string; readonly value: unknown }
            : C extends 'ERR_HOPPER_INVALID_ARGUMENT'
              ? { readonly argument: string; readonly value: unknown }
              : unknown);

/**
 * The one error class of hopper-streams: a message that says what went wrong and a `code` to branch on.
 * {@link HopperError.is} checks and narrows: give it the hopper's record type to get `.record` typed.
 *
 * @example
 * ```ts
 * try {
 *   hopper.send(record);
 * } catch (err) {
 *   if (HopperError.is<Event>(err, 'ERR_HOPPER_FULL')) retryLater(err.record); // err.record: Event
 *   else throw err;
 * }
 * ```
 */
export class HopperError extends Error {
  readonly code: HopperErrorCode;
  // Declared, not initialised: an error only carries the details its code has.
  /** The refused record (`ERR_HOPPER_FULL`, `ERR_HOPPER_IO`, `ERR_HOPPER_INVALID_RECORD`, `ERR_HOPPER_RECORD_TOO_LARGE`). */
  declare readonly record?: unknown;
  declare readonly path?: string[];
  declare readonly file?: string;
  declare readonly offset?: number;
  /** The disk cap that had no room (`ERR_HOPPER_FULL`, a {@link LimitOption}), or the option refused (`ERR_HOPPER_INVALID_OPTION`). */
  declare readonly option?: string;
  /** The argument refused (`ERR_HOPPER_INVALID_ARGUMENT`). */
  declare readonly argument?: string;
  /** What was given for the refused option or argument (`ERR_HOPPER_INVALID_OPTION`, `ERR_HOPPER_INVALID_ARGUMENT`). */
  declare readonly value?: unknown;
  declare readonly records?: unknown[];
  declare readonly count?: number;
  declare readonly unacknowledged?: number;
  /** Epoch ms at which the lock can be taken over if its owner stays silent (`ERR_HOPPER_LOCKED`); absent when its owner is alive here. */
  declare readonly retryAt?: number;

  constructor(code: HopperErrorCode, message: string, details: HopperErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'HopperError';
    this.code = code;
    const self = this as { record?: unknown; path?: string[]; file?: string; offset?: number; option?: string; records?: unknown[] };
    if ('record' in details) self.record = details.record;
    if (details.path !== undefined) self.path = details.path;
    if (details.file !== undefined) self.file = details.file;
    if (details.offset !== undefined) self.offset = details.offset;
    if (details.option !== undefined) self.option = details.option;
    if (details.records !== undefined) self.records = details.records;
    if (details.count !== undefined) (this as { count?: number }).count = details.count;
    if (details.unacknowledged !== undefined) (this as { unacknowledged?: number }).unacknowledged = details.unacknowledged;
    if (details.retryAt !== undefined) (this as { retryAt?: number }).retryAt = details.retryAt;
    if (details.argument !== undefined) (this as { argument?: string }).argument = details.argument;
    if ('value' in details) (this as { value?: unknown }).value = details.value;
  }

  /**
   * `instanceof HopperError` is also true for the refusals of an option or an argument
   * (`ERR_HOPPER_INVALID_OPTION`, `ERR_HOPPER_INVALID_ARGUMENT`). Those are `TypeError`s and
   * `RangeError`s, as they were before they had a code, so that `instanceof TypeError` and checks of
   * the message keep working; and every refusal is a HopperError. An object has one prototype
   * chain, so one of the two checks has to be answered here: this accepts the errors the factories
   * below made (nothing else). A subclass of HopperError keeps the ordinary check. The return
   * type is `boolean`, not a type predicate, so TypeScript narrows `instanceof` as usual (to the
   * subclass for a subclass).
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class instanceof asks about: HopperError or a subclass
    return Function.prototype[Symbol.hasInstance].call(this, value) || (this === HopperError && isBranded(value));
  }

  /**
   * True when `err` is a HopperError, with the given code if one is named; it then narrows `err`
   * to that code (see {@link HopperErrorOf}). `T` is the type of `err.record` with
   * `ERR_HOPPER_FULL` and `ERR_HOPPER_IO`, and of `err.records` with `ERR_HOPPER_KAFKA_SEND`
   * (the sink's `T`): the hopper's own `T`, since the record handed back is
   * the one written (`HopperError.is<Event>(err, 'ERR_HOPPER_FULL')`).
   */
  static is<T = unknown>(err: unknown, code: 'ERR_HOPPER_FULL'): err is HopperErrorOf<'ERR_HOPPER_FULL', T>;
  static is<T = unknown>(err: unknown, code: 'ERR_HOPPER_IO'): err is HopperErrorOf<'ERR_HOPPER_IO', T>;
  static is<T = unknown>(err: unknown, code: 'ERR_HOPPER_KAFKA_SEND'): err is HopperErrorOf<'ERR_HOPPER_KAFKA_SEND', T>;
  static is<C extends HopperErrorCode>(err: unknown, code: C): err is HopperErrorOf<C>;
  static is(err: unknown, code?: HopperErrorCode): err is HopperError;
  static is(err: unknown, code?: HopperErrorCode): boolean {
    return err instanceof HopperError && (code === undefined || err.code === code);
  }
}

/** The TypeErrors and RangeErrors that are HopperErrors too (see `HopperError[Symbol.hasInstance]`). */
const BRANDED = new WeakSet<object>();

/** A refused option: a TypeError or a RangeError that is a HopperError too. */
export type InvalidOptionError = (TypeError | RangeError) & HopperErrorOf<'ERR_HOPPER_INVALID_OPTION'>;
/** A refused argument: a TypeError or a RangeError that is a HopperError too. */
export type InvalidArgumentError = (TypeError | RangeError) & HopperErrorOf<'ERR_HOPPER_INVALID_ARGUMENT'>;

function isBranded(value: unknown): boolean {
  return typeof value === 'object' && value !== null && BRANDED.has(value);
}

/** Gives `err` a code and details and makes it a HopperError too; its stack starts where `factory` was called, as Node's own errors do. */
function branded<E extends Error>(err: E, factory: (...args: never[]) => unknown, fields: { code: HopperErrorCode } & HopperErrorDetails): E & HopperError {
  Error.captureStackTrace(err, factory);
  Object.assign(err, fields);
  BRANDED.add(err);
  return err as E & HopperError;
}

/** An option of the wrong type, or unknown: a TypeError with `code`, `option` and `value`. `message` names the option and the value. */
export function invalidOptionType(option: string, value: unknown, message: string, cause?: unknown): InvalidOptionError {
  const err = new TypeError(message, cause === undefined ? undefined : { cause });
  return branded(err, invalidOptionType, { code: 'ERR_HOPPER_INVALID_OPTION', option, value }) as InvalidOptionError;
}

/** An option of the right type and a wrong value (out of range, not one of the choices, not allowed with the others): a RangeError with `code`, `option` and `value`. */
export function invalidOptionValue(option: string, value: unknown, message: string): InvalidOptionError {
  return branded(new RangeError(message), invalidOptionValue, { code: 'ERR_HOPPER_INVALID_OPTION', option, value }) as InvalidOptionError;
}

/** An argument of the wrong type: a TypeError with `code`, `argument` and `value`. */
export function invalidArgumentType(argument: string, value: unknown, message: string): InvalidArgumentError {
  return branded(new TypeError(message), invalidArgumentType, { code: 'ERR_HOPPER_INVALID_ARGUMENT', argument, value }) as InvalidArgumentError;
}

/** An argument of the right type and a wrong value: a RangeError with `code`, `argument` and `value`. */
export function invalidArgumentValue(argument: string, value: unknown, message: string): InvalidArgumentError {
  return branded(new RangeError(message), invalidArgumentValue, { code: 'ERR_HOPPER_INVALID_ARGUMENT', argument, value }) as InvalidArgumentError;
}

export function fullError(record: unknown, reason: string, option?: LimitOption): HopperError {
  return new HopperError('ERR_HOPPER_FULL', `hopper is full: ${reason}; the record was not accepted`, option === undefined ? { record } : { record, option });
}

export function writeAfterEndError(): HopperError {
  return new HopperError('ERR_STREAM_WRITE_AFTER_END', 'write after end: the hopper no longer accepts records');
}

export function destroyedError(): HopperError {
  return new HopperError('ERR_STREAM_DESTROYED', 'the hopper was destroyed');
}

/**
 * The input was cut short: the hopper's writable was destroyed before `end()`, with `cause` (its
 * producer's error) or without an error. Reported by the readable after the records accepted before.
 */
export function producerFailedError(cause: Error | undefined): HopperError {
  const how = cause === undefined ? 'without an error' : `with: ${cause.message}`;
  return new HopperError(
    'ERR_HOPPER_PRODUCER_FAILED',
    `the input was cut short: hopper.writable was destroyed before end() (${how}); every record accepted before that was delivered`,
    { cause },
  );
}

export function ioError(operation: string, file: string, cause: unknown): HopperError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new HopperError('ERR_HOPPER_IO', `${operation} failed on ${file}: ${reason}`, { file, cause });
}

/**
 * Opening the channel directory failed: `message` says what could not be done (`cannot create
 * dataDir /x`), the system error is the cause.
 */
export function directoryError(message: string, cause?: unknown): HopperError {
  const reason = cause instanceof Error ? `: ${cause.message}` : '';
  return new HopperError('ERR_HOPPER_IO', `${message}${reason}`, cause === undefined ? {} : { cause });
}

/** A record that does not match the schema (or that structuredClone would not give back as written), with the path to what is wrong. */
export function invalidRecordError(record: unknown, path: string[], message: string, cause?: unknown): HopperError {
  const where = path.length > 0 ? `field \`${path.join('.')}\`` : 'the record';
  return new HopperError('ERR_HOPPER_INVALID_RECORD', `invalid record: ${where} ${message}`, { record, path, cause });
}

/** A record that fits neither tier, even empty. */
export function recordTooLargeError(record: unknown, reason: string, cause?: unknown): HopperError {
  return new HopperError('ERR_HOPPER_RECORD_TOO_LARGE', `record too large: ${reason}`, cause === undefined ? { record } : { record, cause });
}

/** A segment file does not frame or decode as written (`onCorrupt: 'error'`). */
export function corruptSegmentError(file: string, offset: number, problem: string): HopperError {
  return new HopperError('ERR_HOPPER_CORRUPT_SEGMENT', `corrupt segment ${file} at byte ${offset}: ${problem}`, { file, offset });
}

/** A record refused because disk writes are failing: it is handed back, with the failure as cause. */
export function refusedForFault(record: unknown, fault: Error): HopperError {
  // The cause is the system error itself (ENOSPC, EIO...), so callers can branch on its code.
  return new HopperError(
    'ERR_HOPPER_IO',
    `the record was not accepted: memory is full and disk writes are failing (${fault.message}); they are being retried`,
    {
      record,
      cause: fault.cause ?? fault,
      ...(HopperError.is(fault) && fault.file !== undefined ? { file: fault.file } : {}),
    },
  );
}

/**
 * The error a subpath throws when it is imported without its optional peer dependency, shaped
 * like Node's own (`code: 'ERR_MODULE_NOT_FOUND'`), naming the package to install.
 */
export function missingPeerError(peer: string, subpath: string, cause: unknown): Error {
  const err = new Error(`${subpath} needs the package \`${peer}\`, an optional peer dependency: install it with \`npm install ${peer}\``, {
    cause,
  }) as Error & { code: string };
  err.code = 'ERR_MODULE_NOT_FOUND';
  return err;
}

/** A send to Kafka failed in a way retrying cannot fix: the sink fails, handing back what was not acknowledged. */
export function kafkaSendError(topic: string, cause: unknown, records: unknown[]): HopperError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new HopperError(
    'ERR_HOPPER_KAFKA_SEND',
    `sending to Kafka topic ${JSON.stringify(topic)} failed and cannot be retried: ${reason}; ${records.length} records were not acknowledged`,
    { cause, records },
  );
}

/** A record the Kafka sink could not turn into a message (its key or value function threw, or it does not match the schema). */
export function kafkaEncodeError(record: unknown, cause: unknown, records: unknown[]): HopperError {
  if (HopperError.is(cause, 'ERR_HOPPER_INVALID_RECORD')) {
    return new HopperError('ERR_HOPPER_INVALID_RECORD', cause.message, { record, records, cause, ...(cause.path ? { path: cause.path } : {}) });
  }
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new HopperError('ERR_HOPPER_INVALID_RECORD', `invalid record: it could not be made into a Kafka message (${reason})`, { record, records, cause });
}

/** What the records of a destroyed Kafka sink are called back with when the brokers had not acknowledged them. */
export function kafkaDestroyedError(records: unknown[]): HopperError {
  return new HopperError('ERR_STREAM_DESTROYED', `the Kafka sink was destroyed before the brokers acknowledged ${records.length} records`, { records });
}

/** The error an aborted `signal` destroys a hopper with, shaped like Node's own AbortError. */
export function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason }) as Error & { code: string };
  err.name = 'AbortError';
  err.code = 'ABORT_ERR';
  return err;
}

/** Calls `onAbort` when `signal` aborts (at once if it already has); returns a function that stops listening. */
export function onAbort(signal: AbortSignal | undefined, abort: (err: Error) => void): () => void {
  if (signal === undefined) return () => {};
  if (signal.aborted) {
    queueMicrotask(() => abort(abortError(signal)));
    return () => {};
  }
  const listener = (): void => abort(abortError(signal));
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/** Another live owner holds the channel directory (or is taking over a stale lock on it); `when` says when it can be taken. */
export function lockedError(lock: string, holder: string, when?: { text: string; retryAt?: number | undefined }): HopperError {
  const message = `channel directory ${path.dirname(lock)} is locked by ${holder} (${lock})${when === undefined ? '' : `; ${when.text}`}`;
  return new HopperError('ERR_HOPPER_LOCKED', message, { file: lock, retryAt: when?.retryAt });
}

/** The channel lost its lock or its directory while it ran: it stops writing. */
export function lockLostError(lock: string, problem: string): HopperError {
  return new HopperError('ERR_HOPPER_LOCKED', `the channel stopped: ${problem}; it no longer owns ${path.dirname(lock)}`, { file: lock });
}

/** A path the channel would have to go through is not a plain file or directory it made. */
export function notOursError(file: string, problem: string): HopperError {
  return new HopperError('ERR_HOPPER_IO', `refused: ${file} ${problem}`, { file });
}

/** `ack(count)` named more records than were delivered and not acknowledged: nothing was acknowledged. */
export function ackBeyondDeliveredError(count: number, unacknowledged: number): HopperError {
  return new HopperError(
    'ERR_HOPPER_ACK_BEYOND_DELIVERED',
    `ack(${count}) refused: only ${unacknowledged} records were delivered and not acknowledged; nothing was acknowledged`,
    { count, unacknowledged },
  );
}

/** `ack()` or `flush()` on a channel opened without `durable: true`. */
export function notDurableError(call: string): HopperError {
  return new HopperError('ERR_HOPPER_NOT_DURABLE', `${call} needs a durable channel: open it with \`durable: true\``);
}

/** `ack()` on a durable channel whose records are acknowledged when delivered. */
export function ackModeError(): HopperError {
  return new HopperError('ERR_HOPPER_ACK_MODE', "ack() needs `ack: 'manual'`: with `ack: 'delivered'` a record is acknowledged when it is delivered");
}

/** A non-durable open of a directory holding a durable channel's records: they are never deleted silently. */
export function durableChannelError(dir: string, segments: number): HopperError {
  return new HopperError('ERR_HOPPER_DURABLE_CHANNEL', `${dir} holds a durable channel's records (${segments} segments); open it with \`durable: true\``, {
    file: dir,
  });
}

/** A durable channel's backlog was written with another schema than the one it is opened with. */
export function schemaMismatchError(file: string): HopperError {
  return new HopperError(
    'ERR_HOPPER_SCHEMA_MISMATCH',
    `${file} holds records written with another schema than this channel's; open the channel with that schema to deliver its backlog`,
    { file },
  );
}
