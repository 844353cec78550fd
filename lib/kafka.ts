/// <reference types="node" preserve="true" />
/**
 * `hopper-streams/kafka`: a Writable that hands records on to a Kafka producer and calls a write
 * back only once the brokers have acknowledged the batch that carried it. Behind a hopper, a send
 * that fails is retried with the same records, in the same order, while the hopper spills.
 */
import { Writable } from 'node:stream';
import type { Type } from 'avsc';
import { createCodec } from './codec.js';
import { kafkaDestroyedError, kafkaEncodeError, kafkaSendError } from './errors.js';
import { isRetriableSendError, retryDelay, type KafkaRetryPolicy } from './kafka-policy.js';
import { describe, type AvroSchema } from './options.js';

/** A message as the producer's `send()` takes it. */
export interface KafkaMessage {
  key?: Buffer | string | null;
  value: Buffer | string | null;
}

/** What the sink passes to `producer.send()`. */
export interface KafkaProducerRecord {
  topic: string;
  messages: KafkaMessage[];
  /** Left out when the sink's `acks` option is `null`. */
  acks?: number;
}

/** One partition's result of a `send()`, as KafkaJS reports it. */
export interface KafkaRecordMetadata {
  topicName: string;
  partition: number;
  errorCode: number;
  baseOffset?: string;
  offset?: string;
}

/**
 * A connected producer with the KafkaJS API: `kafkajs`' `Producer`, or the KafkaJS-compatible
 * producer of `@confluentinc/kafka-javascript` (give that one `acks: null` and set `acks` in its
 * own configuration). Only `send()` is used; connecting and disconnecting stay the caller's.
 */
export interface KafkaProducer {
  send(record: KafkaProducerRecord): Promise<KafkaRecordMetadata[]>;
}

/**
 * Avro values in the Confluent wire format: byte 0 is 0, bytes 1-4 the schema id (big-endian),
 * then the record's Avro binary encoding, as Confluent's serializers write it.
 */
export interface KafkaAvroValue {
  /** The Avro schema of the records: a JSON object, a JSON string or an avsc `Type`. */
  schema: AvroSchema;
  /**
   * The schema's id in the schema registry, or a function that returns it (or a promise of it),
   * called once, before the first send. A failing function is retried like a failed send.
   */
  schemaId: number | (() => number | Promise<number>);
}

/** Options of {@link createKafkaSink}. */
export interface KafkaSinkOptions<T> {
  /** A connected producer with the KafkaJS API. */
  producer: KafkaProducer;
  /** The topic every record goes to. */
  topic: string;
  /** The message key of a record (`null` or `undefined` for none). Records with one key keep their order. */
  key?: ((record: T) => string | Buffer | null | undefined) | undefined;
  /** How a record becomes the message value: Avro in the Confluent wire format, or a function of your own. */
  value: KafkaAvroValue | ((record: T) => Buffer);
  /**
   * Acknowledgements the brokers must give before a send counts: `-1` (all in-sync replicas) or
   * `1` (the leader only). `null` leaves `acks` out of `send()`, for producers configured with it.
   * @default -1
   */
  acks?: -1 | 1 | null | undefined;
  /**
   * Most records in one `send()`.
   * @default 1000
   */
  maxBatchRecords?: number | undefined;
  /**
   * Most bytes of keys and values in one `send()`; a single larger record goes alone.
   * @default 524288 (512 KiB)
   */
  maxBatchBytes?: number | undefined;
  /**
   * Backoff between attempts: `initialMs` before the first resend, doubled per attempt up to `maxMs`
   * (less up to a fifth at random). Failed sends are retried until the sink is destroyed.
   * @default { initialMs: 100, maxMs: 30_000 }
   */
  retry?: { [K in keyof KafkaRetryPolicy]?: KafkaRetryPolicy[K] | undefined } | undefined;
}

/** Where a batch went: one entry per partition it touched. */
export interface KafkaPartitionOffset {
  partition: number;
  /** The offset of the batch's first record in this partition, as the client reports it (a decimal string). */
  baseOffset: string | undefined;
}

/** The payload of `'ack'`: a batch the brokers acknowledged. */
export interface KafkaAckEvent<T> {
  records: T[];
  topic: string;
  partitions: KafkaPartitionOffset[];
}

