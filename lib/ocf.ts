import zlib from 'node:zlib';
import avsc from 'avsc';
import type { Schema } from 'avsc';

// The Avro Object Container File format, as segments use it: a header (magic, metadata, sync
// marker) then blocks of (record count, byte size, records, sync marker). Pure functions over
// bytes: no files, no channel.

export const MAGIC = Buffer.from('Obj\x01', 'latin1');
/** Metadata key that marks a file as a hopper-streams segment; its value is the channel name. */
export const OWNER_KEY = 'hopper.streams';
/** Two zig-zag varint longs (count, size) take at most 10 bytes each, then the 16-byte sync marker. */
export const BLOCK_FRAMING_BYTES = 36;
/** Bytes enough to hold any block's count and size. */
export const BLOCK_HEADER_MAX_BYTES = 20;
export const SYNC_BYTES = 16;

const HEADER_TYPE = avsc.Type.forSchema({
  type: 'record',
  name: 'org.apache.avro.file.Header',
  fields: [
    { name: 'magic', type: { type: 'fixed', name: 'Magic', size: 4 } },
    { name: 'meta', type: { type: 'map', values: 'bytes' } },
    { name: 'sync', type: { type: 'fixed', name: 'Sync', size: 16 } },
  ],
} as Schema);
const LONG_TYPE = avsc.Type.forSchema('long');

export interface OcfHeader {
  /** The writer's schema, parsed from `avro.schema`. */
  schema: unknown;
  codec: string;
  meta: Record<string, Buffer>;
  sync: Buffer;
  /** Bytes the header takes: the first block starts here. */
  length: number;
}

export function encodeHeader(schemaJson: Buffer, codec: string, sync: Buffer, extra: Record<string, string> = {}): Buffer {
  const meta: Record<string, Buffer> = { 'avro.schema': schemaJson, 'avro.codec': Buffer.from(codec) };
  for (const [key, value] of Object.entries(extra)) meta[key] = Buffer.from(value);
  return HEADER_TYPE.toBuffer({ magic: MAGIC, meta, sync });
}

/**
 * Parses a header from the start of `bytes`: undefined when the bytes do not begin with a whole
 * Avro header (wrong magic, cut short, or metadata that is not the schema and codec Avro requires).
 */
export function decodeHeader(bytes: Buffer): OcfHeader | undefined {
  let decoded: { value: { magic: Buffer; meta: Record<string, Buffer>; sync: Buffer }; offset: number };
  try {
    decoded = HEADER_TYPE.decode(bytes, 0) as typeof decoded;
  } catch {
    return undefined;
  }
  const { value, offset } = decoded;
  if (offset < 0 || !value.magic.equals(MAGIC)) return undefined;
  const schemaBytes = value.meta['avro.schema'];
  if (schemaBytes === undefined) return undefined;
  let schema: unknown;
  try {
    schema = JSON.parse(schemaBytes.toString());
  } catch {
    return undefined;
  }
  return { schema, codec: value.meta['avro.codec']?.toString() ?? 'null', meta: value.meta, sync: value.sync, length: offset };
}

/** The framing bytes that go before a block's data: its record count and byte size. */
export function encodeBlockHeader(count: number, size: number): Buffer {
  const bytes = Buffer.allocUnsafe(BLOCK_HEADER_MAX_BYTES);
  const end = LONG_TYPE.encode(size, bytes, LONG_TYPE.encode(count, bytes, 0));
  return bytes.subarray(0, end);
}

/** Where a block's parts lie, relative to the start of the bytes it was parsed from. */
export interface BlockFrame {
  count: number;
  dataStart: number;
  dataEnd: number;
  /** Where the next block starts: after the sync marker. */
  end: number;
}

/** A framing problem and the offset (relative to the bytes parsed) where it was found. */
export interface FrameProblem {
  problem: string;
  offset: number;
}

/**
 * Reads the count and size of the block at `offset`; `available` is how many bytes from `offset`
 * the caller has (the rest of the file). Returns the frame, or what is wrong with it.
 * The data and sync marker are not looked at: see {@link checkSync}.
 */
export function parseBlockHeader(bytes: Buffer, offset: number, available: number): BlockFrame | FrameProblem {
  const view = bytes.subarray(offset, offset + Math.min(BLOCK_HEADER_MAX_BYTES, available));
  const count = LONG_TYPE.decode(view, 0);
  const size = count.offset < 0 ? count : LONG_TYPE.decode(view, count.offset);
  if (count.offset < 0 || size.offset < 0) return { problem: 'the block header is cut short', offset };
  if (count.value < 1) return { problem: `the block record count is ${count.value}`, offset };
  if (size.value < 0) return { problem: `the block size is ${size.value}`, offset };
  const dataStart = offset + size.offset;
  const end = dataStart + size.value + SYNC_BYTES;
  if (end > offset + available) {
    return { problem: `the block size ${size.value} runs past the end of the data (${available - size.offset} bytes left)`, offset };
  }
  return { count: count.value, dataStart, dataEnd: dataStart + size.value, end };
}

export function isProblem<T extends object>(result: T | FrameProblem): result is FrameProblem {
  return 'problem' in result;
}

/** Checks the sync marker after a block's data. */
export function checkSync(bytes: Buffer, frame: BlockFrame, sync: Buffer): FrameProblem | undefined {
  if (bytes.subarray(frame.dataEnd, frame.end).equals(sync)) return undefined;
  return { problem: 'the sync marker does not match the header', offset: frame.dataEnd };
}

/** A block's records, uncompressed, or what is wrong (deflated data that does not inflate, a codec not supported). */
export function blockData(bytes: Buffer, frame: BlockFrame, codec: string): Buffer | FrameProblem {
  const data = bytes.subarray(frame.dataStart, frame.dataEnd);
  if (codec === 'null') return data;
  if (codec === 'deflate') {
    try {
      return zlib.inflateRawSync(data);
    } catch (err) {
      return { problem: `the block does not inflate (${(err as Error).message})`, offset: frame.dataStart };
    }
  }
  return { problem: `the codec ${JSON.stringify(codec)} is not supported`, offset: frame.dataStart };
}

export function compress(data: Buffer, codec: string): Buffer {
  return codec === 'deflate' ? zlib.deflateRawSync(data) : data;
}

/** Worst-case growth of raw deflate over its input (stored blocks: 5 bytes per 16 KiB), plus slack. */
export function compressionSlack(bytes: number, codec: string): number {
  return codec === 'deflate' ? 5 * Math.ceil(bytes / 16_383) + 16 : 0;
}
