// Type test: the hopper object takes listeners only for the events it emits, with typed payloads.
import type { EventEmitter } from 'node:events';
import { createHopperStream, createHopperStreams, type DropEvent, type HopperEvents } from 'hopper-streams';

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
// @ts-expect-error a 'drop' listener does not take a 'spill'
hopper.on('spill', onDrop);
// @ts-expect-error a listener takes the event's arguments and no more
hopper.on('drop', (drop: DropEvent, extra: number) => void [drop, extra]);
// @ts-expect-error every listener method is typed: off()
hopper.off('nope', () => {});
// @ts-expect-error every listener method is typed: addListener()
hopper.addListener('spill', (count: string) => void count);
// @ts-expect-error every listener method is typed: removeListener()
hopper.removeListener('finish', () => {});
// @ts-expect-error every listener method is typed: prependListener()
hopper.prependListener('data', () => {});
// @ts-expect-error every listener method is typed: prependOnceListener()
hopper.prependOnceListener('corrupt', (problem: number) => void problem);
hopper.readable.on('error', (err) => void err.message);

// The hopper object is an EventEmitter<HopperEvents>: emit() and listeners() are typed too.
const emitter: EventEmitter<HopperEvents> = hopper;
const spills: Array<(event: HopperEvents['spill'][0]) => void> = hopper.listeners('spill');
void [emitter, spills, hopper.listenerCount('drop')];
hopper.emit('drop', { count: 1, policy: 'drop-oldest', reason: 'a test' });
// @ts-expect-error emit() takes the event's payload
hopper.emit('spill', 3);

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
