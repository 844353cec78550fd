import { isAscii } from 'node:buffer';
import v8 from 'node:v8';
import avsc from 'avsc';
import type { Schema, Type } from 'avsc';
import { HopperError, invalidRecordError, recordTooLargeError } from './errors.js';
import type { AvroSchema } from './options.js';
import { copyView, isJsonExact } from './plain-data.js';
import { compileQuickCheck } from './quick-check.js';
import { SizeProblem, VIEW_TYPES, compileSizeOf, isQuickValid, sizeOfSchemaless } from './size.js';

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
  /** Checks a record without sizing it (where sizing is a walk of its own); throws as {@link validateAndSize}. */
  validate(record: unknown): void;
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
   * view of it instead of a copy (see {@link decodeBytesView}).
   */
  decode(buf: Buffer, pos: number, settled?: boolean): { value: unknown; offset: number };
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
/** A Buffer record decoded as a view keeps alive at most this many times its own size. */
const VIEW_MAX_SHARE = 5;
/** The union branch (one or two bytes) and a length up to 2^53 (eight bytes of varint), with room to spare. */
export const BYTES_HEAD_MAX_BYTES = 16;
/**
 * A flat array (no object in it but null) of at least this many items goes to disk as node:v8 bytes,
 * not as JSON: JSON's number formatting made a 5,000,000-number array cost twenty times its v8
 * serialization. A flat array holds no object two items could share, so memory (which copies it)
 * and disk give it back alike.
 */
const LARGE_FLAT_ITEMS = 4096;

/** Whether `record` is a plain array of at least {@link LARGE_FLAT_ITEMS} items, none an object but null. */
function isLargeFlatArray(record: unknown): record is unknown[] {
  if (!Array.isArray(record) || record.length < LARGE_FLAT_ITEMS || Object.getPrototypeOf(record) !== Array.prototype) return false;
  for (let i = 0; i < record.length; i++) {
    const item = record[i];
    if (typeof item === 'object' && item !== null) return false;
  }
  return true;
}

/** The union branch and the length of a `bytes` value are Avro longs. */
const LONG_TYPE = avsc.Type.forSchema('long');

const ENVELOPE_SCHEMA = [
  'bytes',
  'string',
  { type: 'record', name: 'Value', namespace: 'hopper_streams', fields: [{ name: 'data', type: ['string', 'bytes'] }] },
] as const;

/** The schemaless envelope of 0.2.0 and before (JSON text), which `verify` and `cat` still read. */
export const JSON_ENVELOPE_SCHEMA = [
  'bytes',
  'string',
  { type: 'record', name: 'Json', namespace: 'hopper_streams', fields: [{ name: 'json', type: 'string' }] },
] as const;

/** The envelope's branches, zigzag-encoded as one byte: `bytes` (union index 0), `string` (1), `Value` (2). */
const BYTES_BRANCH = 0;
const STRING_BRANCH = 2;
const VALUE_BRANCH = 4;
/** The branches of `Value.data`: JSON text (index 0) or node:v8 bytes (index 1), zigzag-encoded. */
const DATA_JSON = 0;
const DATA_V8 = 2;
const STRING_TYPE = avsc.Type.forSchema('string');

/** A varint length of up to 2^53 takes at most this many bytes. */
const LENGTH_MAX_BYTES = 8;

/** User code (a getter, a Proxy trap) threw, or the stack ran out, while a record was being read. */
function unreadable(record: unknown, err: unknown): HopperError {
  const reason = err instanceof Error ? err.message : String(err);
  return invalidRecordError(record, [], `could not be read (${reason})`, err);
}

/**
 * An error thrown while encoding a record, as a refusal: a record whose encoding needs more
 * memory than a Buffer can hold is too large; anything else (user code that throws, a value the
 * serializer refuses, a stack overflow) makes it invalid.
 */
function encodeFailure(record: unknown, err: unknown): HopperError {
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

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Buffer.isBuffer(value)) return 'Buffer';
  return typeof value;
}

