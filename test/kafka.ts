import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import avsc from 'avsc';
import kafkajs, { type Producer } from 'kafkajs';
import { createRequire } from 'node:module';
import { createHopperStreams } from '../lib/index.js';
import { HopperError } from '../lib/errors.js';
import {
  createKafkaSink,
  type KafkaMessage,
  type KafkaProducer,
  type KafkaProducerRecord,
  type KafkaRecordMetadata,
  type KafkaRetryEvent,
} from '../lib/kafka.js';
import { isRetriableSendError, retryDelay } from '../lib/kafka-policy.js';
import { END_WITH_PARENT } from './helpers/children.js';
import { startMock, readTopic, type MockCluster } from './helpers/kafka-mock.js';
import { nextTurn, plain, tempDataDir } from './helpers/index.js';
import { eventSchema as exampleSchema, events, type Event as ExampleEvent } from '../examples/events.js';

const root = fileURLToPath(new URL('..', import.meta.url));

// kafkajs is CommonJS whose error classes Node cannot see as named exports.
const {
  Kafka,
  KafkaJSConnectionError,
  KafkaJSNonRetriableError,
  KafkaJSNumberOfRetriesExceeded,
  KafkaJSProtocolError,
  KafkaJSSASLAuthenticationError,
  KafkaJSTimeout,
  logLevel,
} = kafkajs;
// kafkajs' own table of Kafka protocol errors (code, type, retriable), to make errors as it does.
const protocolErrors = createRequire(import.meta.url)('kafkajs/src/protocol/error.js') as { createErrorFromCode(code: number): Error };
// kafkajs' type definitions leave out constructor arguments its classes take (a message, a cause).
const NonRetriable = KafkaJSNonRetriableError as unknown as new (e: Error | string, options?: { cause?: Error }) => Error;
const Timeout = KafkaJSTimeout as unknown as new (message: string) => Error;
const SASLAuthentication = KafkaJSSASLAuthenticationError as unknown as new (message: string) => Error;

interface Event {
  userId: string;
  seq: number;
  payload: string;
}

const eventSchema = {
  type: 'record',
  name: 'Event',
  fields: [
    { name: 'userId', type: 'string' },
    { name: 'seq', type: 'long' },
    { name: 'payload', type: 'string' },
  ],
} as const;
const eventType = avsc.Type.forSchema(eventSchema as unknown as avsc.Schema);

const USERS = 7;
function event(i: number): Event {
  return { userId: `user-${i % USERS}`, seq: i, payload: `event ${i} ${'x'.repeat(i % 50)}` };
}

async function mockFor(t: { teardown(fn: () => Promise<void> | void): void }, topic: string): Promise<MockCluster> {
  const mock = await startMock(t, [`${topic}:3`]);
  return mock;
}

/** A kafkajs producer against the mock: not idempotent (the mock needs that), quiet, quick to give up so the sink's own retries are seen. */
async function producerFor(t: { teardown(fn: () => Promise<void> | void): void }, brokers: string[]): Promise<Producer> {
  const kafka = new Kafka({
    clientId: 'hopper-test',
    brokers,
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1_000,
    retry: { retries: 1, initialRetryTime: 50 },
  });
  const producer = kafka.producer({ idempotent: false, allowAutoTopicCreation: false });
  await producer.connect();
  t.teardown(() => producer.disconnect());
  return producer;
}

/** Decodes a Confluent-framed Avro value: magic byte, schema id, body. */
function unframe(value: Buffer | null): { magic: number; schemaId: number; record: Event } {
  if (value === null) throw new Error('a message without a value');
  return { magic: value[0] as number, schemaId: value.readInt32BE(1), record: plain(eventType.fromBuffer(value.subarray(5)) as Event) };
}

const exampleType = avsc.Type.forSchema(exampleSchema());
function unframeEvent(value: Buffer | null): { schemaId: number; record: ExampleEvent } {
  if (value === null || value[0] !== 0) throw new Error('not Confluent-framed');
  return { schemaId: value.readInt32BE(1), record: plain(exampleType.fromBuffer(value.subarray(5)) as ExampleEvent) };
}

/** Checks that every user's events came out of Kafka in the order written, and each once. */
function perKeyOrder(records: Array<{ key: string; seq: number }>): boolean {
  const last = new Map<string, number>();
  for (const { key, seq } of records) {
    if ((last.get(key) ?? -1) >= seq) return false;
    last.set(key, seq);
  }
  return true;
}