/** The payload of `'retry'`: a send failed and will be made again, with the same records, after `delayMs`. */
export interface KafkaRetryEvent<T> {
  error: unknown;
  /** 1 after the first failed attempt. */
  attempt: number;
  records: T[];
  delayMs: number;
}

/** Counters of a Kafka sink. */
export interface KafkaSinkStats {
  /** Records handed to `producer.send()`, each counted once however often it was resent. */
  sent: number;
  /** Records the brokers acknowledged. */
  acked: number;
  /** Failed sends that were retried. */
  retries: number;
  /** Records of the batch being sent or waiting to be resent. */
  inFlight: number;
}

/** The objectMode Writable {@link createKafkaSink} returns: a Writable with `stats()` and the `'ack'` and `'retry'` events. */
export interface KafkaSink<T> extends Writable {
  /**
   * Not callable (nothing is a `never`): this makes the sink fit `NodeJS.WritableStream`, what
   * `pipe()` and `pipeline()` ask of a destination. First, so that TypeScript reports a wrong
   * record against a `T` overload (see `HopperWritable.write`).
   */
  write(chunk: never, encoding?: BufferEncoding | Callback, callback?: Callback): boolean;
  /** Takes a `T`; `callback` fires once the brokers have acknowledged the batch that carried it. */
  write(chunk: T, callback?: Callback): boolean;
  write(chunk: T, encoding: BufferEncoding, callback?: Callback): boolean;
  /** Not callable: see the first `write()`. */
  end(chunk: never, encoding?: BufferEncoding | (() => void), callback?: () => void): this;
  end(callback?: () => void): this;
  end(chunk: T, callback?: () => void): this;
  end(chunk: T, encoding: BufferEncoding, callback?: () => void): this;
  /** The sink's counters, a fresh object each call. */
  stats(): KafkaSinkStats;
  on(event: 'ack', listener: (event: KafkaAckEvent<T>) => void): this;
  on(event: 'retry', listener: (event: KafkaRetryEvent<T>) => void): this;
  // biome-ignore lint/suspicious/noExplicitAny: the same signature as the Writable's own overload
  on(event: string | symbol, listener: (...args: any[]) => void): this;
  once(event: 'ack', listener: (event: KafkaAckEvent<T>) => void): this;
  once(event: 'retry', listener: (event: KafkaRetryEvent<T>) => void): this;
  // biome-ignore lint/suspicious/noExplicitAny: the same signature as the Writable's own overload
  once(event: string | symbol, listener: (...args: any[]) => void): this;
}

type Callback = (err?: Error | null) => void;

const DEFAULT_MAX_BATCH_RECORDS = 1000;
const DEFAULT_MAX_BATCH_BYTES = 512 * 1024;
const DEFAULT_RETRY: KafkaRetryPolicy = { initialMs: 100, maxMs: 30_000 };
const KNOWN = new Set(['producer', 'topic', 'key', 'value', 'acks', 'maxBatchRecords', 'maxBatchBytes', 'retry']);
/** The Confluent wire format's header: the magic byte 0 and a 4-byte schema id. */
const HEADER_BYTES = 5;

function integerOption(value: unknown, key: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`Expected \`${key}\` to be a number, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`Expected \`${key}\` to be an integer from ${min} and up, got ${describe(value)}`);
  return value;
}

function checkSchemaId(value: unknown, key: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw new TypeError(`Expected \`${key}\` to be a number, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw new RangeError(`Expected \`${key}\` to be a schema registry id, an integer from 0 to 2147483647, got ${describe(value)}`);
  }
  return value;
}

interface Resolved<T> {
  producer: KafkaProducer;
  topic: string;
  key: ((record: T) => string | Buffer | null | undefined) | undefined;
  value: ((record: T) => Buffer) | { type: Type; validate: (record: unknown) => void; schemaId: KafkaAvroValue['schemaId'] };
  acks: -1 | 1 | null;
  maxBatchRecords: number;
  maxBatchBytes: number;
  retry: KafkaRetryPolicy;
}

