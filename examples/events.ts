/**
 * The event workload the demo and the benchmarks send: records of fixtures/schemas/event.avsc,
 * derived from their sequence number (deterministic, so runs compare) and cheap to make (so the
 * producer stays fast).
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
  return JSON.parse(fs.readFileSync(new URL('../fixtures/schemas/event.avsc', import.meta.url), 'utf8')) as Schema;
}

/** The event with sequence number `seq` (from 1). About 230 bytes as JSON, 90 as Avro. */
export function makeEvent(seq: number, epochMs = EPOCH_MS): Event {
  const h = Math.imul(seq, 2654435761) >>> 0;
  const kind = pick(KINDS, h);
  const tagCount = h % 3;
  const tags: string[] = [];
  for (let i = 0; i < tagCount; i++) tags.push(pick(TAGS, (h >>> (4 + i * 3)) + i));
  return {
    seq,
    timestamp: epochMs + Math.floor(seq / 10),
    userId: `user-${(h % 50_000).toString().padStart(6, '0')}`,
    sessionId: `s-${(h >>> 8).toString(16).padStart(6, '0')}-${(seq >>> 6).toString(36)}`,
    kind,
    path: pick(PATHS, h >>> 3),
    status: kind === 'ERROR' ? pick(ERROR_STATUSES, h >>> 5) : 200,
    durationMs: (h % 100_000) / 100 + 0.25,
    bytes: 512 + (h % 65_536),
    tags,
    referrer: h % 4 === 0 ? pick(REFERRERS, h >>> 7) : null,
  };
}

/** `count` events from sequence number `first`. */
export function* events(count: number, first = 1, epochMs = EPOCH_MS): Generator<Event> {
  for (let seq = first; seq < first + count; seq++) yield makeEvent(seq, epochMs);
}
