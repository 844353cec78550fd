/**
 * The records every scenario sends: the 11-field event of fixtures/schemas/event.avsc (made by
 * examples/events.ts, as the demo makes them), and 64 KiB Buffer chunks for byte mode.
 * Deterministic, derived from the sequence number, so every implementation and every repetition
 * sees the same records.
 */
export { eventSchema, events, makeEvent, type Event, type EventKind } from '../../examples/events.js';

export const CHUNK_BYTES = 64 * 1024;

/**
 * A fresh 64 KiB chunk stamped with its sequence number in its first and last 4 bytes (the
 * rest is left as allocated: the bytes do not matter, only that each chunk is its own memory).
 */
export function makeChunk(seq: number): Buffer {
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  chunk.writeUInt32LE(seq, 0);
  chunk.writeUInt32LE(seq, CHUNK_BYTES - 4);
  return chunk;
}

/** The sequence number of a chunk, or -1 when its two stamps disagree (a torn or shifted chunk). */
export function chunkSeq(chunk: Buffer): number {
  if (chunk.length !== CHUNK_BYTES) return -1;
  const seq = chunk.readUInt32LE(0);
  return chunk.readUInt32LE(CHUNK_BYTES - 4) === seq ? seq : -1;
}
