import avsc from 'avsc';
import type { Schema, Type } from 'avsc';
import { HopperError } from './errors.js';
import type { AvroSchema } from './options.js';

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

// Above this depth a value is checked for cycles before going on: real records are rarely this deep.
const CYCLE_CHECK_DEPTH = 64;

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

function findCycle(value: object, ancestors: object[], path: string[]): string[] | undefined {
  if (ancestors.includes(value)) return path;
  ancestors.push(value);
  for (const key of Object.keys(value)) {
    const child = (value as Record<string, unknown>)[key];
    if (child !== null && typeof child === 'object') {
      const found = findCycle(child, ancestors, [...path, key]);
      if (found) return found;
    }
  }
  ancestors.pop();
  return undefined;
}

/**
 * Estimated bytes a value holds in memory: exact byte length for Buffers and typed arrays,
 * UTF-8 byte length for strings, 8 per number, 4 per boolean, and for objects and arrays
 * 16 bytes of overhead plus 8 per slot plus their contents. With `strict`, values JSON cannot
 * carry (functions, symbols, BigInt, cycles) are refused with the path to them.
 * `path` is a shared stack: pushed before each child and popped after, copied only on failure.
 */
function estimate(value: unknown, record: unknown, path: string[], strict: boolean): number {
  switch (typeof value) {
    case 'string':
      return Buffer.byteLength(value);
    case 'number':
      return 8;
    case 'boolean':
      return 4;
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null) return 0;
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value.byteLength;
      if (path.length === CYCLE_CHECK_DEPTH) {
        const cycle = findCycle(value, [], [...path]);
        if (cycle) throw invalid(record, cycle, 'refers back to itself (circular structure)');
      }
      let size = 16;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          path.push(String(i));
          size += 8 + estimate(value[i], record, path, strict);
          path.pop();
        }
        return size;
      }
      for (const key in value) {
        if (!Object.prototype.hasOwnProperty.call(value, key)) continue;
        path.push(key);
        size += 8 + estimate((value as Record<string, unknown>)[key], record, path, strict);
        path.pop();
      }
      return size;
    }
    default:
      // function, symbol, bigint
      if (strict) throw invalid(record, [...path], `is a ${typeof value} (${shown(value)}), which JSON cannot carry; give a schema or convert it`);
      return 8;
  }
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
  return {
    type,
    check(record) {
      checkTopLevel(record);
      if (!type.isValid(record)) throw describeFailure(record);
      return estimate(record, record, [], false);
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
      return estimate(record, record, [], true);
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