test.serial('createKafkaSink() - every record reaches the topic once, per-key order holds, values are Confluent-framed Avro', async (t) => {
  const mock = await mockFor(t, 'events');
  const producer = await producerFor(t, mock.brokers);
  const total = 3_000;
  const hopper = createHopperStreams<Event>({ schema: eventSchema, maxMemoryBytes: 64 * 1024 });
  const sink = createKafkaSink<Event>({ producer, topic: 'events', key: (e) => e.userId, value: { schema: eventSchema, schemaId: 42 }, maxBatchRecords: 200 });
  let ackedRecords = 0;
  const offsets = new Map<number, string[]>();
  sink.on('ack', ({ records, topic, partitions }) => {
    t.is(topic, 'events');
    ackedRecords += records.length;
    for (const { partition, baseOffset } of partitions) offsets.set(partition, [...(offsets.get(partition) ?? []), baseOffset ?? '?']);
  });
  const done = pipeline(hopper.readable, sink);
  for (let i = 0; i < total; i++) hopper.send(event(i));
  hopper.writable.end();
  await done;

  t.deepEqual(sink.stats(), { sent: total, acked: total, retries: 0, inFlight: 0 });
  t.is(ackedRecords, total);
  t.true(
    [...offsets.values()].every((list) => list.every((offset, i) => i === 0 || BigInt(offset) > BigInt(list[i - 1] as string))),
    'base offsets grow per partition',
  );

  const { messages, stored } = await readTopic(mock.brokers, 'events', total);
  t.is(stored, total, 'the topic holds each record once');
  const decoded = messages.map((m) => ({ key: String(m.key), ...unframe(m.value) }));
  t.true(decoded.every((d) => d.magic === 0 && d.schemaId === 42));
  t.true(decoded.every((d) => d.key === d.record.userId));
  t.deepEqual(
    decoded.map((d) => d.record).sort((a, b) => a.seq - b.seq),
    Array.from({ length: total }, (_, i) => event(i)),
  );
  t.true(perKeyOrder(decoded.map((d) => ({ key: d.key, seq: d.record.seq }))), "each user's events are in write order");
});

