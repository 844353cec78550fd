/**
 * The records every scenario sends: the 11-field event of fixtures/schemas/event.avsc (as
 * examples/demo.ts makes them), and 64 KiB Buffer chunks for byte mode. Deterministic, derived
 * from the sequence number, so every implementation and every repetition sees the same records.
 */
import fs from 'node:fs';
import type { Schema } from 'avsc';

export type EventKind = 'PAGE_VIEW' | 'CLICK' | 'API_CALL' | 'ERROR';

/** A record of fixtures/schemas/event.avsc. */
export interface Event {
  seq: number;
  timestamp: number;
  userId: string;
  sessionId: string;
  kind: EventKind;
  path: string;
  status: number;
  durationMs: number;
  bytes: number;
  tags: string[];
  referrer: string | null;
}

export const CHUNK_BYTES = 64 * 1024;

/** Fixed, so that runs on different days encode the same bytes. */
const EPOCH_MS = 1_767_225_600_000;

const KINDS: readonly EventKind[] = ['PAGE_VIEW', 'PAGE_VIEW', 'PAGE_VIEW', 'CLICK', 'CLICK', 'API_CALL', 'API_CALL', 'ERROR'];
const PATHS = ['/', '/search', '/cart', '/checkout', '/api/v1/items', '/api/v1/users/me', '/login', '/help/shipping'];
const TAGS = ['mobile', 'desktop', 'beta', 'eu', 'us', 'returning', 'campaign-spring'];
const REFERRERS = ['https://www.google.com/', 'https://news.ycombinator.com/', 'https://t.co/abc123'];
const ERROR_STATUSES = [500, 502, 503, 404];

function pick<T>(items: readonly T[], n: number): T {
  return items[n % items.length]!;
}

export function eventSchema(): Schema {
  return JSON.parse(fs.readFileSync(new URL('../../fixtures/schemas/event.avsc', import.meta.url), 'utf8')) as Schema;
}

/** The event with sequence number `seq` (from 1). About 230 bytes as JSON, 90 as Avro. */
export function makeEvent(seq: number): Event {
  const h = Math.imul(seq, 2654435761) >>> 0;
  const kind = pick(KINDS, h);
  const tagCount = h % 3;
  const tags: string[] = [];
  for (let i = 0; i < tagCount; i++) tags.push(pick(TAGS, (h >>> (4 + i * 3)) + i));
  return {
    seq,
    timestamp: EPOCH_MS + Math.floor(seq / 10),
    userId: `user-${(h % 50_000).toString().padStart(6, '0')}`,
    sessionId: `s-${(h >>> 8).toString(16).padStart(6, '0')}-${(seq >>> 6).toString(36)}`,
    kind,
    path: pick(PATHS, h >>> 3),
    status: kind === 'ERROR' ? pick(ERROR_STATUSES, h >>> 5) : 200,
    durationMs: ((h % 100_000) / 100) + 0.25,
    bytes: 512 + (h % 65_536),
    tags,
    referrer: h % 4 === 0 ? pick(REFERRERS, h >>> 7) : null,
  };
}

export function* events(count: number, first = 1): Generator<Event> {
  for (let seq = first; seq < first + count; seq++) yield makeEvent(seq);
}

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