function shown(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'bigint' ? `${value}n` : typeof value === 'symbol' ? value.toString() : (JSON.stringify(value) ?? String(value));
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function checkTopLevel(record: unknown): void {
  if (record === null || record === undefined) {
    throw invalidRecordError(record, [], `is ${record === null ? 'null' : 'undefined'}; a stream record must be a value`);
  }
}

/** What a schema type expects, in words: `"string"`, `enum Kind (A|B)`, `union ["null","string"]`, `record User`. */
function expectation(type: Type): string {
  const schema = type.schema() as unknown;
  if (typeof schema === 'string') return JSON.stringify(schema);
  if (Array.isArray(schema)) {
    const branches = JSON.stringify(schema);
    return `union ${branches.length > 60 ? `of ${schema.length} types` : branches}`;
  }
  const { type: kind, name, symbols } = schema as { type: string; name?: string; symbols?: string[] };
  if (symbols) return `enum ${name} (${symbols.join('|')})`;
  return name ? `${kind} ${name}` : JSON.stringify(kind);
}

const LONE_SURROGATE = 'holds a lone surrogate, which Avro strings (UTF-8) give back as U+FFFD; send it as bytes, or repair it (toWellFormed())';

function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}

/** The largest finite float: a double beyond it (and beyond the rounding margin) becomes Infinity as a float. */
function floatOverflows(value: number): boolean {
  return Number.isFinite(value) && !Number.isFinite(Math.fround(value));
}

interface TypeParts {
  typeName: string;
  itemsType?: Type;
  valuesType?: Type;
  fields?: Array<{ name: string; type: Type }>;
  types?: Type[];
}

/**
 * What avsc accepts (its `isValid` is true) but would not give back as written, with the path to
 * it: a `map` given as anything but a plain object (avsc reads its own enumerable properties, so
 * a JS Map comes back as `{}`), a `float` beyond the float range (it comes back as Infinity), a
 * -0 for an `int` or `long` (it comes back as 0), a string (or map key) with a lone surrogate (it
 * comes back with U+FFFD), a plain object with a key its record type does not declare (it is
 * dropped). Undefined when there is none.
 */
function fidelityProblem(type: Type, value: unknown, path: string[]): string | undefined {
  const parts = type as unknown as TypeParts;
  switch (parts.typeName) {
    case 'float':
      return typeof value === 'number' && floatOverflows(value)
        ? `is ${value}, beyond the range of a float (it would come back as ${value > 0 ? '' : '-'}Infinity)`
        : undefined;
    case 'int':
    case 'long':
      return Object.is(value, -0) ? `is -0, which an Avro ${parts.typeName} gives back as 0` : undefined;
    case 'string':
      return typeof value === 'string' && !isWellFormed(value) ? LONE_SURROGATE : undefined;
    case 'map': {
      // Missing: avsc takes the field's default (it accepted the record).
      if (value === undefined) return undefined;
      const proto = value === null || typeof value !== 'object' ? undefined : Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        return `is ${value instanceof Map ? 'a Map' : 'not a plain object'}; avsc encodes a map from an object's own properties (it would come back as {}): give a plain object`;
      }
      for (const key of Object.keys(value as object)) {
        path.push(key);
        if (!isWellFormed(key)) return `is a map key that ${LONE_SURROGATE}`;
        const found = fidelityProblem(parts.valuesType!, (value as Record<string, unknown>)[key], path);
        if (found) return found;
        path.pop();
      }
      return undefined;
    }
    case 'array': {
      if (!Array.isArray(value)) return undefined;
      for (let i = 0; i < value.length; i++) {
        path.push(String(i));
        const found = fidelityProblem(parts.itemsType!, value[i], path);
        if (found) return found;
        path.pop();
      }
      return undefined;
    }
    case 'record':
    case 'error': {
      if (value === null || typeof value !== 'object') return undefined;
      // A plain object keeps every key in memory; Avro keeps the declared fields only. (Any other
      // object is copied through avsc in both tiers.)
      if (Object.getPrototypeOf(value) === Object.prototype) {
        const undeclared = Object.keys(value).find((key) => !parts.fields!.some((field) => field.name === key));
        if (undeclared !== undefined) {
          path.push(undeclared);
          return 'is a field the schema does not declare, which Avro does not carry (it would be dropped on disk); leave it out, or declare it';
        }
      }
      for (const field of parts.fields!) {
        path.push(field.name);
        const found = fidelityProblem(field.type, (value as Record<string, unknown>)[field.name], path);
        if (found) return found;
        path.pop();
      }
      return undefined;
    }
    case 'union:unwrapped': {
      // The branch avsc will encode the value with: the first that accepts it.
      const branch = parts.types!.find((candidate) => candidate.isValid(value));
      return branch === undefined ? undefined : fidelityProblem(branch, value, path);
    }
    case 'union:wrapped': {
      if (value === null || typeof value !== 'object') return undefined;
      const [name] = Object.keys(value);
      const branch = parts.types!.find((candidate) => candidate.branchName === name);
      if (branch === undefined) return undefined;
      path.push(name!);
      const found = fidelityProblem(branch, (value as Record<string, unknown>)[name!], path);
      if (found) return found;
      path.pop();
      return undefined;
    }
    default:
      return undefined;
  }
}

