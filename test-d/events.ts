// Type test: the hopper object takes listeners only for the events it emits, with typed payloads.
import { createHopperStream, createHopperStreams, type DropEvent } from 'hopper-streams';

interface Event {
  seq: number;
}

const hopper = createHopperStreams<Event>();
hopper.on('spill', ({ recordsIn, memoryBytes }) => void (recordsIn + memoryBytes));
hopper.on('caughtUp', ({ recordsIn, recordsOut }) => void (recordsIn + recordsOut));
hopper.once('full', ({ reason }) => void reason.length);
hopper.on('segment', (segment) => void (segment.action === 'sealed' ? segment.bytes : segment.file));
const onDrop = (drop: DropEvent): void => void drop.count;
hopper.on('drop', onDrop).off('drop', onDrop);
hopper.prependListener('corrupt', ({ file, offset, count, problem }) => void [file, offset, count, problem]);
hopper.addListener('fault', ({ operation, error }) => void [operation, error.message]);
hopper.removeListener('drop', onDrop);
// @ts-expect-error the hopper object never emits 'error': failures come on its readable
hopper.on('error', () => {});
// @ts-expect-error not an event of the hopper
hopper.on('nope', () => {});
// @ts-expect-error payloads are typed
hopper.on('spill', (count: string) => void count);
// @ts-expect-error once() is typed the same way
hopper.once('finish', () => {});
hopper.readable.on('error', (err) => void err.message);

// The Duplex emits both a Duplex's events and the hopper's.
const duplex = createHopperStream<Event>();
duplex.on('error', (err) => void err.message);
duplex.on('data', (record) => void record.seq);
duplex.on('finish', () => {}).on('spill', ({ recordsIn }) => void recordsIn);
duplex.once('drop', onDrop);
// @ts-expect-error not an event of the Duplex
duplex.on('nope', () => {});
// @ts-expect-error payloads are typed
duplex.on('data', (record: string) => void record);
