// Type test of what a user reads: an event the hopper does not emit, or a listener of the wrong
// shape, is told what the hopper's events are (see test-d/events.ts for every method).
import { createHopperStreams } from 'hopper-streams';

const hopper = createHopperStreams<string>();

// @error: is not assignable to parameter of type 'keyof HopperEvents'
hopper.on('nope', () => {});
// @error: Type '{ recordsIn: number; memoryBytes: number; }' is not assignable to type 'string'
hopper.on('spill', (count: string) => void count);
hopper.on('spill', ({ recordsIn }) => void recordsIn);