test.serial(
  'createKafkaSink() - an outage: the hopper spills, nothing is acknowledged while the brokers are down, all arrives once they are back',
  async (t) => {
    const mock = await mockFor(t, 'outage');
    const producer = await producerFor(t, mock.brokers);
    const hopper = createHopperStreams<Event>({ schema: eventSchema, maxMemoryBytes: 32 * 1024 });
    const sink = createKafkaSink<Event>({
      producer,
      topic: 'outage',
      key: (e) => e.userId,
      value: { schema: eventSchema, schemaId: 7 },
      maxBatchRecords: 100,
      retry: { initialMs: 50, maxMs: 400 },
    });
    let brokersDown = false;
    let ackedWhileDown = 0;
    let retries = 0;
    sink.on('ack', ({ records }) => {
      if (brokersDown) ackedWhileDown += records.length;
    });
    sink.on('retry', () => retries++);
    const done = pipeline(hopper.readable, sink);

    // Before: 1000 records go through and are acknowledged.
    let written = 0;
    const writeSome = (n: number): void => {
      for (const end = written + n; written < end; written++) hopper.send(event(written));
    };
    writeSome(1_000);
    while (sink.stats().acked < 1_000) await once(sink, 'ack');

    await mock.down();
    brokersDown = true;
    const ackedBefore = sink.stats().acked;
    // During: the producer keeps writing, never held back, until the sink has retried a few times
    // and the hopper has paged records to disk.
    let spills = 0;
    hopper.on('spill', () => spills++);
    while (retries < 3 || spills === 0 || written < 6_000) {
      writeSome(200);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    t.is(sink.stats().acked, ackedBefore, 'acked does not move while the brokers are down');
    t.true(hopper.stats().spilled > 0, 'the hopper spilled');
    t.true(sink.stats().inFlight > 0);
    brokersDown = false;
    await mock.up();

    writeSome(1_000);
    hopper.writable.end();
    await done;
    t.is(ackedWhileDown, 0);
    t.is(sink.stats().acked, written);
    t.true(sink.stats().retries >= 3);

    const { messages, stored } = await readTopic(mock.brokers, 'outage', written);
    t.is(stored, written, 'nothing was written twice');
    const seqs = messages.map((m) => unframe(m.value).record.seq).sort((a, b) => a - b);
    t.deepEqual(
      seqs,
      Array.from({ length: written }, (_, i) => i),
      'nothing was lost',
    );
    t.true(perKeyOrder(messages.map((m) => ({ key: String(m.key), seq: unframe(m.value).record.seq }))));
  },
);

test.serial(
  'createKafkaSink() - a topic the brokers refuse (authorization, unknown) fails the sink through kafkajs with the records not acknowledged',
  async (t) => {
    const mock = await startMock(t, ['denied', 'missing'], { topicErrors: { denied: 29, missing: 3 } });
    const producer = await producerFor(t, mock.brokers);
    for (const [topic, type] of [
      ['denied', 'TOPIC_AUTHORIZATION_FAILED'],
      ['missing', 'UNKNOWN_TOPIC_OR_PARTITION'],
    ] as const) {
      const sink = createKafkaSink<string>({ producer, topic, value: (s) => Buffer.from(s), retry: { initialMs: 10, maxMs: 10 } });
      sink.write('a');
      sink.write('b');
      sink.write('c');
      const [err] = (await once(sink, 'error')) as [HopperError];
      t.is(err.code, 'ERR_HOPPER_KAFKA_SEND', topic);
      t.deepEqual(err.records, ['a', 'b', 'c']);
      let cause = err.cause as { type?: string; cause?: unknown } | undefined;
      while (cause && cause.type === undefined) cause = cause.cause as typeof cause;
      t.is(cause?.type, type);
      t.deepEqual(sink.stats(), { sent: 1, acked: 0, retries: 0, inFlight: 0 });
    }
  },
);

// --- With a fake producer: the sink's own logic, one behaviour at a time. ---

interface FakeSend {
  request: KafkaProducerRecord;
  resolve: (result?: KafkaRecordMetadata[]) => void;
  reject: (err: unknown) => void;
}

/** A producer whose sends wait until the test settles them. */
function manualProducer(): KafkaProducer & { sends: FakeSend[]; next(): Promise<FakeSend> } {
  const sends: FakeSend[] = [];
  let waiter: (() => void) | undefined;
  return {
    sends,
    send(request) {
      return new Promise((resolve, reject) => {
        sends.push({
          request: { ...request, messages: [...request.messages] },
          resolve: (result) => resolve(result ?? [{ topicName: request.topic, partition: 0, errorCode: 0, baseOffset: '0' }]),
          reject,
        });
        waiter?.();
      });
    },
    async next() {
      const seen = sends.length;
      while (sends.length === seen) await new Promise<void>((resolve) => (waiter = resolve));
      return sends[sends.length - 1] as FakeSend;
    },
  };
}

/** A producer that answers at once, failing the sends named in `failures` (by call number, from 1). */
function scriptedProducer(failures: Map<number, unknown> = new Map()): KafkaProducer & { requests: KafkaProducerRecord[] } {
  const requests: KafkaProducerRecord[] = [];
  return {
    requests,
    async send(request) {
      requests.push({ ...request, messages: [...request.messages] });
      const failure = failures.get(requests.length);
      if (failure !== undefined) throw failure;
      return [{ topicName: request.topic, partition: 0, errorCode: 0, baseOffset: String(requests.length) }];
    },
  };
}

const text = (message: KafkaMessage): string => String(message.value);
const strings = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `r${from + i}`);
const tooLarge = (): Error => new KafkaJSProtocolError(protocolErrors.createErrorFromCode(10));

test.serial('createKafkaSink() - a write is called back only after the brokers acknowledged its batch, and finish waits for the last', async (t) => {
  const producer = manualProducer();
  const sink = createKafkaSink<string>({ producer, topic: 't', value: (s) => Buffer.from(s) });
  const calledBack: string[] = [];
  let finished = false;
  sink.on('finish', () => (finished = true));
  const sent = producer.next();
  sink.write('a', () => calledBack.push('a'));
  sink.write('b', () => calledBack.push('b'));
  sink.end();
  const first = await sent;
  t.deepEqual(first.request.messages.map(text), ['a']);
  t.is(first.request.acks, -1);
  await nextTurn();
  t.deepEqual(calledBack, [], 'no callback before the acknowledgement');
  t.deepEqual(sink.stats(), { sent: 1, acked: 0, retries: 0, inFlight: 1 });
  const second = producer.next();
  first.resolve();
  const batch = await second;
  t.deepEqual(calledBack, ['a']);
  t.deepEqual(batch.request.messages.map(text), ['b']);
  t.false(finished);
  batch.resolve();
  await once(sink, 'finish');
  t.deepEqual(calledBack, ['a', 'b']);
});

