import fs from 'node:fs';
import path from 'node:path';
import avsc from 'avsc';
import type { Schema, Type } from 'avsc';
import { JSON_ENVELOPE_SCHEMA, createCodec } from '../codec.js';
import { MAGIC, OWNER_KEY, decodeHeader, type OcfHeader } from '../ocf.js';
import { BlockReader, decodeRecord, type RecordDecoder } from '../segments/block-reader.js';
import { Corruption } from '../segments/results.js';

// Reads a segment file (any Avro Object Container File) block by block, with the block reader the
// segment log uses, and checks everything its framing promises: magic, header, each block's count
// and size, sync markers, and that the records decode and use exactly the block's bytes. `verify`
// reports; `cat` also takes the records.

/** What a scan found: every block sound, or the first problem and the byte offset where it is. */
export type SegmentReport =
  | { file: string; ok: true; records: number; blocks: number; codec: string; channel: string | undefined }
  | { file: string; ok: false; records: number; problem: string; offset: number };

const HEADER_READ_BYTES = 64 * 1024;

/** The schemaless envelope of hopper segments: such files decode as the channel delivered them. */
const ENVELOPE = createCodec(undefined);

/** The envelope of segments written by 0.2.0 and before (no `Value` branch): their records decode as JSON values. */
const JSON_ENVELOPE_TYPE = avsc.Type.forSchema(JSON_ENVELOPE_SCHEMA as unknown as Schema);
const JSON_ENVELOPE = {
  decode(buf: Buffer, pos: number): { value: unknown; offset: number } {
    const result = JSON_ENVELOPE_TYPE.decode(buf, pos);
    const value = result.value as Buffer | string | { json: string } | undefined;
    if (value !== undefined && typeof value === 'object' && !Buffer.isBuffer(value)) result.value = JSON.parse(value.json);
    return result;
  },
};

/** What is wrong with the file: reported, not thrown to the caller. */
class Problem extends Corruption {
  constructor(problem: string, offset: number) {
    super(offset, problem, 'rest-of-segment');
  }
}

/** Reads `length` bytes at `offset`, or fewer at the end of the file. */
function readAt(fd: number, offset: number, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buffer, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return buffer.subarray(0, got);
}

function readHeader(fd: number, size: number): OcfHeader {
  let want = Math.min(HEADER_READ_BYTES, size);
  for (;;) {
    const head = readAt(fd, 0, want);
    if (head.length < MAGIC.length || !head.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new Problem('not an Avro object container file (the magic bytes "Obj\\x01" are missing)', 0);
    }
    const header = decodeHeader(head);
    if (header !== undefined) return header;
    if (want >= size) throw new Problem('the header is cut short or lacks the avro.schema metadata', 0);
    want = Math.min(want * 4, size);
  }
}

function decoderFor(header: OcfHeader): RecordDecoder {
  let type: Type;
  try {
    type = avsc.Type.forSchema(header.schema as Schema);
  } catch (err) {
    throw new Problem(`the header's avro.schema is not a valid Avro schema (${(err as Error).message})`, 0);
  }
  if (type.equals(ENVELOPE.type)) return ENVELOPE;
  return type.equals(JSON_ENVELOPE_TYPE) ? JSON_ENVELOPE : type;
}

/**
 * Reads one segment file, yielding each record as the channel would deliver it (schemaless
 * hopper segments give back strings, Buffers and JSON values), in file order, up to the first
 * problem; returns the report. Never throws for what is in the file: a file that cannot be
 * opened or read is reported as a problem too.
 */
export function* readSegment(file: string): Generator<unknown, SegmentReport, void> {
  let fd: number | undefined;
  let records = 0;
  let offset = 0;
  try {
    // O_NONBLOCK: a FIFO, socket or device named like a segment must not hang the command.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw new Problem('not a regular file (a FIFO, socket, device or directory)', 0);
    const size = stat.size;
    const header = readHeader(fd, size);
    const decoder = decoderFor(header);
    if (header.codec !== 'null' && header.codec !== 'deflate') {
      throw new Problem(`the codec ${JSON.stringify(header.codec)} is not supported`, 0);
    }
    let blocks = 0;
    const reader = new BlockReader(fs);
    reader.reset(fd);
    for (offset = header.length; offset < size; ) {
      const { frame, data } = reader.block(offset, size - offset, size, header.sync, header.codec);
      // Inside a deflated block, positions are in the inflated data: report the block's data start.
      const at = (pos: number): number => offset + frame.dataStart + (header.codec === 'null' ? pos : 0);
      let pos = 0;
      for (let i = 0; i < frame.count; i++) {
        const { value, offset: next } = decodeRecord(decoder, data, pos, false);
        if (next < 0 || next > data.length) {
          throw new Problem(`record ${i + 1} of the block's ${frame.count} does not decode with the file's schema`, at(pos));
        }
        pos = next;
        records++;
        yield value;
      }
      if (pos !== data.length) {
        throw new Problem(`the block's ${frame.count} records use ${pos} of its ${data.length} bytes`, at(pos));
      }
      blocks++;
      offset += frame.end;
    }
    const channel = header.meta[OWNER_KEY]?.toString();
    return { file, ok: true, records, blocks, codec: header.codec, channel };
  } catch (err) {
    if (err instanceof Corruption) return { file, ok: false, records, problem: err.problem, offset: err.offset };
    const { code, syscall } = err as NodeJS.ErrnoException;
    if (syscall === undefined) throw err;
    return { file, ok: false, records, problem: `cannot read the file (${code ?? 'error'} on ${syscall})`, offset };
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Checks every block and record of a segment file. */
export function verifySegment(file: string): SegmentReport {
  const reading = readSegment(file);
  for (;;) {
    const step = reading.next();
    if (step.done) return step.value;
  }
}

/** The files `verify` checks for each argument: a directory's `*.avro` files, sorted; a file as is. */
export function segmentFiles(target: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch {
    return [target]; // readSegment reports why it cannot be read.
  }
  if (!stat.isDirectory()) return [target];
  return fs
    .readdirSync(target)
    .filter((name) => name.endsWith('.avro'))
    .sort()
    .map((name) => path.join(target, name));
}

/** One line per file: `FILE: ok, N records in B blocks` or `FILE: bad at byte O: problem`. */
export function formatReport(report: SegmentReport): string {
  if (!report.ok) return `${report.file}: bad at byte ${report.offset}: ${report.problem}`;
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
  const kind = report.channel === undefined ? 'not a hopper segment' : `channel ${JSON.stringify(report.channel)}`;
  return `${report.file}: ok, ${plural(report.records, 'record')} in ${plural(report.blocks, 'block')} (${report.codec}, ${kind})`;
}
