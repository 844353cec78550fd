// What the README's examples leave to the reader: a source, a sink, a transform and the record
// type. test/readme.ts imports from here, into each README block, the names the block uses
// without declaring them. Small and quick, so that every block runs to its end.
import { Readable, Transform, Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';

export interface Event {
  seq: number;
  userId: string;
  path: string;
}

export const schema = {
  type: 'record',
  name: 'Event',
  fields: [
    { name: 'seq', type: 'long' },
    { name: 'userId', type: 'string' },
    { name: 'path', type: 'string' },
  ],
};

function* events(count: number, from = 0): Generator<Event> {
  for (let seq = from; seq < from + count; seq++) yield { seq, userId: `user-${seq % 7}`, path: `/page/${seq % 13}` };
}

export const event: Event = { seq: 0, userId: 'user-0', path: '/' };

/** An object source of a few hundred events. */
export const source = Readable.from(events(500));
export const sourceA = Readable.from(events(100, 0));
export const sourceB = Readable.from(events(100, 100));
export const sourceC = Readable.from(events(100, 200));

/** An objectMode sink that takes anything. */
export const sink = new Writable({
  objectMode: true,
  write(_record: unknown, _encoding, callback) {
    callback();
  },
});

/** An objectMode transform: one line of text per record. */
export const transform = new Transform({
  objectMode: true,
  transform(record: unknown, _encoding, callback) {
    callback(null, `${JSON.stringify(record)}\n`);
  },
});

/** A consumer slower than the source: one turn of the event loop per record. */
export async function slowSink(_record: unknown): Promise<void> {
  await nextTurn();
}

/** Where a load-shedding producer puts what the hopper refused. */
export const shed = (_record: Event): void => {};