function schemaCodec(type: Type): RecordCodec {
  const describeFailure = (record: unknown): HopperError => {
    let failure: HopperError | undefined;
    try {
      type.isValid(record, {
        errorHook(path: string[], value: unknown, fieldType: Type) {
          failure ??= invalidRecordError(record, path, `expected ${expectation(fieldType)}, got ${shown(value)} (${typeName(value)})`);
        },
      });
    } catch (err) {
      failure ??= invalidRecordError(record, [], `does not match the schema (${(err as Error).message})`, err);
    }
    return failure ?? invalidRecordError(record, [], 'does not match the schema');
  };
  // avsc's checks coerce some values (an int check computes `val | 0`): one that cannot be
  // converted throws, and counts as invalid.
  const isValid = (record: unknown): boolean => {
    try {
      return type.isValid(record);
    } catch {
      return false;
    }
  };
  const sizeOf = compileSizeOf(type);
  const quickCheck = compileQuickCheck(type);
  const validate = (record: unknown): void => {
    checkTopLevel(record);
    try {
      // The quick check accepts only values avsc gives back as written; a value it leaves to avsc
      // is also checked for what avsc accepts but would change.
      if (quickCheck(record)) return;
      if (!isValid(record)) throw describeFailure(record);
      const path: string[] = [];
      const problem = fidelityProblem(type, record, path);
      if (problem !== undefined) throw invalidRecordError(record, path, problem);
    } catch (err) {
      throw HopperError.is(err) ? err : unreadable(record, err);
    }
  };
  return {
    type,
    validateAndSize(record) {
      validate(record);
      try {
        return sizeOf(record);
      } catch (err) {
        throw unreadable(record, err);
      }
    },
    validate,
    encode(record, buf, pos) {
      try {
        return type.encode(record, buf, pos);
      } catch (err) {
        throw encodeFailure(record, err);
      }
    },
    decode: (buf, pos) => type.decode(buf, pos),
    copy(record) {
      if (typeof record !== 'object' || record === null) return record;
      try {
        return type.fromBuffer(type.toBuffer(record));
      } catch {
        // User code (a getter) that threw now though it did not during validation: kept as written.
        return record;
      }
    },
  };
}

/**
 * The envelope's `bytes` branch (union index 0, encoded as the byte 0) of at least
 * {@link BY_REFERENCE_BYTES} at `pos`, as a view of `buf` rather than a copy; undefined when the record
 * is anything else, which avsc then decodes. A view keeps all of `buf`'s memory alive as long as it
 * lives, so it is only taken when the record is at least a fifth of that memory (a block of four
 * 64 KiB Buffers read in one piece: each is a view of it).
 */
function decodeBytesView(buf: Buffer, pos: number): { value: Buffer; offset: number } | undefined {
  if (buf[pos] !== 0) return undefined;
  let length: number;
  let at: number;
  try {
    ({ value: length, offset: at } = LONG_TYPE.decode(buf, pos + 1) as { value: number; offset: number });
  } catch {
    return undefined; // a length past 2^53: avsc's own decoding says what is wrong
  }
  if (at < 0) return undefined;
  const end = at + length;
  if (length < BY_REFERENCE_BYTES || end > buf.length || length * VIEW_MAX_SHARE < buf.buffer.byteLength) return undefined;
  return { value: buf.subarray(at, end), offset: end };
}

/** Writes typed arrays and DataViews (at any depth) as their class and their own bytes only, as node:v8's DefaultSerializer does. */
class ValueSerializer extends v8.Serializer {
  constructor() {
    super();
    (this as unknown as { _setTreatArrayBufferViewsAsHostObjects(flag: boolean): void })._setTreatArrayBufferViewsAsHostObjects(true);
  }

