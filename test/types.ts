import test from 'ava';
import { createHopperStreams, HopperError, type HopperErrorCode, type HopperStats } from '../lib/index.js';

interface Event {
  id: number;
  kind: 'click' | 'view';
}

const eventSchema = {
  type: 'record',
  name: 'Event',
  fields: [
    { name: 'id', type: 'int' },
    { name: 'kind', type: { type: 'enum', name: 'Kind', symbols: ['click', 'view'] } },
  ],
};

// `tsc` checks this file in `npm test`: the type parameter flows to the writable, send() and the
// readable, and a wrong record is a compile error (the @ts-expect-error line fails the build otherwise).
test('createHopperStreams<T>() - T flows through write, send and async iteration', async (t) => {
  const hopper = createHopperStreams<Event>({ schema: eventSchema, maxMemoryBytes: 0 });
  hopper.writable.write({ id: 1, kind: 'click' });
  hopper.send({ id: 2, kind: 'view' });
  // @ts-expect-error: a record of the wrong shape is a type error, and the schema refuses it at run time
  const refused = t.throws(() => hopper.send({ id: 'three' }), { instanceOf: HopperError });
  t.is(refused?.code, 'ERR_HOPPER_INVALID_RECORD');
  hopper.writable.end();
  const kinds: Array<Event['kind']> = [];
  for await (const event of hopper.readable) {
    const id: number = event.id;
    t.is(typeof id, 'number');
    kinds.push(event.kind);
  }
  const stats: HopperStats = hopper.stats();
  t.deepEqual(kinds, ['click', 'view']);
  t.is(stats.recordsOut, 2);
});

// Checked by `tsc` too: an option's refusal narrows with instanceof (it is a TypeError or RangeError
// as well), and HopperError.is() types the details of each code.
test('HopperError - instanceof and HopperError.is() narrow option refusals: code, option and value are typed', (t) => {
  let caught: unknown;
  try {
    createHopperStreams({ maxMemoryBytes: -1 });
  } catch (err) {
    caught = err;
  }
  if (!(caught instanceof HopperError)) return t.fail('not a HopperError');
  const code: HopperErrorCode = caught.code;
  t.is(code, 'ERR_HOPPER_INVALID_OPTION');
  t.true(caught instanceof RangeError);
  if (!HopperError.is(caught, 'ERR_HOPPER_INVALID_OPTION')) return t.fail('not ERR_HOPPER_INVALID_OPTION');
  const option: string = caught.option;
  const value: unknown = caught.value;
  t.is(option, 'maxMemoryBytes');
  t.is(value, -1);
  const full = new HopperError('ERR_HOPPER_FULL', 'full', { record: 1, option: 'maxSegments' });
  if (HopperError.is<number>(full, 'ERR_HOPPER_FULL')) {
    // The disk cap of ERR_HOPPER_FULL keeps its narrow type.
    const cap: 'maxDiskBytes' | 'maxSegments' | undefined = full.option;
    t.is(cap, 'maxSegments');
  }
});