test.serial('createKafkaSink() - batches hold at most maxBatchRecords records and maxBatchBytes bytes, in write order', async (t) => {
  const producer = scriptedProducer();
  const sink = createKafkaSink<string>({
    producer,
    topic: 't',
    key: (s) => s.slice(0, 2),
    value: (s) => Buffer.from(s),
    maxBatchRecords: 10,
    maxBatchBytes: 100,
  });
  const records = [...strings(95), 'y'.repeat(300), ...strings(30, 95)];
  for (const record of records) sink.write(record);
  sink.end();
  await once(sink, 'finish');
  const batches = producer.requests.map((request) => request.messages);
  t.deepEqual(batches.flat().map(text), records, 'every record once, in order');
  t.true(batches.every((batch) => batch.length <= 10));
  const bytes = (batch: KafkaMessage[]): number => batch.reduce((sum, m) => sum + Buffer.byteLength(m.value as Buffer) + Buffer.byteLength(m.key as string), 0);
  t.true(batches.every((batch) => batch.length === 1 || bytes(batch) <= 100));
  t.true(
    batches.some((batch) => batch.length === 1 && text(batch[0] as KafkaMessage).length === 300),
    'a record over maxBatchBytes goes alone',
  );
  t.true(
    batches.some((batch) => batch.length > 1),
    'writes queued during a send go out together',
  );
});

test.serial('createKafkaSink() - a failed send is retried with the same records in the same order, and takes no writes meanwhile', async (t) => {
  const connectionLost = new KafkaJSNumberOfRetriesExceeded(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED'), {
    retryCount: 5,
    retryTime: 100,
  });
  const failures = new Map<number, unknown>([
    [2, connectionLost],
    [3, new NonRetriable(connectionLost, { cause: new KafkaJSConnectionError('Connection error') })],
    [4, new Error('a failure that says nothing of itself')],
  ]);
  const producer = scriptedProducer(failures);
  const sink = createKafkaSink<string>({ producer, topic: 't', value: (s) => Buffer.from(s), maxBatchRecords: 5, retry: { initialMs: 1, maxMs: 2 } });
  const retries: KafkaRetryEvent<string>[] = [];
  const needDrain: boolean[] = [];
  sink.on('retry', (event) => {
    retries.push(event);
    needDrain.push(sink.writableNeedDrain);
  });
  const records = strings(20);
  for (const record of records) sink.write(record);
  t.false(sink.write('late'), 'a full sink says wait');
  while (retries.length < 3) await once(sink, 'retry');
  sink.end();
  await once(sink, 'finish');
  t.deepEqual(
    retries.map((r) => r.attempt),
    [1, 2, 3],
  );
  t.deepEqual(needDrain, [true, true, true], 'while a batch waits to be resent, writers are asked to wait');
  const resent = producer.requests.slice(1, 4).map((request) => request.messages.map(text));
  t.deepEqual(resent[0], resent[1]);
  t.deepEqual(resent[1], resent[2]);
  t.deepEqual(retries[0]?.records, resent[0]);
  const acknowledged = producer.requests.filter((_, i) => !failures.has(i + 1)).flatMap((request) => request.messages.map(text));
  t.deepEqual(acknowledged, [...records, 'late']);
  t.deepEqual(sink.stats(), { sent: 21, acked: 21, retries: 3, inFlight: 0 });
});

test.serial('createKafkaSink() - an error retrying cannot fix fails the sink with the records not acknowledged', async (t) => {
  const producer = scriptedProducer(new Map([[3, tooLarge()]]));
  const hopper = createHopperStreams<string>({ maxMemoryBytes: 1024 });
  const sink = createKafkaSink<string>({ producer, topic: 't', value: (s) => Buffer.from(s), maxBatchRecords: 10 });
  const acked: string[] = [];
  sink.on('ack', ({ records }) => acked.push(...records));
  const records = strings(100);
  for (const record of records) hopper.send(record);
  hopper.writable.end();
  const err = await t.throwsAsync(pipeline(hopper.readable, sink));
  t.true(HopperError.is(err, 'ERR_HOPPER_KAFKA_SEND'), String(err));
  const failure = err as HopperError;
  t.regex(failure.message, /topic "t".*cannot be retried/);
  t.is((failure.cause as { type?: string }).type, 'MESSAGE_TOO_LARGE');
  t.deepEqual(acked, records.slice(0, acked.length));
  t.deepEqual(failure.records, records.slice(acked.length, acked.length + (failure.records as string[]).length), 'the records not acknowledged, in order');
  t.true((failure.records as string[]).length >= 10, 'the failed batch is among them');
  t.is(producer.requests.length, 3, 'no send after the failure');
  t.true(hopper.readable.destroyed, 'pipeline() destroys the hopper, and the records still in it');
});

