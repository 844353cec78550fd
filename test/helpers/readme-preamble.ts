// What the examples in README.md and docs/*.md leave to the reader: a source, a sink, a transform,
// a consumer. Each block declares the names it uses (`declare const source: Readable;`), so that
// it type-checks on its own, as pasted; test/readme.ts runs a block with this module loaded first
// (`--import`), which puts small, quick values under those names on `globalThis`, so that every
// block runs to its end.
import { Readable, Transform, Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';

interface Event {
  seq: number;
  userId: string;
  path: string;
}

function* events(count: number, from = 0): Generator<Event> {
  for (let seq = from; seq < from + count; seq++) yield { seq, userId: `user-${seq % 7}`, path: `/page/${seq % 13}` };
}

/** The values behind the names the blocks declare; test/readme.ts reads the names from here. */
export const standIns = {
  /** An Avro schema for `Event`. */
  schema: {
    type: 'record',
    name: 'Event',
    fields: [
      { name: 'seq', type: 'long' },
      { name: 'userId', type: 'string' },
      { name: 'path', type: 'string' },
    ],
  },
  /** A record to send. */
  event: { seq: 0, userId: 'user-0', path: '/' } satisfies Event,
  /** An object source of a few hundred events. */
  source: Readable.from(events(500)),
  sourceA: Readable.from(events(100, 0)),
  sourceB: Readable.from(events(100, 100)),
  sourceC: Readable.from(events(100, 200)),
  /** An objectMode sink that takes anything. */
  sink: new Writable({
    objectMode: true,
    write(_record: unknown, _encoding, callback) {
      callback();
    },
  }),
  /** An objectMode transform: one line of text per record. */
  transform: new Transform({
    objectMode: true,
    transform(record: unknown, _encoding, callback) {
      callback(null, `${JSON.stringify(record)}\n`);
    },
  }),
  /** A consumer slower than the source: one turn of the event loop per record. */
  async slowSink(_record: unknown): Promise<void> {
    await nextTurn();
  },
  /** Where a load-shedding producer puts what the hopper refused. */
  shed(_record: Event): void {},
};

/** Record types the blocks use: each block declares its own (a global `Event` exists in @types/node). */
export const typeStandIns = ['Event'];