  _writeHostObject(view: ArrayBufferView): void {
    const index = VIEW_INDEX.get(Object.getPrototypeOf(view) as object);
    // The size walk refuses other views first; this is the serializer's own refusal.
    if (index === undefined) throw new TypeError('a view of an unknown class cannot be serialized');
    this.writeUint32(index);
    this.writeUint32(view.byteLength);
    this.writeRawBytes(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  }
}

/** Reads what {@link ValueSerializer} wrote; each view gets a copy of its bytes (the buffer read from is reused). */
class ValueDeserializer extends v8.Deserializer {
  _readHostObject(): ArrayBufferView {
    const index = this.readUint32();
    const View = VIEW_TYPES[index] as (typeof VIEW_TYPES)[number] | undefined;
    // Plain Errors: damaged bytes, which the block reader reports as corruption (block-reader.ts isBadBytesError).
    if (View === undefined) throw new Error(`damaged bytes: no view class number ${index}`);
    const bytes = this.readRawBytes(this.readUint32());
    if (bytes.length % (View.BYTES_PER_ELEMENT ?? 1) !== 0) throw new Error(`damaged bytes: ${bytes.length} bytes are no whole ${View.name}`);
    if (View === Buffer) return Buffer.from(bytes);
    const copy = new ArrayBuffer(bytes.length);
    new Uint8Array(copy).set(bytes);
    if (View === DataView) return new DataView(copy);
    const TypedArray = View as unknown as new (buffer: ArrayBuffer, offset: number, length: number) => ArrayBufferView;
    return new TypedArray(copy, 0, bytes.length / View.BYTES_PER_ELEMENT!);
  }
}

const VIEW_INDEX = new Map<object, number>(VIEW_TYPES.map((type, index) => [type.prototype, index]));

/** The version header a Deserializer needs; written before each record, as a record is read alone. */
const V8_HEADER = (() => {
  const serializer = new v8.Serializer();
  serializer.writeHeader();
  return serializer.releaseBuffer();
})();
/** V8's tag for a reference to an object serialized earlier ('^'). */
const OBJECT_REFERENCE_TAG = 0x5e;

/**
 * Serializes records in structuredClone's format. One serializer is reused for a block: creating
 * one per record costs several times more. A reused serializer remembers every object it wrote,
 * and writes an object it meets again as a reference to the earlier one, which a record read
 * alone could not resolve. A reference always contains the byte '^', so a record whose bytes
 * hold none is self-contained; one whose bytes do (a real reference, or a '^' in a string or a
 * number) is written again by a serializer of its own.
 */
class ValueWriter {
  private serializer = new ValueSerializer();
  private records = 0;

  serialize(record: unknown): Buffer {
    let bytes: Buffer;
    try {
      this.serializer.writeValue(record);
      bytes = this.serializer.releaseBuffer();
    } catch (err) {
      this.renew();
      throw err;
    }
    this.records++;
    if (bytes.indexOf(OBJECT_REFERENCE_TAG) !== -1) {
      const alone = new ValueSerializer();
      alone.writeValue(record);
      bytes = alone.releaseBuffer();
    }
    // A serializer holds on to every object it wrote: a large record must not outlive its block.
    if (bytes.length >= BY_REFERENCE_BYTES) this.renew();
    return bytes;
  }

  renew(): void {
    if (this.records === 0) return;
    this.serializer = new ValueSerializer();
    this.records = 0;
  }
}

/** V8's serialization tag of a string held one byte per character (Latin-1): '"'. */
const ONE_BYTE_STRING_TAG = 0x22;

/**
 * The UTF-8 bytes of a long string. UTF-8 encoding cost a 64 MiB string four times its
 * v8.serialize, and most long strings are ASCII, whose UTF-8 is their Latin-1: V8 serializes a
 * string it holds one byte per character as a tag, its length, then those bytes (a copy, and
 * the one way JavaScript can tell how V8 holds a string), so when the tag says so and the bytes
 * are ASCII, they are the UTF-8. Anything else (or another serialization format) is encoded.
 */
function utf8Of(text: string): Buffer {
  const serialized = v8.serialize(text);
  if (serialized[V8_HEADER.length] === ONE_BYTE_STRING_TAG && serialized.length - text.length > V8_HEADER.length) {
    const bytes = serialized.subarray(serialized.length - text.length);
    if (isAscii(bytes)) return bytes;
  }
  return Buffer.from(text, 'utf8');
}

/**
 * Serializes `record` with a serializer of its own (nothing it wrote before to refer to), with
 * the version header or without it.
 */
function serializeAlone(record: unknown, header: boolean): Buffer {
  const serializer = new ValueSerializer();
  if (header) serializer.writeHeader();
  serializer.writeValue(record);
  return serializer.releaseBuffer();
}

function readAlone(buf: Buffer, at: number, length: number): unknown {
  const deserializer = new ValueDeserializer(buf.subarray(at, at + length));
  deserializer.readHeader();
  return deserializer.readValue();
}

/**
 * Deserializes records, one Deserializer per block while records are read in order (one per
 * record costs about twice as much). A shared Deserializer numbers the objects of every record
 * it reads in one sequence, which is what a record without references (no '^' byte) ignores; a
 * record with one was written by a serializer of its own, and is read by a deserializer of its own.
 */
class ValueReader {
  private buffer: Buffer | undefined;
  private deserializer: ValueDeserializer | undefined;
  /** Where the shared deserializer stands in `buffer`. */
  private position = 0;
  private tagBuffer: Buffer | undefined;
  private nextTag = 0;

