import avsc from 'avsc';
import type { Schema, Type } from 'avsc';
import { HopperError } from './errors.js';
import type { AvroSchema } from './options.js';
import { compileQuickCheck } from './quick-check.js';
import { compileSizeOf, sizeOfSchemaless, type SizeProblem } from './size.js';

/**
 * How records become bytes in a segment, and how their in-memory size is estimated.
 * With a schema, the record type is the user's; without one, an envelope union
 * `["bytes", "string", Json]` carries Buffers, strings and JSON text byte-exact.
 */
export interface RecordCodec {
  /** Avro type written into segment headers and used to encode and decode records. */
  readonly type: Type;
  /** Checks a record and returns its estimated in-memory size; throws `ERR_HOPPER_INVALID_RECORD`. */
  check(record: unknown): number;
  /** Checks a record without sizing it (where sizing is a walk of its own); throws as {@link check}. */
  validate(record: unknown): void;
  /** The record as the channel holds it: a non-Buffer Uint8Array becomes a Buffer over the same bytes. */
  normalize(record: unknown): unknown;
  /** Encodes into `buf` at `pos`; returns the new position, or a negative number when `buf` is too small. */
  encode(record: unknown, buf: Buffer, pos: number): number;
  /**
   * Decodes the record at `pos`; `offset` is -1 when the bytes do not hold a whole record.
   * `settled`: nothing will ever write to `buf` again, so a large Buffer record may come back as a
   * view of it instead of a copy (see {@link decodeBytesView}).
   */
  decode(buf: Buffer, pos: number, settled?: boolean): { value: unknown; offset: number };
  /**
   * Schemaless only: a record that is a Buffer of at least {@link BY_REFERENCE_BYTES}, returned so
   * that the segment log can write its bytes by reference instead of copying them into a block.
   */
  largeBytes?(record: unknown): Buffer | undefined;
  /**
   * Schemaless only: encodes what comes before the bytes of a {@link largeBytes} record of `length`
   * bytes (its union branch and length) into `buf` at `pos`, which has room for
   * {@link BYTES_HEAD_MAX_BYTES}; returns the new position. Those bytes, then the Buffer's, are the record.
   */
  encodeBytesHead?(length: number, buf: Buffer, pos: number): number;
}

/** Buffers this large are written to segments by reference, and read back as views of what was read. */
export const BY_REFERENCE_BYTES = 16 * 1024;
/** A Buffer record decoded as a view keeps alive at most this many times its own size. */
const VIEW_MAX_SHARE = 5;
/** The union branch (one byte) and a length up to 2^53 (eight bytes of varint), with room to spare. */
export const BYTES_HEAD_MAX_BYTES = 16;

/** The union branch and the length of a `bytes` value are Avro longs. */
const LONG_TYPE = avsc.Type.forSchema('long');

const ENVELOPE_SCHEMA = [
  'bytes',
  'string',
  { type: 'record', name: 'Json', namespace: 'hopper_streams', fields: [{ name: 'json', type: 'string' }] },
] as const;

function invalid(record: unknown, path: string[], message: string): HopperError {
  const where = path.length > 0 ? `field \`${path.join('.')}\`` : 'the record';
  return new HopperError('ERR_HOPPER_INVALID_RECORD', `invalid record: ${where} ${message}`, { record, path });
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
    text = typeof value === 'bigint' ? `${value}n` : typeof value === 'symbol' ? value.toString() : JSON.stringify(value) ?? String(value);
  } catch {
    text = Object.prototype.toString.call(value);
  }
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function checkTopLevel(record: unknown): void {
  if (record === null || record === undefined) {
    throw invalid(record, [], `is ${record === null ? 'null' : 'undefined'}; a stream record must be a value`);
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

function schemaCodec(type: Type): RecordCodec {
  const describeFailure = (record: unknown): HopperError => {
    let failure: HopperError | undefined;
    try {
      type.isValid(record, {
        errorHook(path: string[], value: unknown, fieldType: Type) {
          failure ??= invalid(record, path, `expected ${expectation(fieldType)}, got ${shown(value)} (${typeName(value)})`);
        },
      });
    } catch (err) {
      failure ??= invalid(record, [], `does not match the schema (${(err as Error).message})`);
    }
    return failure ?? invalid(record, [], 'does not match the schema');
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
    if (!quickCheck(record) && !isValid(record)) throw describeFailure(record);
  };
  return {
    type,
    check(record) {
      validate(record);
      return sizeOf(record);
    },
    validate,
    normalize: (record) => record,
    encode: (record, buf, pos) => type.encode(record, buf, pos),
    decode: (buf, pos) => type.decode(buf, pos),
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

function envelopeCodec(): RecordCodec {
  const type = avsc.Type.forSchema(ENVELOPE_SCHEMA as unknown as Schema);
  const check = (record: unknown): number => {
    checkTopLevel(record);
    try {
      return sizeOfSchemaless(record);
    } catch (err) {
      const { path, problem } = err as SizeProblem;
      throw invalid(record, path, problem);
    }
  };
  return {
    type,
    check,
    // Without a schema, the size walk is what finds values JSON cannot carry.
    validate: check,
    normalize(record) {
      if (record instanceof Uint8Array && !Buffer.isBuffer(record)) {
        return Buffer.from(record.buffer, record.byteOffset, record.byteLength);
      }
      return record;
    },
    encode(record, buf, pos) {
      if (Buffer.isBuffer(record) || typeof record === 'string') return type.encode(record, buf, pos);
      return type.encode({ json: JSON.stringify(record) }, buf, pos);
    },
    decode(buf, pos, settled) {
      const view = settled ? decodeBytesView(buf, pos) : undefined;
      if (view !== undefined) return view;
      const result = type.decode(buf, pos);
      const value = result.value as Buffer | string | { json: string } | undefined;
      if (value !== undefined && typeof value === 'object' && !Buffer.isBuffer(value)) result.value = JSON.parse(value.json);
      return result;
    },
    largeBytes(record) {
      return Buffer.isBuffer(record) && record.length >= BY_REFERENCE_BYTES ? record : undefined;
    },
    encodeBytesHead(length, buf, pos) {
      buf[pos] = 0; // the union branch: 'bytes'
      return LONG_TYPE.encode(length, buf, pos + 1);
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