function resolveSinkOptions<T>(options: KafkaSinkOptions<T>): Resolved<T> {
  if (options === null || typeof options !== 'object') throw new TypeError(`Expected options to be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) throw new TypeError(`Unknown option \`${key}\`; known options are ${[...KNOWN].join(', ')}`);
  }
  const { producer, topic, key, value, retry } = options;
  if (producer === null || typeof producer !== 'object' || typeof producer.send !== 'function') {
    throw new TypeError(`Expected \`producer\` to be a connected producer with a KafkaJS \`send()\` method, got ${describe(producer)}`);
  }
  if (typeof topic !== 'string' || topic === '') throw new TypeError(`Expected \`topic\` to be a non-empty string, got ${describe(topic)}`);
  if (key !== undefined && typeof key !== 'function') throw new TypeError(`Expected \`key\` to be a function of the record, got ${describe(key)}`);
  let resolvedValue: Resolved<T>['value'];
  if (typeof value === 'function') {
    resolvedValue = value;
  } else if (value !== null && typeof value === 'object') {
    if (value.schema === undefined)
      throw new TypeError('Expected `value.schema` to be an Avro schema (object, JSON string or avsc Type), got `undefined` (undefined)');
    let codec: ReturnType<typeof createCodec>;
    try {
      codec = createCodec(value.schema);
    } catch (err) {
      throw new TypeError(`Expected \`value.schema\` to be a valid Avro schema: ${(err as Error).message}`);
    }
    const { schemaId } = value;
    if (typeof schemaId !== 'function') checkSchemaId(schemaId, 'value.schemaId');
    resolvedValue = { type: codec.type, validate: (record) => codec.validate(record), schemaId };
  } else {
    throw new TypeError(`Expected \`value\` to be { schema, schemaId } or a function of the record returning a Buffer, got ${describe(value)}`);
  }
  const acks = options.acks === undefined ? -1 : options.acks;
  if (acks !== -1 && acks !== 1 && acks !== null) throw new RangeError(`Expected \`acks\` to be -1, 1 or null, got ${describe(acks)}`);
  if (retry !== undefined && (retry === null || typeof retry !== 'object')) throw new TypeError(`Expected \`retry\` to be an object, got ${describe(retry)}`);
  const initialMs = integerOption(retry?.initialMs, 'retry.initialMs', DEFAULT_RETRY.initialMs, 1);
  const maxMs = integerOption(retry?.maxMs, 'retry.maxMs', Math.max(DEFAULT_RETRY.maxMs, initialMs), 1);
  if (maxMs < initialMs) throw new RangeError(`Expected \`retry.maxMs\` to be at least \`retry.initialMs\` (${initialMs}), got ${describe(maxMs)}`);
  return {
    producer,
    topic,
    key,
    value: resolvedValue,
    acks,
    maxBatchRecords: integerOption(options.maxBatchRecords, 'maxBatchRecords', DEFAULT_MAX_BATCH_RECORDS, 1),
    maxBatchBytes: integerOption(options.maxBatchBytes, 'maxBatchBytes', DEFAULT_MAX_BATCH_BYTES, 1),
    retry: { initialMs, maxMs },
  };
}

/** Thrown inside the sink when it was destroyed while it waited: nothing more is to be done. */
const STOPPED = Symbol('stopped');