  /** `settled`: `buf` is never written again (else what was learnt of it may be stale, and each record is read alone). */
  read(buf: Buffer, at: number, length: number, settled: boolean): unknown {
    if (!settled) return readAlone(buf, at, length);
    // The next '^' at or after `at`, found once per stretch of records without one.
    if (buf !== this.tagBuffer || this.nextTag < at) {
      const found = buf.indexOf(OBJECT_REFERENCE_TAG, at);
      this.tagBuffer = buf;
      this.nextTag = found === -1 ? Infinity : found;
    }
    if (this.nextTag < at + length) return readAlone(buf, at, length);
    let deserializer = this.deserializer;
    if (deserializer === undefined || buf !== this.buffer || at < this.position) {
      deserializer = this.deserializer = new ValueDeserializer(buf);
      this.buffer = buf;
      this.position = 0;
    }
    const internal = deserializer as unknown as { _readRawBytes(length: number): number };
    // Skip what lies between records (their framing, other records): the reads are relative to `buf`.
    if (at > this.position) internal._readRawBytes(at - this.position);
    deserializer.readHeader();
    const value: unknown = deserializer.readValue();
    this.position = internal._readRawBytes(0);
    if (this.position !== at + length) {
      // The bytes were not one whole value: start afresh next time, and say so.
      this.deserializer = undefined;
      throw new RangeError('a value does not use exactly its bytes');
    }
    return value;
  }
}

function envelopeCodec(): RecordCodec {
  const type = avsc.Type.forSchema(ENVELOPE_SCHEMA as unknown as Schema);
  const writer = new ValueWriter();
  const reader = new ValueReader();
  // encode() answers a short buffer with the bytes missing, and is called again once there is
  // room: the record is serialized (or made JSON) once.
  let pendingRecord: unknown;
  let pendingText: string | undefined;
  let pendingBytes: Buffer | undefined;
  const validateAndSize = (record: unknown): number => {
    checkTopLevel(record);
    try {
      return sizeOfSchemaless(record);
    } catch (err) {
      if (!(err instanceof SizeProblem)) throw unreadable(record, err);
      throw invalidRecordError(record, err.path, err.problem);
    }
  };
  return {
    type,
    validateAndSize,
    // Without a schema, the size walk is what finds values structuredClone would not give back;
    // plain data passes a quicker walk that only checks, for the records handed straight over.
    validate(record) {
      // Any string is valid: sizing it (its UTF-8 length) cost a 64 MiB string a scan.
      if (typeof record === 'string') return;
      if (typeof record === 'object' && record !== null) {
        let plain = false;
        try {
          plain = isQuickValid(record);
        } catch {
          // A getter or a Proxy threw: the full walk below reads it again and reports it.
        }
        if (plain) return;
      }
      validateAndSize(record);
    },
    encode(record, buf, pos) {
      // Strings with lone surrogates go as values: UTF-8 would turn those into U+FFFD.
      if (Buffer.isBuffer(record) || (typeof record === 'string' && (record as string & { isWellFormed(): boolean }).isWellFormed()))
        return type.encode(record, buf, pos);
      let text = pendingText;
      let bytes = pendingBytes;
      if (pendingRecord !== record) {
        text = bytes = undefined;
        const flat = isLargeFlatArray(record);
        // JSON is exact for plain data, and several times cheaper than a V8 serialization per
        // record (each releaseBuffer() is a new external buffer for the garbage collector).
        if (!flat && typeof record !== 'string' && isJsonExact(record)) {
          try {
            text = JSON.stringify(record);
          } catch (err) {
            throw encodeFailure(record, err);
          }
        } else {
          try {
            bytes = flat ? serializeAlone(record, false) : writer.serialize(record);
          } catch (err) {
            throw encodeFailure(record, err);
          }
        }
      }
      // A short buffer: keep what was made for the call that follows, once there is room.
      const length = text !== undefined ? Buffer.byteLength(text) : V8_HEADER.length + bytes!.length;
      const end = pos + 2 + LENGTH_MAX_BYTES + length;
      if (end > buf.length) {
        pendingRecord = record;
        pendingText = text;
        pendingBytes = bytes;
        return buf.length - end;
      }
      pendingRecord = pendingText = pendingBytes = undefined;
      buf[pos] = VALUE_BRANCH;
      if (text !== undefined) {
        buf[pos + 1] = DATA_JSON;
        return STRING_TYPE.encode(text, buf, pos + 2);
      }
      buf[pos + 1] = DATA_V8;
      const at = LONG_TYPE.encode(length, buf, pos + 2);
      V8_HEADER.copy(buf, at);
      bytes!.copy(buf, at + V8_HEADER.length);
      return at + length;
    },
    endBlock() {
      writer.renew();
    },
    decode(buf, pos, settled) {
      if (buf[pos] === VALUE_BRANCH && buf[pos + 1] === DATA_JSON) {
        const { value: text, offset } = STRING_TYPE.decode(buf, pos + 2) as { value: string; offset: number };
        return offset < 0 ? { value: undefined, offset } : { value: JSON.parse(text), offset };
      }
      if (buf[pos] === VALUE_BRANCH) {
        if (buf[pos + 1] !== DATA_V8) return { value: undefined, offset: -1 };
        const { value: length, offset: at } = LONG_TYPE.decode(buf, pos + 2) as { value: number; offset: number };
        if (at < 0 || at + length > buf.length) return { value: undefined, offset: -1 };
        return { value: reader.read(buf, at, length, settled === true), offset: at + length };
      }
      const view = settled ? decodeBytesView(buf, pos) : undefined;
      if (view !== undefined) return view;
      return type.decode(buf, pos);
    },
    copy(record) {
      if (typeof record !== 'object' || record === null) return record;
      if (ArrayBuffer.isView(record)) return copyView(record);
      try {
        const bytes = serializeAlone(record, true);
        return readAlone(bytes, 0, bytes.length);
      } catch {
        // User code (a getter) that threw now though it did not during validation: kept as written.
        return record;
      }
    },
    largeRecord(record) {
      if (Buffer.isBuffer(record)) return record.length >= BY_REFERENCE_BYTES ? { kind: 'buffer', bytes: record } : undefined;
      if (typeof record === 'string') {
        if (record.length < BY_REFERENCE_BYTES || !isWellFormed(record)) return undefined;
        return { kind: 'string', bytes: utf8Of(record) };
      }
      if (!isLargeFlatArray(record)) return undefined;
      let bytes: Buffer;
      try {
        bytes = serializeAlone(record, true);
      } catch (err) {
        throw encodeFailure(record, err);
      }
      return { kind: 'value', bytes };
    },
    encodeLargeHead(large, buf, pos) {
      if (large.kind === 'value') {
        buf[pos] = VALUE_BRANCH;
        buf[pos + 1] = DATA_V8;
        return LONG_TYPE.encode(large.bytes.length, buf, pos + 2);
      }
      buf[pos] = large.kind === 'buffer' ? BYTES_BRANCH : STRING_BRANCH;
      return LONG_TYPE.encode(large.bytes.length, buf, pos + 1);
    },
    largeValue(large) {
      if (large.kind === 'buffer') return large.bytes;
      if (large.kind === 'string') return large.bytes.toString('utf8');
      return readAlone(large.bytes, 0, large.bytes.length);
    },
  };
}

/** Builds the codec for a channel: the user's schema (object, JSON string or avsc Type), or the schemaless envelope. */
export function createCodec(schema: AvroSchema | undefined): RecordCodec {
  if (schema === undefined) return envelopeCodec();
  if (avsc.Type.isType(schema)) return schemaCodec(schema as Type);
  let parsed: unknown = schema;
  if (typeof schema === 'string') {
    try {
      parsed = JSON.parse(schema);
    } catch {
      // A bare name such as "string" is not JSON: avsc takes it as is.
      parsed = schema;
    }
  }
  try {
    return schemaCodec(avsc.Type.forSchema(parsed as Schema));
  } catch (err) {
    throw new TypeError(`Expected \`schema\` to be a valid Avro schema: ${(err as Error).message}`);
  }
}