test.serial(
  'createKafkaSink() - regression: a sink that fails under pipe() leaves the rest in the hopper, so a new sink delivers everything once',
  async (t) => {
    const failing = scriptedProducer(new Map([[2, new KafkaJSProtocolError(protocolErrors.createErrorFromCode(29))]]));
    const hopper = createHopperStreams<string>({ maxMemoryBytes: 256 });
    const first = createKafkaSink<string>({ producer: failing, topic: 't', value: (s) => Buffer.from(s), maxBatchRecords: 8 });
    const records = strings(300);
    for (const record of records) hopper.send(record);
    hopper.writable.end();
    hopper.readable.pipe(first);
    const [err] = (await once(first, 'error')) as [HopperError];
    t.is(err.code, 'ERR_HOPPER_KAFKA_SEND');
    t.is((err.cause as { type?: string }).type, 'TOPIC_AUTHORIZATION_FAILED');

    const healthy = scriptedProducer();
    const second = createKafkaSink<string>({ producer: healthy, topic: 't', value: (s) => Buffer.from(s), maxBatchRecords: 8 });
    for (const record of err.records as string[]) second.write(record);
    await pipeline(hopper.readable, second);
    const delivered = [...failing.requests.slice(0, 1), ...healthy.requests].flatMap((request) => request.messages.map(text));
    t.deepEqual(delivered, records);
  },
);

test.serial('createKafkaSink() - destroying a sink that waits to resend calls its write back with ERR_STREAM_DESTROYED and sends no more', async (t) => {
  const producer = scriptedProducer(new Map(Array.from({ length: 50 }, (_, i) => [i + 1, new KafkaJSConnectionError('down')] as const)));
  const sink = createKafkaSink<string>({ producer, topic: 't', value: (s) => Buffer.from(s), retry: { initialMs: 60_000, maxMs: 60_000 } });
  const callback = new Promise<Error | null | undefined>((resolve) => sink.write('a', resolve));
  await once(sink, 'retry');
  const closed = once(sink, 'close');
  sink.destroy();
  const err = await callback;
  t.true(HopperError.is(err, 'ERR_STREAM_DESTROYED'), String(err));
  t.deepEqual((err as HopperError).records, ['a']);
  await closed;
  t.is(producer.requests.length, 1);
});

test.serial('createKafkaSink() - value { schema, schemaId } writes the Confluent wire format byte for byte', async (t) => {
  const producer = scriptedProducer();
  const schema = {
    type: 'record',
    name: 'Tiny',
    fields: [
      { name: 'id', type: 'int' },
      { name: 's', type: 'string' },
    ],
  };
  const sink = createKafkaSink<{ id: number; s: string }>({ producer, topic: 't', value: { schema, schemaId: 0x01020304 } });
  sink.end({ id: 1, s: 'a' });
  await once(sink, 'finish');
  // magic 0, id 0x01020304 big-endian, then Avro: int 1 zig-zags to 0x02, string "a" is length 0x02 then 0x61.
  t.deepEqual(producer.requests[0]?.messages[0], { key: null, value: Buffer.from([0, 1, 2, 3, 4, 0x02, 0x02, 0x61]) });
});

test.serial('createKafkaSink() - value.schemaId may come from a function, called once; a failure is retried', async (t) => {
  const producer = scriptedProducer();
  let calls = 0;
  const sink = createKafkaSink<Event>({
    producer,
    topic: 't',
    value: {
      schema: eventSchema,
      schemaId: async () => {
        if (++calls === 1) throw new Error('registry unavailable');
        return 9;
      },
    },
    retry: { initialMs: 1, maxMs: 1 },
  });
  const retried = once(sink, 'retry');
  const finished = once(sink, 'finish');
  sink.write(event(0));
  sink.write(event(1));
  sink.end(event(2));
  const [retry] = (await retried) as [KafkaRetryEvent<Event>];
  await finished;
  t.regex(String(retry.error), /registry unavailable/);
  t.is(calls, 2);
  const values = producer.requests.flatMap((request) => request.messages.map((m) => m.value as Buffer));
  t.is(values.length, 3);
  t.true(values.every((value) => value.readInt32BE(1) === 9));
});

test.serial(
  'createKafkaSink() - a value.schemaId function that returns no schema registry id fails the sink with ERR_HOPPER_KAFKA_SEND, the option error as its cause',
  async (t) => {
    const producer = scriptedProducer();
    const sink = createKafkaSink<Event>({ producer, topic: 't', value: { schema: eventSchema, schemaId: async () => -3 } });
    sink.write(event(0));
    const [err] = (await once(sink, 'error')) as [HopperError];
    t.is(err.code, 'ERR_HOPPER_KAFKA_SEND');
    t.true(err.cause instanceof RangeError);
    t.true(HopperError.is(err.cause, 'ERR_HOPPER_INVALID_OPTION'));
    t.is((err.cause as HopperError).option, 'value.schemaId()');
    t.is((err.cause as HopperError).value, -3);
    t.is(producer.requests.length, 0, 'nothing was sent');
  },
);

