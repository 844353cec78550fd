import avsc from 'avsc';
import type { Schema, Type } from 'avsc';
import { HopperError } from './errors.js';
import type { AvroSchema } from './options.js';
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
  /** The record as the channel holds it: a non-Buffer Uint8Array becomes a Buffer over the same bytes. */
  normalize(record: unknown): unknown;
  /** Encodes into `buf` at `pos`; returns the new position, or a negative number when `buf` is too small. */
  encode(record: unknown, buf: Buffer, pos: number): number;
  /** Decodes the record at `pos`; `offset` is -1 when the bytes do not hold a whole record. */
  decode(buf: Buffer, pos: number): { value: unknown; offset: number };
}

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
    type.isValid(record, {
      errorHook(path: string[], value: unknown, fieldType: Type) {
        failure ??= invalid(record, path, `expected ${expectation(fieldType)}, got ${shown(value)} (${typeName(value)})`);
      },
    });
    return failure ?? invalid(record, [], 'does not match the schema');
  };
  const sizeOf = compileSizeOf(type);
  return {
    type,
    check(record) {
      checkTopLevel(record);
      if (!type.isValid(record)) throw describeFailure(record);
      return sizeOf(record);
    },
    normalize: (record) => record,
    encode: (record, buf, pos) => type.encode(record, buf, pos),
    decode: (buf, pos) => type.decode(buf, pos),
  };
}

function envelopeCodec(): RecordCodec {
  const type = avsc.Type.forSchema(ENVELOPE_SCHEMA as unknown as Schema);
  return {
    type,
    check(record) {
      checkTopLevel(record);
      try {
        return sizeOfSchemaless(record);
      } catch (err) {
        const { path, problem } = err as SizeProblem;
        throw invalid(record, path, problem);
      }
    },
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
    decode(buf, pos) {
      const result = type.decode(buf, pos);
      const value = result.value as Buffer | string | { json: string } | undefined;
      if (value !== undefined && typeof value === 'object' && !Buffer.isBuffer(value)) result.value = JSON.parse(value.json);
      return result;
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
