import { isAscii } from 'node:buffer';
import v8 from 'node:v8';
import { BY_REFERENCE_BYTES } from './record-codec.js';
import { VIEW_TYPES } from './size.js';

// Values that JSON does not give back exactly, for the schemaless codec (envelope-codec.ts): written
// in structuredClone's format (node:v8), typed arrays and DataViews as their class and their own
// bytes; a serializer reused for a block and a deserializer per block, with what makes a record
// readable alone; and the UTF-8 bytes of a long string taken from its V8 serialization.

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
export const V8_HEADER = (() => {
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
export class ValueWriter {
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
export function utf8Of(text: string): Buffer {
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
export function serializeAlone(record: unknown, header: boolean): Buffer {
  const serializer = new ValueSerializer();
  if (header) serializer.writeHeader();
  serializer.writeValue(record);
  return serializer.releaseBuffer();
}

export function readAlone(buf: Buffer, at: number, length: number): unknown {
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
export class ValueReader {
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
