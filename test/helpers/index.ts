import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { Schema } from 'avsc';
import { within } from './wait.js';

/** A fresh directory for one test, and a function that lists every file left in it. */
export function tempDataDir(): { dataDir: string; files: () => string[]; remove: () => void } {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-test-'));
  const files = (): string[] => {
    const found: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else found.push(path.relative(dataDir, full));
      }
    };
    walk(dataDir);
    return found.sort();
  };
  return { dataDir, files, remove: () => fs.rmSync(dataDir, { recursive: true, force: true }) };
}

export async function collect<T>(readable: Readable | AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const record of readable as AsyncIterable<T>) out.push(record);
  return out;
}

/** Reads `readable` to its end or its error: the records it gave, and the error it failed with. */
export async function readToFailure<T>(readable: AsyncIterable<T>): Promise<{ records: T[]; error: unknown }> {
  const records: T[] = [];
  try {
    for await (const record of readable) records.push(record);
  } catch (error) {
    return { records, error };
  }
  return { records, error: undefined };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Avro schema of the small record most tests use. */
export const pointSchema: Schema = {
  type: 'record',
  name: 'Point',
  fields: [
    { name: 'seq', type: 'long' },
    { name: 'label', type: 'string' },
    { name: 'score', type: 'double' },
  ],
};

export interface Point {
  seq: number;
  label: string;
  score: number;
}

export function point(seq: number): Point {
  return { seq, label: `p-${seq}-${'x'.repeat(seq % 13)}`, score: seq / 7 };
}

/** Avro decodes records as instances of a generated class: compare their fields as plain objects. */
export function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * Resolves once the blocks written so far are on disk: the block being filled is handed to the
 * writer at the next turn of the event loop, and the writer writes in the background until
 * nothing waits (`stats().pendingDiskBytes` is 0).
 */
export async function diskSettled(hopper: { stats(): { pendingDiskBytes: number } }): Promise<void> {
  await within(
    (async () => {
      do await nextTurn();
      while (hopper.stats().pendingDiskBytes > 0);
    })(),
    'the disk catching up with the writes',
  );
}

/** Resolves once `condition()` holds, checked at each turn of the event loop (background I/O completes between turns). */
export async function until(condition: () => boolean, what: string): Promise<void> {
  await within(
    (async () => {
      while (!condition()) await nextTurn();
    })(),
    what,
  );
}
