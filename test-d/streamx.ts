// Type test: the streamx adapter, as a user imports it.
import { pipelinePromise, Readable, Writable } from 'streamx';
import { createHopperStream, createHopperStreams, HopperError } from 'hopper-streams/streamx';

interface Event {
  seq: number;
}

const hopper = createHopperStreams<Event>({ maxMemoryBytes: 1024 });
const writable: Writable = hopper.writable;
const readable: Readable = hopper.readable;
void [writable, readable];
hopper.writable.write({ seq: 1 });
hopper.send({ seq: 2 });
// @ts-expect-error write() takes a T
hopper.writable.write('a line');
// @ts-expect-error send() takes a T
hopper.send('a line');
for await (const event of hopper.readable) void event.seq;
hopper.on('spill', ({ recordsIn }) => void recordsIn);
// @ts-expect-error the hopper object never emits 'error'
hopper.on('error', () => {});

const duplex = createHopperStream<Event>();
duplex.send({ seq: 3 });
// @ts-expect-error send() takes a T
duplex.send('a line');
await pipelinePromise(Readable.from([{ seq: 1 }]), duplex, new Writable());
const closed: Promise<void> = hopper.close();
void closed;
declare const err: unknown;
if (HopperError.is<Event>(err, 'ERR_HOPPER_FULL')) void err.record.seq;
duplex.on('spill', ({ recordsIn }) => void recordsIn);
duplex.on('data', (record) => void record.seq);
duplex.on('error', (error) => void error.message);
// @ts-expect-error payloads are typed
duplex.on('drop', (count: string) => void count);