test.serial('createKafkaSink() - a record its value cannot encode fails the sink with ERR_HOPPER_INVALID_RECORD naming the field', async (t) => {
  const producer = scriptedProducer();
  const sink = createKafkaSink<Event>({ producer, topic: 't', value: { schema: eventSchema, schemaId: 1 } });
  sink.write(event(0));
  sink.write({ userId: 'u', seq: 'one', payload: '' } as unknown as Event);
  const [err] = (await once(sink, 'error')) as [HopperError];
  t.is(err.code, 'ERR_HOPPER_INVALID_RECORD');
  t.deepEqual(err.path, ['seq']);
  t.is((err.records as Event[]).length, 1);
});

test.serial("createKafkaSink() - acks: null leaves acks to the producer's configuration; acks: 1 is passed on", async (t) => {
  for (const acks of [null, 1] as const) {
    const producer = scriptedProducer();
    const sink = createKafkaSink<string>({ producer, topic: 't', value: (s) => Buffer.from(s), acks });
    sink.end('x');
    await once(sink, 'finish');
    t.is('acks' in (producer.requests[0] as object), acks !== null);
    if (acks !== null) t.is(producer.requests[0]?.acks, acks);
  }
});

test.serial(
  'createKafkaSink() - options are checked: each refusal is ERR_HOPPER_INVALID_OPTION, a TypeError or RangeError naming the option and the value',
  (t) => {
    const producer = scriptedProducer();
    const value = (s: string): Buffer => Buffer.from(s);
    const make = (options: object): unknown => createKafkaSink<string>({ producer, topic: 't', value, ...options } as never);
    const badSchema = { type: 'nope' };
    const noSend = {};
    const cases: Array<[object, ErrorConstructor, string, unknown, RegExp]> = [
      [{ producer: noSend }, TypeError, 'producer', noSend, /`producer`.*send\(\)/],
      [{ producer: null }, TypeError, 'producer', null, /`producer`/],
      [{ topic: '' }, TypeError, 'topic', '', /`topic`.*""/],
      [{ topic: 7 }, TypeError, 'topic', 7, /`topic`.*`7`/],
      [{ value: 'avro' }, TypeError, 'value', 'avro', /`value`/],
      [{ value: { schemaId: 1 } }, TypeError, 'value.schema', undefined, /`value.schema` to be an Avro schema/],
      [{ value: { schema: eventSchema, schemaId: -1 } }, RangeError, 'value.schemaId', -1, /`value.schemaId`.*`-1`/],
      [{ value: { schema: eventSchema, schemaId: 2 ** 31 } }, RangeError, 'value.schemaId', 2 ** 31, /`value.schemaId`.*2147483647/],
      [{ value: { schema: eventSchema, schemaId: '42' } }, TypeError, 'value.schemaId', '42', /`value.schemaId`/],
      [
        { value: { schema: badSchema, schemaId: 1 } },
        TypeError,
        'value.schema',
        badSchema,
        /^Expected `value.schema` to be a valid Avro schema: unknown type: "nope"$/,
      ],
      [{ key: 'userId' }, TypeError, 'key', 'userId', /`key`.*"userId"/],
      [{ acks: 0 }, RangeError, 'acks', 0, /`acks`.*`0`/],
      [{ maxBatchRecords: 0 }, RangeError, 'maxBatchRecords', 0, /`maxBatchRecords`.*`0`/],
      [{ maxBatchRecords: '10' }, TypeError, 'maxBatchRecords', '10', /`maxBatchRecords` to be a number/],
      [{ maxBatchBytes: 1.5 }, RangeError, 'maxBatchBytes', 1.5, /`maxBatchBytes`.*`1.5`/],
      [{ retry: 3 }, TypeError, 'retry', 3, /`retry` to be an object/],
      [{ retry: { initialMs: 0 } }, RangeError, 'retry.initialMs', 0, /`retry.initialMs`.*`0`/],
      [{ retry: { initialMs: 500, maxMs: 100 } }, RangeError, 'retry.maxMs', 100, /`retry.maxMs`.*`100`/],
      [{ retries: 3 }, TypeError, 'retries', 3, /Unknown option `retries`/],
    ];
    for (const [options, type, option, given, message] of cases) {
      const what = `${option}: ${String(given)}`;
      const error = t.throws(() => make(options), { instanceOf: type, message }, what);
      t.true(error instanceof HopperError, what);
      t.true(HopperError.is(error, 'ERR_HOPPER_INVALID_OPTION'), what);
      const refused = error as HopperError;
      t.is(refused.code, 'ERR_HOPPER_INVALID_OPTION', what);
      t.is(refused.name, type.name, what);
      t.is(refused.option, option, what);
      t.true(Object.hasOwn(refused, 'value'), what);
      t.is(refused.value, given, what);
    }
    const notAnObject = t.throws(() => createKafkaSink(null as never), { instanceOf: TypeError });
    t.true(HopperError.is(notAnObject, 'ERR_HOPPER_INVALID_ARGUMENT'));
    t.is((notAnObject as HopperError).argument, 'options');
  },
);

