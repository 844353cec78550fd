import util from 'node:util';
import type { RecordCodec } from '../codec.js';
import { HopperError } from '../errors.js';

// Records as JSON text, one per line. JSON has no bytes, so a Buffer (Avro `bytes` or `fixed`)
// is written as `{"$base64": "..."}`, and read back from that form wherever a schema has
// bytes to fill. The CLI's `cat` and `--lines --schema` share this one convention.

/** The key of the one-key object that stands for a Buffer in JSON: `{"$base64": "aGk="}`. */
export const BASE64_KEY = '$base64';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function bufferReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  // JSON.stringify has already applied Buffer#toJSON to `value`; the holder still has the Buffer.
  const raw = this[key];
  // Schemaless records are structuredClone values: a BigInt prints as its digits.
  if (typeof value === 'bigint') return value.toString();
  if (raw instanceof Uint8Array) {
    return { [BASE64_KEY]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
  }
  return value;
}

function bufferReviver(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === 'object') {
    const encoded = (value as Record<string, unknown>)[BASE64_KEY];
    if (typeof encoded === 'string' && BASE64.test(encoded) && Object.keys(value).length === 1) {
      return Buffer.from(encoded, 'base64');
    }
  }
  return value;
}

/** JSON text of a record; Buffers (at any depth) become `{"$base64": ...}` when `buffers` is set. */
export function stringifyRecord(record: unknown, buffers: boolean): string {
  if (!buffers) return JSON.stringify(record);
  try {
    return JSON.stringify(record, bufferReplacer);
  } catch {
    // A value JSON cannot hold (a circular one): its util.inspect() text, as a JSON string.
    return JSON.stringify(util.inspect(record, { depth: Infinity, breakLength: Infinity }));
  }
}

/** Parses one line of JSON; `{"$base64": ...}` objects become Buffers when `buffers` is set. Throws SyntaxError. */
export function parseRecord(line: string, buffers: boolean): unknown {
  return buffers ? JSON.parse(line, bufferReviver) : JSON.parse(line);
}

/**
 * A line made into a record: the string, or with a schema's `codec` the parsed record fitted to
 * the schema, or why it is not one. `buffers`: the schema has bytes (see {@link schemaHasBytes}).
 */
export function lineRecord(line: string, codec: RecordCodec | undefined, buffers: boolean): { record: unknown } | { invalid: string } {
  if (codec === undefined) return { record: line };
  let parsed: unknown;
  try {
    parsed = parseRecord(line, buffers);
  } catch (err) {
    return { invalid: `not JSON (${(err as Error).message})` };
  }
  // Fitted to the schema (defaults filled in, undeclared fields dropped), a record prints the
  // same whether it comes back from memory or from disk.
  let record: unknown;
  let cloneError: Error | undefined;
  try {
    record = codec.type.clone(parsed, {});
  } catch (err) {
    record = parsed;
    cloneError = err as Error;
  }
  try {
    codec.validate(record);
  } catch (err) {
    if (HopperError.is(err, 'ERR_HOPPER_INVALID_RECORD')) return { invalid: err.message };
    throw err;
  }
  return cloneError ? { invalid: `invalid record: ${cloneError.message}` } : { record };
}

/**
 * Whether values of an Avro schema (as `Type#schema()` gives it) can hold bytes: a `bytes` or
 * `fixed` type anywhere in it. Field names are not types: a field called "bytes" does not count.
 */
export function schemaHasBytes(schema: unknown): boolean {
  if (typeof schema === 'string') return schema === 'bytes';
  if (Array.isArray(schema)) return schema.some(schemaHasBytes);
  if (schema === null || typeof schema !== 'object') return false;
  const { type, fields, items, values } = schema as { type?: unknown; fields?: Array<{ type: unknown }>; items?: unknown; values?: unknown };
  if (type === 'fixed' || schemaHasBytes(type)) return true;
  if (Array.isArray(fields) && fields.some((field) => schemaHasBytes(field.type))) return true;
  return schemaHasBytes(items) || schemaHasBytes(values);
}

/**
 * Splits bytes into lines on `\n` (or on NUL, `-0`), across chunks; each line is decoded as
 * UTF-8 (an invalid sequence becomes U+FFFD) without its separator. Neither byte occurs inside
 * a UTF-8 sequence, so splitting the bytes first is safe.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private readonly separator: number;

  /** `separator`: `'\n'` (the default) or `'\0'`. */
  constructor(separator: '\n' | '\0' = '\n') {
    this.separator = separator.charCodeAt(0);
  }

  /** The whole lines that end in `chunk`. */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    const separator = this.separator;
    for (let end = chunk.indexOf(separator); end !== -1; end = chunk.indexOf(separator, start)) {
      if (this.pending.length > 0) {
        this.pending.push(chunk.subarray(start, end));
        lines.push(Buffer.concat(this.pending).toString('utf8'));
        this.pending = [];
      } else {
        lines.push(chunk.toString('utf8', start, end));
      }
      start = end + 1;
    }
    // Copy the partial line: a slice would keep the whole chunk alive.
    if (start < chunk.length) this.pending.push(Buffer.from(chunk.subarray(start)));
    return lines;
  }

  /** The last line, when the input did not end with the separator. */
  end(): string | undefined {
    if (this.pending.length === 0) return undefined;
    const last = Buffer.concat(this.pending).toString('utf8');
    this.pending = [];
    return last;
  }
}