class Sink<T> extends Writable {
  private readonly options: Resolved<T>;
  private counts: KafkaSinkStats = { sent: 0, acked: 0, retries: 0, inFlight: 0 };
  /** The callback of the write (or writev) being delivered: held until all its records are acknowledged. */
  private held: Callback | undefined;
  /** The records of that write, in order; those from `acknowledged` on are not acknowledged yet. */
  private delivering: T[] = [];
  private acknowledged = 0;
  private header: Buffer | undefined;
  private wakeUp: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: Resolved<T>) {
    // One batch's worth may wait in the Writable's buffer while a batch is out, so that the next
    // send starts full; past that, write() says wait and a pipe stops reading the hopper.
    super({ objectMode: true, highWaterMark: options.maxBatchRecords });
    this.options = options;
  }

  stats(): KafkaSinkStats {
    return { ...this.counts };
  }

  override _write(record: T, _encoding: string, callback: Callback): void {
    this.deliver([record], callback);
  }

  override _writev(chunks: Array<{ chunk: T }>, callback: Callback): void {
    this.deliver(
      chunks.map((c) => c.chunk),
      callback,
    );
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.wakeUp?.();
    const held = this.held;
    const unacked = this.delivering.slice(this.acknowledged);
    this.held = undefined;
    this.delivering = [];
    callback(err);
    // The write being delivered is called back too, so that no caller waits forever on it.
    if (held) process.nextTick(held, kafkaDestroyedError(unacked));
  }

  private deliver(records: T[], callback: Callback): void {
    this.held = callback;
    this.delivering = records;
    this.acknowledged = 0;
    this.sendAll().then(
      () => this.settle(),
      (err: unknown) => this.settle(err),
    );
  }

  private settle(err?: unknown): void {
    const held = this.held;
    this.held = undefined;
    this.delivering = [];
    if (held === undefined || err === STOPPED) return;
    held(err === undefined ? null : (err as Error));
  }

  /** Sends the write's records batch by batch, each one only after the one before was acknowledged. */
  private async sendAll(): Promise<void> {
    while (this.acknowledged < this.delivering.length) {
      if (this.destroyed) throw STOPPED;
      let batch: { records: T[]; messages: KafkaMessage[] };
      try {
        batch = await this.nextBatch();
      } catch (err) {
        if (err === STOPPED) throw err;
        throw this.failure(err);
      }
      if (this.destroyed) throw STOPPED;
      await this.sendBatch(batch.records, batch.messages);
      this.acknowledged += batch.records.length;
    }
  }

  /** Records taken and not acknowledged: those of the write being delivered, then those waiting behind it. */
  private pendingRecords(): T[] {
    // Node's `writableBuffer` getter (not in its type definitions): the writes queued behind this one.
    const waiting = (this as unknown as { writableBuffer?: Array<{ chunk: T }> }).writableBuffer ?? [];
    return [...this.delivering.slice(this.acknowledged), ...waiting.map((entry) => entry.chunk)];
  }

  private failure(err: unknown): Error {
    if (err instanceof EncodeFailure) return kafkaEncodeError(err.record, err.cause, this.pendingRecords());
    return kafkaSendError(this.options.topic, err, this.pendingRecords());
  }

  /** The longest run of unacknowledged records from the first that fits the batch limits (at least one record). */
  private async nextBatch(): Promise<{ records: T[]; messages: KafkaMessage[] }> {
    const { maxBatchRecords, maxBatchBytes } = this.options;
    const header = typeof this.options.value === 'function' ? undefined : await this.schemaHeader();
    const messages: KafkaMessage[] = [];
    let bytes = 0;
    const { delivering, acknowledged } = this;
    for (let i = acknowledged; i < delivering.length && messages.length < maxBatchRecords; i++) {
      const record = delivering[i] as T;
      const message = this.encode(record, header);
      const size = (message.value as Buffer).length + (message.key == null ? 0 : Buffer.byteLength(message.key));
      if (messages.length > 0 && bytes + size > maxBatchBytes) break;
      messages.push(message);
      bytes += size;
    }
    return { records: delivering.slice(acknowledged, acknowledged + messages.length), messages };
  }

  private encode(record: T, header: Buffer | undefined): KafkaMessage {
    const { key, value } = this.options;
    try {
      let body: Buffer;
      if (typeof value === 'function') {
        body = value(record);
        if (!Buffer.isBuffer(body)) throw new TypeError(`Expected the \`value\` function to return a Buffer, got ${describe(body)}`);
      } else {
        value.validate(record);
        body = Buffer.concat([header as Buffer, value.type.toBuffer(record)]);
      }
      const k = key === undefined ? null : key(record);
      if (k !== null && k !== undefined && typeof k !== 'string' && !Buffer.isBuffer(k)) {
        throw new TypeError(`Expected the \`key\` function to return a string, a Buffer or null, got ${describe(k)}`);
      }
      return { key: k ?? null, value: body };
    } catch (err) {
      throw new EncodeFailure(record, err);
    }
  }

  /** The 5-byte Confluent header, made once; a schema id function that fails is retried like a send. */
  private async schemaHeader(): Promise<Buffer> {
    if (this.header) return this.header;
    const value = this.options.value as Exclude<Resolved<T>['value'], (record: T) => Buffer>;
    let id: number;
    if (typeof value.schemaId === 'number') {
      id = value.schemaId;
    } else {
      const getId = value.schemaId;
      let got: unknown;
      for (let attempt = 1; ; attempt++) {
        try {
          got = await getId();
          break;
        } catch (err) {
          await this.backOff(err, attempt, this.delivering.slice(this.acknowledged));
        }
      }
      id = checkSchemaId(got, 'value.schemaId()');
    }
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeInt32BE(id, 1);
    this.header = header;
    return header;
  }

  private async sendBatch(records: T[], messages: KafkaMessage[]): Promise<void> {
    const { producer, topic, acks } = this.options;
    const request: KafkaProducerRecord = acks === null ? { topic, messages } : { topic, messages, acks };
    this.counts.sent += records.length;
    this.counts.inFlight = records.length;
    for (let attempt = 1; ; attempt++) {
      let result: KafkaRecordMetadata[];
      try {
        result = await producer.send(request);
        if (this.destroyed) throw STOPPED;
        const failed = Array.isArray(result) ? result.find((entry) => entry?.errorCode) : undefined;
        if (failed)
          throw Object.assign(new Error(`the broker answered error code ${failed.errorCode} for partition ${failed.partition}`), { code: failed.errorCode });
      } catch (err) {
        if (err === STOPPED || this.destroyed) throw STOPPED;
        if (!isRetriableSendError(err)) {
          this.counts.inFlight = 0;
          throw this.failure(err);
        }
        await this.backOff(err, attempt, records);
        continue;
      }
      this.counts.inFlight = 0;
      this.counts.acked += records.length;
      const partitions = (Array.isArray(result) ? result : [])
        .filter((entry) => entry && entry.topicName === topic)
        .map((entry) => ({ partition: entry.partition, baseOffset: entry.baseOffset ?? entry.offset }));
      this.emit('ack', { records, topic, partitions } satisfies KafkaAckEvent<T>);
      return;
    }
  }

  /** Counts and announces a failed attempt, then waits the backoff (or until the sink is destroyed). */
  private async backOff(error: unknown, attempt: number, records: T[]): Promise<void> {
    if (this.destroyed) throw STOPPED;
    const delayMs = retryDelay(attempt, this.options.retry);
    this.counts.retries++;
    this.emit('retry', { error, attempt, records, delayMs } satisfies KafkaRetryEvent<T>);
    await new Promise<void>((resolve) => {
      this.wakeUp = resolve;
      this.timer = setTimeout(resolve, delayMs);
    });
    this.wakeUp = undefined;
    this.timer = undefined;
    if (this.destroyed) throw STOPPED;
  }
}