test.serial('createKafkaSink() - which failed sends are retried: outages and timeouts are retried; protocol errors that a resend cannot fix are not', (t) => {
  const protocol = (code: number): Error => new KafkaJSProtocolError(protocolErrors.createErrorFromCode(code));
  const gaveUp = (cause: Error): Error => new KafkaJSNumberOfRetriesExceeded(cause, { retryCount: 5, retryTime: 1000 });
  t.true(isRetriableSendError(new KafkaJSConnectionError('Connection error')));
  t.true(isRetriableSendError(gaveUp(new KafkaJSConnectionError('Connection error'))));
  t.true(isRetriableSendError(new NonRetriable(gaveUp(new KafkaJSConnectionError('x')), { cause: new KafkaJSConnectionError('x') })));
  t.true(isRetriableSendError(protocol(6)), 'NOT_LEADER_FOR_PARTITION');
  t.true(isRetriableSendError(protocol(7)), 'REQUEST_TIMED_OUT');
  t.true(isRetriableSendError(new Timeout('Timeout')));
  t.true(isRetriableSendError(new Error('anything else')));
  t.false(isRetriableSendError(protocol(10)), 'MESSAGE_TOO_LARGE');
  t.false(isRetriableSendError(protocol(29)), 'TOPIC_AUTHORIZATION_FAILED');
  t.false(isRetriableSendError(gaveUp(protocol(3))), 'UNKNOWN_TOPIC_OR_PARTITION once the client gave up on it');
  t.false(isRetriableSendError(new NonRetriable(protocol(10), { cause: protocol(10) })));
  t.false(isRetriableSendError(new SASLAuthentication('SASL authentication failed')));
  t.false(isRetriableSendError(new NonRetriable('Invalid topic')));
  t.false(isRetriableSendError(Object.assign(new Error('Broker: Topic authorization failed'), { code: 29 })), 'librdkafka-based clients report codes');
  t.false(isRetriableSendError(new TypeError('x is not a function')));
});

test.serial('createKafkaSink() - the wait between attempts doubles from initialMs up to maxMs, less at most a fifth at random', (t) => {
  const policy = { initialMs: 100, maxMs: 1_000 };
  t.deepEqual(
    [1, 2, 3, 4, 5, 50, 5_000].map((attempt) => retryDelay(attempt, policy, 0)),
    [100, 200, 400, 800, 1_000, 1_000, 1_000],
  );
  t.is(retryDelay(3, policy, 0.999_999), 320);
  t.is(retryDelay(1, policy, 0.5), 90);
});

// --- examples/http-to-kafka.ts, run as docs/kafka.md says. ---

/** Starts the example as a child process against `brokers`; resolves with its port once it listens. */
async function startExample(
  t: { teardown(fn: () => Promise<void> | void): void },
  env: Record<string, string>,
): Promise<{ port: number; child: ChildProcess; output: () => string }> {
  // The example's hopper lives in a directory of this test's, removed once the child is gone: a
  // child killed with SIGKILL leaves its channel directory (and lock) behind.
  const dir = tempDataDir();
  const child = spawn(process.execPath, [...END_WITH_PARENT, 'examples/http-to-kafka.ts'], {
    cwd: root,
    env: { ...process.env, PORT: '0', HOPPER_DATA_DIR: dir.dataDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  exited.catch(() => {});
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    dir.remove();
  });
  let output = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => (output += text));
  const lines = createInterface({ input: child.stdout as Readable });
  lines.on('line', (line) => (output += `${line}\n`));
  const listening = new Promise<number>((resolve) =>
    lines.on('line', (line) => {
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)\//.exec(line);
      if (match) resolve(Number(match[1]));
    }),
  );
  const port = await Promise.race([listening, exited.then(() => Promise.reject(new Error(`the example exited: ${output}`)))]);
  return { port, child, output: () => output };
}

function post(port: number, path: string, body: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, method: path === '/stats' ? 'GET' : 'POST', path, agent: false }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    request.on('error', reject);
    request.end(body);
  });
}

const ndjson = (first: number, count: number): string => Array.from(events(count, first), (e) => JSON.stringify(e)).join('\n');

