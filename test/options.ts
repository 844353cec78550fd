import test from 'ava';
import avsc from 'avsc';
import { createHopperStreams, type HopperOptions } from '../lib/index.js';
import { tempDataDir } from './helpers/index.js';

const invalid: Array<[string, unknown, ErrorConstructor, RegExp]> = [
  ['maxMemoryBytes', -1, RangeError, /Expected `maxMemoryBytes` to be an integer from 0 and up or Infinity, got `-1` \(number\)/],
  ['maxMemoryBytes', '16MiB', TypeError, /Expected `maxMemoryBytes` to be a number, got `"16MiB"` \(string\)/],
  ['maxMemoryBytes', 1.5, RangeError, /`maxMemoryBytes`.*`1.5`/],
  ['maxMemoryBytes', Number.NaN, TypeError, /`maxMemoryBytes`.*`NaN`/],
  ['maxSegmentBytes', 0, RangeError, /Expected `maxSegmentBytes` to be an integer from 1 and up, got `0`/],
  ['maxSegmentBytes', Infinity, RangeError, /`maxSegmentBytes`.*`Infinity`/],
  ['maxSegments', 0, RangeError, /`maxSegments`.*`0`/],
  ['maxDiskBytes', -5, RangeError, /`maxDiskBytes`.*`-5`/],
  ['staleLockMs', 500, RangeError, /Expected `staleLockMs` to be an integer from 1000 and up, got `500` \(number\)/],
  ['staleLockMs', '30s', TypeError, /Expected `staleLockMs` to be a number, got `"30s"` \(string\)/],
  ['onFull', 'drop', RangeError, /Expected `onFull` to be one of 'block', 'error', 'drop-newest', 'drop-oldest', got `"drop"`/],
  ['signal', 'abort', TypeError, /Expected `signal` to be an AbortSignal, got `"abort"` \(string\)/],
  ['onFull', 1, TypeError, /`onFull`.*`1` \(number\)/],
  ['codec', 'snappy', RangeError, /Expected `codec` to be one of 'null', 'deflate', got `"snappy"`/],
  ['name', '', RangeError, /`name`.*it is empty/],
  ['name', '..', RangeError, /`name`.*directory link/],
  ['name', 'a/b', RangeError, /`name`.*path separator/],
  ['name', 'a\0b', RangeError, /`name`.*NUL/],
  ['name', 'x'.repeat(256), RangeError, /`name`.*longer than 255 bytes/],
  ['name', 42, TypeError, /Expected `name` to be a string, got `42` \(number\)/],
  ['dataDir', 42, TypeError, /Expected `dataDir` to be a non-empty path string, got `42` \(number\)/],
  ['schema', 42, TypeError, /Expected `schema` to be an Avro schema/],
  ['schema', { type: 'record', name: 'Bad', fields: [{ name: 'x', type: 'nope' }] }, TypeError, /Expected `schema` to be a valid Avro schema: .*nope/],
];

for (const [option, value, type, message] of invalid) {
  test(`createHopperStreams() options - ${option}: ${JSON.stringify(value)?.slice(0, 20) ?? String(value)} throws ${type.name} naming the option and value`, (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const error = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, [option]: value } as HopperOptions), { instanceOf: type });
    t.regex(error!.message, message);
    t.deepEqual(dir.files(), [], 'nothing is created when options are refused');
  });
}

test('createHopperStreams() options - unknown option names are refused', (t) => {
  t.throws(() => createHopperStreams({ maxMemory: 5 } as unknown as HopperOptions), {
    instanceOf: TypeError,
    message: /Unknown option `maxMemory`/,
  });
});

test('createHopperStreams() options - schema as JSON object, JSON string or avsc Type', async (t) => {
  const schema = { type: 'record', name: 'A', fields: [{ name: 'n', type: 'int' }] };
  const dir = tempDataDir();
  t.teardown(dir.remove);
  for (const [name, form] of [
    ['object', schema],
    ['string', JSON.stringify(schema)],
    ['type', avsc.Type.forSchema(schema as never)],
  ] as const) {
    const hopper = createHopperStreams<{ n: number }>({ dataDir: dir.dataDir, name, schema: form, maxMemoryBytes: 0 });
    hopper.send({ n: 1 });
    t.throws(() => hopper.send({ n: 'x' } as never), { code: 'ERR_HOPPER_INVALID_RECORD' } as never);
    const closed = hopper.close();
    const out: unknown[] = [];
    for await (const record of hopper.readable) out.push({ ...record });
    await closed;
    t.deepEqual(out, [{ n: 1 }], name);
  }
});

test('createHopperStreams() options - defaults: a temp dataDir, name hopper, 16 MiB in memory', async (t) => {
  const hopper = createHopperStreams<string>();
  t.regex(hopper.path, /hopper-streams-[^/]+\/hopper$/);
  const piece = 'x'.repeat(1024 * 1024);
  for (let i = 0; i < 16; i++) hopper.send(piece);
  t.is(hopper.stats().spilled, 0);
  hopper.send(piece);
  t.is(hopper.stats().spilled, 1);
  t.is(hopper.stats().memoryBytes, 16 * 1024 * 1024);
  hopper.destroy();
});