/** A key or value function threw, or a record does not match the schema. */
class EncodeFailure extends Error {
  constructor(
    readonly record: unknown,
    override readonly cause: unknown,
  ) {
    super('encoding failed');
  }
}

/**
 * An objectMode Writable that sends records to a Kafka topic and calls each write back only once
 * the brokers have acknowledged the batch that carried it (`acks: -1` by default), so `'finish'`
 * (and `pipeline()`) means every record is acknowledged. Records are batched up to
 * `maxBatchRecords` / `maxBatchBytes` per `send()`, one batch at a time. A failed send is retried
 * with backoff, with the same records in the same order, until the sink is destroyed; meanwhile it
 * takes no more writes, so a hopper in front of it spills to disk. An error that retrying cannot
 * fix fails the sink with `ERR_HOPPER_KAFKA_SEND`, its `.records` the records not acknowledged.
 *
 * @example
 * ```ts
 * import { pipeline } from 'node:stream/promises';
 * import { Kafka } from 'kafkajs';
 * import { createHopperStreams } from 'hopper-streams';
 * import { createKafkaSink } from 'hopper-streams/kafka';
 *
 * const producer = new Kafka({ brokers: ['127.0.0.1:9092'] }).producer();
 * await producer.connect();
 * const hopper = createHopperStreams<string>();
 * const sink = createKafkaSink<string>({ producer, topic: 'lines', value: (line) => Buffer.from(line) });
 * hopper.send('hello');
 * hopper.writable.end();
 * await pipeline(hopper.readable, sink);
 * await producer.disconnect();
 * ```
 */
export function createKafkaSink<T>(options: KafkaSinkOptions<T>): KafkaSink<T> {
  return new Sink<T>(resolveSinkOptions(options)) as KafkaSink<T>;
}