test.serial('createKafkaSink() - examples/http-to-kafka: bodies accepted during an outage are spilled and reach Kafka once it is back', async (t) => {
  const mock = await mockFor(t, 'events');
  const example = await startExample(t, { KAFKA_BROKERS: mock.brokers.join(','), SCHEMA_ID: '5', HOPPER_MAX_MEMORY_BYTES: '65536' });
  const bodies = 12;
  const perBody = 500;
  let first = 1;
  const postBody = async (): Promise<void> => {
    const answer = await post(example.port, '/events', ndjson(first, perBody));
    first += perBody;
    t.deepEqual(answer, { status: 202, body: { accepted: perBody } });
  };
  await postBody();
  // The first body is acknowledged before the outage: a send cut off mid-way could be stored and
  // still resent (at least once), and this test counts exactly.
  while (((await post(example.port, '/stats', '')).body as { sink: { acked: number } }).sink.acked < perBody) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await mock.down();
  for (let i = 1; i < bodies; i++) await postBody();
  const bad = await post(example.port, '/events', `${ndjson(first, 2)}\n{"seq": "x"}`);
  t.is(bad.status, 400);
  t.regex(String(bad.body.error), /line 3: field `seq`/);
  const during = (await post(example.port, '/stats', '')).body as { hopper: { spilled: number }; sink: { acked: number } };
  t.true(during.hopper.spilled > 0, 'the hopper spilled while Kafka was down');
  t.true(during.sink.acked < bodies * perBody);
  await mock.up();

  example.child.kill('SIGTERM');
  const [code] = await once(example.child, 'exit');
  t.is(code, 0, example.output());
  t.regex(example.output(), /drained/);
  const { messages, stored } = await readTopic(mock.brokers, 'events', bodies * perBody);
  t.is(stored, bodies * perBody);
  const decoded = messages.map((m) => ({ key: String(m.key), ...unframeEvent(m.value) }));
  t.true(decoded.every((d) => d.schemaId === 5 && d.key === d.record.userId));
  t.deepEqual(
    decoded.map((d) => d.record.seq).sort((a, b) => a - b),
    Array.from({ length: bodies * perBody }, (_, i) => i + 1),
  );
  t.true(perKeyOrder(decoded.map((d) => ({ key: d.key, seq: d.record.seq }))));
});

test.serial('createKafkaSink() - examples/http-to-kafka with ANSWER=acknowledged answers a body only once Kafka acknowledged it', async (t) => {
  const mock = await mockFor(t, 'events');
  const example = await startExample(t, { KAFKA_BROKERS: mock.brokers.join(','), ANSWER: 'acknowledged' });
  t.deepEqual(await post(example.port, '/events', ndjson(1, 100)), { status: 200, body: { acknowledged: 100 } });
  await mock.down();
  let brokersUp = false;
  const answered = post(example.port, '/events', ndjson(101, 100)).then((answer) => ({ answer, brokersUp }));
  // The body is in the hopper (recordsIn counts it) and the sink is retrying: still no answer.
  for (;;) {
    const stats = (await post(example.port, '/stats', '')).body as { hopper: { recordsIn: number }; sink: { retries: number } };
    if (stats.hopper.recordsIn === 200 && stats.sink.retries > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  brokersUp = true;
  await mock.up();
  const { answer, brokersUp: upWhenAnswered } = await answered;
  t.deepEqual(answer, { status: 200, body: { acknowledged: 100 } });
  t.true(upWhenAnswered, 'not answered while the brokers were down');
  const { stored } = await readTopic(mock.brokers, 'events', 200);
  t.is(stored, 200);
});

test.serial('createKafkaSink() - loads by name from the built package as hopper-streams/kafka, which imports no Kafka client', async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
    exports: Record<string, Record<string, string>>;
    peerDependencies: Record<string, string>;
    dependencies: Record<string, string>;
  };
  t.deepEqual(Object.keys(pkg.exports['./kafka'] ?? {}), ['types', 'default']);
  t.true(fs.existsSync(path.join(root, 'dist', 'kafka.d.ts')), 'dist/ is built (npm test builds it first)');
  // The sink takes a structural producer: no Kafka client is a dependency or a peer.
  t.deepEqual(
    [...Object.keys(pkg.dependencies), ...Object.keys(pkg.peerDependencies)].filter((name) => /kafka/i.test(name)),
    [],
  );
  const script = `import('hopper-streams/kafka').then((m) => console.log(typeof m.createKafkaSink))`;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { cwd: root });
  t.is(stdout.trim(), 'function');
  const imports = fs
    .readdirSync(path.join(root, 'dist'))
    .filter((file) => file.endsWith('.js'))
    .flatMap((file) => [...fs.readFileSync(path.join(root, 'dist', file), 'utf8').matchAll(/^(?:import|export) [^;]*? from '([^']+)';$/gm)].map((m) => m[1]));
  t.deepEqual(
    imports.filter((specifier) => /kafka/i.test(specifier ?? '') && !specifier?.startsWith('./')),
    [],
  );
});
