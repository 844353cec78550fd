// Type test: the Node adapter as a strict TypeScript user meets it, through the built package.
// `npm run test:types` checks this folder with each @types/node major; a line under
// `@ts-expect-error` must fail to compile, or the check fails.
import { type Duplex, PassThrough, type Readable, type Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  createHopperStream,
  createHopperStreams,
  type HopperDuplex,
  type HopperReadable,
  type HopperStats,
  type HopperStreams,
  type HopperWritable,
} from 'hopper-streams';

interface Event {
  seq: number;
  userId: string;
}

declare const source: Readable;
declare const sink: Writable;
declare const transform: Transform;
const event: Event = { seq: 1, userId: 'a' };

// The Duplex in pipeline() from node:stream/promises, as the README uses it.
await pipeline(source, createHopperStream({ maxMemoryBytes: 8 * 1024 ** 2 }), transform, sink);
await pipeline(source, createHopperStream<Event>(), sink);
await pipeline(source, createHopperStream<Event>(), new PassThrough({ objectMode: true }), sink);
// ...with generator stages after it, annotated or not, and a generator source and function destination.
await pipeline(
  source,
  createHopperStream<Event>(),
  async function* (events: AsyncIterable<Event>) {
    for await (const e of events) yield `${e.seq}\n`;
  },
  sink,
);
await pipeline(
  source,
  createHopperStream<Event>(),
  async function* (events) {
    for await (const e of events) yield e;
  },
  sink,
);
await pipeline(
  async function* () {
    yield event;
  },
  createHopperStream<Event>(),
  async (events: AsyncIterable<Event>) => {
    for await (const e of events) void e.userId;
  },
);

// The pair: the readable is a typed source, the writable a destination for pipe() and pipeline().
const hopper: HopperStreams<Event> = createHopperStreams<Event>({ maxMemoryBytes: 1024 });
source.pipe(hopper.writable);
source.pipe(hopper.sender());
await pipeline(source, hopper.writable);
await pipeline(source, transform, hopper.sender());
await pipeline(
  hopper.readable,
  async function* (events) {
    for await (const e of events) {
      const seq: number = e.seq;
      yield `${seq}\n`;
    }
  },
  sink,
);
hopper.readable.pipe(sink);
for await (const e of hopper.readable) {
  const userId: string = e.userId;
  void userId;
}
const read: Event | null = hopper.readable.read();
void read;

// write(), end() and send() take a T.
hopper.writable.write(event);
hopper.writable.write(event, (err) => void err);
hopper.writable.write(event, 'utf8');
hopper.writable.end(event);
hopper.writable.end(() => {});
hopper.sender().write(event);
hopper.send(event);
createHopperStream<Event>().write(event);
createHopperStream<Event>().send(event);
// @ts-expect-error a record of another shape
hopper.writable.write({ seq: 'one' });
// @ts-expect-error a string is not an Event
hopper.writable.write('a line');
// @ts-expect-error a Buffer is not an Event
hopper.writable.write(Buffer.from('bytes'));
// @ts-expect-error end() takes a T too
hopper.writable.end(42);
// @ts-expect-error senders are typed like the writable
hopper.sender().write({ userId: 'a' });
// @ts-expect-error send() takes a T
hopper.send({ seq: 1 });
// @ts-expect-error the Duplex's write() takes a T
createHopperStream<Event>().write('a line');
// @ts-expect-error the Duplex's send() takes a T
createHopperStream<Event>().send(7);

// An untyped hopper takes anything, as a PassThrough does.
createHopperStreams().writable.write('a line');
createHopperStreams().send(Buffer.from('bytes'));

// The declared classes are node:stream's, as the runtime's are.
const writable: Writable = hopper.writable;
const readable: Readable = hopper.readable;
const duplex: Duplex = createHopperStream<Event>();
const typedWritable: HopperWritable<Event> = hopper.sender();
const typedReadable: HopperReadable<Event> = hopper.readable;
const typedDuplex: HopperDuplex<Event> = createHopperStream<Event>();
const stats: HopperStats = typedDuplex.stats();
const path: string = hopper.path;
const closed: Promise<void> = hopper.close();
void [writable, readable, duplex, typedWritable, typedReadable, stats, path, closed];
// @ts-expect-error the readable side of a pair is not a Writable
const notWritable: Writable = hopper.readable;
void notWritable;
