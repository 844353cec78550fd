import test, { type ExecutionContext } from 'ava';
import avsc from 'avsc';
import { createHopperStreams, HopperError, type HopperOptions } from '../lib/index.js';
import { tempDataDir } from './helpers/index.js';

/** Checks a refusal of an option: a HopperError with its code and details, and the TypeError or RangeError it always was. */
function assertInvalidOption(t: ExecutionContext, err: unknown, type: ErrorConstructor, option: string, value: unknown): void {
  t.true(err instanceof type, `a ${type.name}`);
  t.true(err instanceof HopperError, 'a HopperError');
  t.true(HopperError.is(err, 'ERR_HOPPER_INVALID_OPTION'));
  const refused = err as HopperError;
  t.is(refused.code, 'ERR_HOPPER_INVALID_OPTION');
  t.is(refused.name, type.name, 'named as before');
  t.is(refused.option, option);
  t.true(Object.hasOwn(refused, 'value'), 'the value received, even undefined');
  t.is(refused.value, value);
}

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
  test(`createHopperStreams() options - ${option}: ${JSON.stringify(value)?.slice(0, 20) ?? String(value)} throws ${type.name} ERR_HOPPER_INVALID_OPTION naming the option and value`, (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const error = t.throws(() => createHopperStreams({ dataDir: dir.dataDir, [option]: value } as HopperOptions), { instanceOf: type });
    t.regex(error!.message, message);
    assertInvalidOption(t, error, type, option, value);
    t.deepEqual(dir.files(), [], 'nothing is created when options are refused');
  });
}

// Refusals that depend on other options too (the durable ones) or name another option than the one given.
const together: Array<[string, HopperOptions, ErrorConstructor, string, unknown, RegExp]> = [
  ['durable: true without dataDir', { durable: true, name: 'x', dataDir: undefined }, RangeError, 'dataDir', undefined, /`dataDir` with `durable: true`/],
  ['durable: true without name', { durable: true }, RangeError, 'name', undefined, /`name` with `durable: true`/],
  ['fsync without durable', { fsync: 'always' }, RangeError, 'fsync', 'always', /`fsync` only with `durable: true`/],
  ['fsyncIntervalMs with durable: false', { durable: false, fsyncIntervalMs: 5 }, RangeError, 'fsyncIntervalMs', 5, /`fsyncIntervalMs` only with/],
  ['ack without durable', { ack: 'manual' }, RangeError, 'ack', 'manual', /`ack` only with `durable: true`/],
  ["onFull: 'drop-oldest' with durable", { durable: true, name: 'x', onFull: 'drop-oldest' }, RangeError, 'onFull', 'drop-oldest', /`onFull`.*drop-oldest/],
  ['fsyncIntervalMs above 60000', { durable: true, name: 'x', fsyncIntervalMs: 60_001 }, RangeError, 'fsyncIntervalMs', 60_001, /1 to 60000/],
  ['fsyncIntervalMs 0', { durable: true, name: 'x', fsyncIntervalMs: 0 }, RangeError, 'fsyncIntervalMs', 0, /`fsyncIntervalMs`/],
  ['fsyncIntervalMs a string', { durable: true, name: 'x', fsyncIntervalMs: '1s' as never }, TypeError, 'fsyncIntervalMs', '1s', /to be a number/],
  ['fsync not a policy', { durable: true, name: 'x', fsync: 'sometimes' as never }, RangeError, 'fsync', 'sometimes', /'always', 'batch', 'never'/],
  ['ack not a mode', { durable: true, name: 'x', ack: 'auto' as never }, RangeError, 'ack', 'auto', /'delivered', 'manual'/],
  ['durable not a boolean', { durable: 'yes' as never, name: 'x' }, TypeError, 'durable', 'yes', /`durable` to be a boolean/],
  ['maxPendingDiskBytes -1', { maxPendingDiskBytes: -1 }, RangeError, 'maxPendingDiskBytes', -1, /`maxPendingDiskBytes`.*`-1`/],
  ['an unknown option', { maxMemory: 5 } as HopperOptions, TypeError, 'maxMemory', 5, /Unknown option `maxMemory`/],
  ['dataDir empty', { dataDir: '' }, TypeError, 'dataDir', '', /`dataDir` to be a non-empty path string/],
];

for (const [title, options, type, option, value, message] of together) {
  test(`createHopperStreams() options - ${title} throws ${type.name} ERR_HOPPER_INVALID_OPTION naming \`${option}\``, (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const given = { dataDir: dir.dataDir, ...options };
    const error = t.throws(() => createHopperStreams(given));
    t.regex(error!.message, message);
    assertInvalidOption(t, error, type, option, value);
    t.deepEqual(dir.files(), [], 'nothing is created when options are refused');
  });
}

test('createHopperStreams() options - options that are not an object: TypeError ERR_HOPPER_INVALID_ARGUMENT', (t) => {
  for (const options of [42, null, 'big']) {
    const error = t.throws(() => createHopperStreams(options as never), { instanceOf: TypeError, message: /Expected options to be an object/ });
    t.true(error instanceof HopperError);
    t.true(HopperError.is(error, 'ERR_HOPPER_INVALID_ARGUMENT'));
    const refused = error as HopperError;
    t.is(refused.argument, 'options');
    t.is(refused.value, options);
  }
});

test('createHopperStreams() options - an invalid schema is ERR_HOPPER_INVALID_OPTION with avsc error as its cause', (t) => {
  const schema = { type: 'record', name: 'Bad', fields: [{ name: 'x', type: 'nope' }] };
  const error = t.throws(() => createHopperStreams({ schema }), { instanceOf: TypeError });
  assertInvalidOption(t, error, TypeError, 'schema', schema);
  t.regex(String((error!.cause as Error).message), /nope/);
});

test('HopperError[Symbol.hasInstance]() - option errors are HopperErrors; subclasses of HopperError and look-alikes keep the ordinary instanceof', (t) => {
  class RetryableError extends HopperError {}
  const refused = t.throws(() => createHopperStreams({ maxMemoryBytes: -1 }));
  t.true(refused instanceof HopperError);
  t.false(refused instanceof RetryableError, 'a subclass does not claim the option errors');
  const own = new RetryableError('ERR_HOPPER_IO', 'x');
  t.true(own instanceof RetryableError);
  t.true(own instanceof HopperError);
  t.false(new HopperError('ERR_HOPPER_IO', 'x') instanceof RetryableError);
  t.false(new Error('x') instanceof HopperError);
  t.false((null as unknown) instanceof HopperError);
  t.false(HopperError.is(undefined));
  const lookalike = Object.assign(new RangeError('x'), { code: 'ERR_HOPPER_INVALID_OPTION', option: 'maxMemoryBytes', value: -1 });
  t.false(lookalike instanceof HopperError, 'only errors made by hopper-streams');
  t.false(HopperError.is(lookalike));
  t.false(HopperError.is(new TypeError('x')));
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
