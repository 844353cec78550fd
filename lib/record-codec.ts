import type { Type } from 'avsc';
import { HopperError, invalidRecordError, recordTooLargeError } from './errors.js';

/**
 * How records become bytes in a segment, and how their in-memory size is estimated.
 * With a schema, the record type is the user's; without one, an envelope union
 * `["bytes", "string", Value]` carries Buffers and strings byte-exact, and any other value in a
 * `Value` record whose `data` is JSON text (a string) for plain data JSON gives back exactly, or
 * node:v8's serialization (structuredClone's format, as bytes) for the rest.
 */
export interface RecordCodec {
  /** Avro type written into segment headers and used to encode and decode records. */
  readonly type: Type;
  /** Checks a record and returns its estimated in-memory size; throws `ERR_HOPPER_INVALID_RECORD`. */
  validateAndSize(record: unknown): number;
  /**
   * Checks a record without sizing it (where sizing is a walk of its own); throws as
   * {@link validateAndSize}. `encodeNext`: the record's {@link encode} follows, with no user code
   * run in between, so what the check learnt of it may be kept for it (until {@link forget}).
   */
  validate(record: unknown, encodeNext?: boolean): void;
  /** What {@link validate} kept for the record encoded next is stale (user code may have run since). */
  forget?(): void;
  /**
   * Encodes into `buf` at `pos`; returns the new position, or a negative number when `buf` is too
   * small (minus the bytes missing). Throws `ERR_HOPPER_INVALID_RECORD` or
   * `ERR_HOPPER_RECORD_TOO_LARGE` when the record cannot be encoded.
   */
  encode(record: unknown, buf: Buffer, pos: number): number;
  /**
   * A copy of a validated record that plain-data's copy does not make (a Buffer, a Date, a class
   * instance avsc accepts...), equal to what the disk tier would give back for it and sharing no
   * object with it: what the memory tier holds. Strings and other primitives come back as they are.
   */
  copy(record: unknown): unknown;
  /** The block being filled was written or emptied: state kept for it (a reused serializer) can go. */
  endBlock?(): void;
  /**
   * Decodes the record at `pos`; `offset` is -1 when the bytes do not hold a whole record.
   * `settled`: nothing will ever write to `buf` again, so a large Buffer record may come back as a
   * view of it instead of a copy (see {@link decodeBytesView}). `views` false (it defaults to
   * `settled`): `buf` is a part of a read buffer that is read into again once its records are
   * decoded, each time as a new `buf` object; what was learnt of this one stays true, but no record
   * may be a view of it.
   */
  decode(buf: Buffer, pos: number, settled?: boolean, views?: boolean): { value: unknown; offset: number };
  /**
   * Schemaless only: a record whose encoding ends in many bytes, split so that the segment log can
   * write those bytes by reference instead of copying them into a block (which would grow to hold
   * them): a Buffer or a string of at least {@link BY_REFERENCE_BYTES}, or a large flat array (its
   * node:v8 serialization). Undefined for any other record, which {@link encode} encodes.
   */
  largeRecord?(record: unknown): LargeRecord | undefined;
  /**
   * Schemaless only: encodes what comes before the bytes of a {@link largeRecord} (its union branch
   * and length) into `buf` at `pos`, which has room for {@link BYTES_HEAD_MAX_BYTES}; returns the
   * new position. Those bytes, then the large record's, are the record.
   */
  encodeLargeHead?(large: LargeRecord, buf: Buffer, pos: number): number;
  /** Schemaless only: the record a {@link largeRecord} holds (its bytes must not change again), as the memory tier would give it back. */
  largeValue?(large: LargeRecord): unknown;
}

/** A record written by reference: see {@link RecordCodec.largeRecord}. */
export interface LargeRecord {
  /**
   * `buffer`: a Buffer record's own bytes, which the producer may change once the write is
   * acknowledged (the block keeps a copy); `string`: a string record's UTF-8; `value`: the node:v8
   * serialization (header included) of a large flat array.
   */
  readonly kind: 'buffer' | 'string' | 'value';
  readonly bytes: Buffer;
}
/** Buffers this large are written to segments by reference, and read back as views of what was read. */
export const BY_REFERENCE_BYTES = 16 * 1024;
/** The union branch (one or two bytes) and a length up to 2^53 (eight bytes of varint), with room to spare. */
export const BYTES_HEAD_MAX_BYTES = 16;

/** User code (a getter, a Proxy trap) threw, or the stack ran out, while a record was being read. */
export function unreadable(record: unknown, err: unknown): HopperError {
  const reason = err instanceof Error ? err.message : String(err);
  return invalidRecordError(record, [], `could not be read (${reason})`, err);
}

/**
 * An error thrown while encoding a record, as a refusal: a record whose encoding needs more
 * memory than a Buffer can hold is too large; anything else (user code that throws, a value the
 * serializer refuses, a stack overflow) makes it invalid.
 */
export function encodeFailure(record: unknown, err: unknown): HopperError {
  if (HopperError.is(err)) return err;
  const { code, message } = (err ?? {}) as { code?: unknown; message?: unknown };
  if (
    code === 'ERR_BUFFER_TOO_LARGE' ||
    code === 'ERR_STRING_TOO_LONG' ||
    code === 'ERR_OUT_OF_RANGE' ||
    (typeof message === 'string' && /allocation failed|Invalid (typed )?array length|Invalid string length|out of memory/i.test(message))
  ) {
    return recordTooLargeError(record, `it cannot be encoded (${String(message)})`, err);
  }
  return unreadable(record, err);
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Buffer.isBuffer(value)) return 'Buffer';
  return typeof value;
}

export function shown(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'bigint' ? `${value}n` : typeof value === 'symbol' ? value.toString() : (JSON.stringify(value) ?? String(value));
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

export function checkTopLevel(record: unknown): void {
  if (record === null || record === undefined) {
    throw invalidRecordError(record, [], `is ${record === null ? 'null' : 'undefined'}; a stream record must be a value`);
  }
}

/** Whether a string holds no lone surrogate (String.prototype.isWellFormed, Node 20). */
export function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}
