import avsc from 'avsc';
import type { Schema } from 'avsc';
import { invalidRecordError } from './errors.js';
import { copyView, isJsonExact } from './plain-data.js';
import { JSON_EXACT, QUICK, SizeProblem, isQuickValid, quickKind, sizeOfSchemaless } from './size.js';
import { BY_REFERENCE_BYTES, checkTopLevel, encodeFailure, isWellFormed, unreadable, type RecordCodec } from './record-codec.js';
import { V8_HEADER, ValueReader, ValueWriter, readAlone, serializeAlone, utf8Of } from './value-codec.js';

// The codec of a channel without a schema: the envelope union carries Buffers and strings
// byte-exact, plain data as JSON text, anything else as node:v8 bytes (structuredClone's format:
// value-codec.ts).

/** A Buffer record decoded as a view keeps alive at most this many times its own size. */
const VIEW_MAX_SHARE = 5;
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
/** A UTF-16 code unit takes at most three bytes of UTF-8 (a surrogate pair, two units, takes four). */
const UTF8_MAX_BYTES_PER_UNIT = 3;

/** Bytes of the zigzag varint (an Avro long) of `length`, which is >= 0. */
function lengthBytes(length: number): number {
  let bytes = 1;
  for (let zigzag = length * 2; zigzag >= 0x80; zigzag = Math.floor(zigzag / 0x80)) bytes++;
  return bytes;
}

/** Writes `length` (>= 0) as an Avro long at `at`; returns where it ends. */
function writeLength(length: number, buf: Buffer, at: number): number {
  let zigzag = length * 2;
  while (zigzag >= 0x80) {
    buf[at++] = (zigzag % 0x80) | 0x80;
    zigzag = Math.floor(zigzag / 0x80);
  }
  buf[at++] = zigzag;
  return at;
}

/**
 * Writes `text` as an Avro string (its UTF-8 length, then its UTF-8) at `at`, where the caller
 * made room for {@link LENGTH_MAX_BYTES} and three bytes per code unit; returns where it ends.
 * The UTF-8 is written once, where a length of `text.length` bytes would put it, and moved in
 * the rare case its length takes another number of bytes: avsc measures the UTF-8 first (a scan
 * of its own), and the length of JSON text is most often its number of code units.
 */
function writeAvroString(text: string, buf: Buffer, at: number): number {
  const guess = lengthBytes(text.length);
  const start = at + guess;
  const written = buf.write(text, start);
  const size = lengthBytes(written);
  if (size !== guess) buf.copyWithin(at + size, start, start + written);
  writeLength(written, buf, at);
  return at + size + written;
}

/** Where the string {@link readAvroString} returned ends. */
let readEnd = 0;

/**
 * The Avro string at `at` read without avsc (no Tap, no Buffer made for its bytes), its end in
 * {@link readEnd}; undefined for what is not the common case (a length of four bytes or more, a
 * negative length, bytes past the end), which avsc then reads and judges as it always did.
 */
function readAvroString(buf: Buffer, at: number): string | undefined {
  if (at + 3 > buf.length) return undefined;
  let zigzag = buf[at]!;
  let p = at + 1;
  if (zigzag >= 0x80) {
    const second = buf[p++]!;
    zigzag = (zigzag & 0x7f) | ((second & 0x7f) << 7);
    if (second >= 0x80) {
      const third = buf[p++]!;
      if (third >= 0x80) return undefined;
      zigzag |= third << 14;
    }
  }
  if ((zigzag & 1) !== 0) return undefined;
  const end = p + (zigzag >>> 1);
  if (end > buf.length) return undefined;
  readEnd = end;
  return (buf as Buffer & { utf8Slice(start: number, end: number): string }).utf8Slice(p, end);
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

export function envelopeCodec(): RecordCodec {
  const type = avsc.Type.forSchema(ENVELOPE_SCHEMA as unknown as Schema);
  const writer = new ValueWriter();
  const reader = new ValueReader();
  // encode() answers a short buffer with the bytes missing, and is called again once there is
  // room: the record is serialized (or made JSON) once.
  let pendingRecord: unknown;
  let pendingText: string | undefined;
  let pendingBytes: Buffer | undefined;
  /**
   * The record validate() just found to be plain data JSON gives back exactly, when its encode()
   * comes next (`encodeNext`): encode() then need not walk it again. Cleared by that encode(), by
   * the next validate() and by forget() (a held write: the producer had its turn in between).
   */
  let exactRecord: unknown;
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
    validate(record, encodeNext) {
      exactRecord = undefined;
      // Any string is valid: sizing it (its UTF-8 length) cost a 64 MiB string a scan.
      if (typeof record === 'string') return;
      if (typeof record === 'object' && record !== null) {
        let kind = 0;
        try {
          // Handed straight over or placed in memory, the record is not encoded: the plain check.
          kind = encodeNext === true ? quickKind(record) : isQuickValid(record) ? QUICK : 0;
        } catch {
          // A getter or a Proxy threw: the full walk below reads it again and reports it.
        }
        if (kind !== 0) {
          if (encodeNext === true && (kind & JSON_EXACT) !== 0) exactRecord = record;
          return;
        }
      }
      validateAndSize(record);
    },
    forget() {
      exactRecord = undefined;
    },
    encode(record, buf, pos) {
      // Strings with lone surrogates go as values: UTF-8 would turn those into U+FFFD.
      if (Buffer.isBuffer(record) || (typeof record === 'string' && (record as string & { isWellFormed(): boolean }).isWellFormed()))
        return type.encode(record, buf, pos);
      let text = pendingText;
      let bytes = pendingBytes;
      if (pendingRecord !== record) {
        text = bytes = undefined;
        const checked = record === exactRecord;
        exactRecord = undefined;
        const flat = isLargeFlatArray(record);
        // JSON is exact for plain data, and several times cheaper than a V8 serialization per
        // record (each releaseBuffer() is a new external buffer for the garbage collector).
        if (!flat && typeof record !== 'string' && (checked || isJsonExact(record))) {
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
      if (text !== undefined && pos + 2 + LENGTH_MAX_BYTES + UTF8_MAX_BYTES_PER_UNIT * text.length <= buf.length) {
        pendingRecord = pendingText = pendingBytes = undefined;
        buf[pos] = VALUE_BRANCH;
        buf[pos + 1] = DATA_JSON;
        return writeAvroString(text, buf, pos + 2);
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
    decode(buf, pos, settled, views = settled) {
      if (buf[pos] === VALUE_BRANCH && buf[pos + 1] === DATA_JSON) {
        const quick = readAvroString(buf, pos + 2);
        if (quick !== undefined) return { value: JSON.parse(quick), offset: readEnd };
        const { value: text, offset } = STRING_TYPE.decode(buf, pos + 2) as { value: string; offset: number };
        return offset < 0 ? { value: undefined, offset } : { value: JSON.parse(text), offset };
      }
      if (buf[pos] === VALUE_BRANCH) {
        if (buf[pos + 1] !== DATA_V8) return { value: undefined, offset: -1 };
        const { value: length, offset: at } = LONG_TYPE.decode(buf, pos + 2) as { value: number; offset: number };
        if (at < 0 || at + length > buf.length) return { value: undefined, offset: -1 };
        return { value: reader.read(buf, at, length, settled === true), offset: at + length };
      }
      const view = views === true ? decodeBytesView(buf, pos) : undefined;
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
