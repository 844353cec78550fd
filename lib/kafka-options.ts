import type { Type } from 'avsc';
import { createCodec } from './codec.js';
import { invalidArgumentType, invalidOptionType, invalidOptionValue } from './errors.js';
import type { KafkaRetryPolicy } from './kafka-policy.js';
import type { KafkaProducer } from './kafka-producer.js';
import { describe, type AvroSchema } from './options.js';

// The Kafka sink's options: what a user gives createKafkaSink(), checked once (p-queue's message
// shape), with their defaults filled in.

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

const DEFAULT_MAX_BATCH_RECORDS = 1000;
const DEFAULT_MAX_BATCH_BYTES = 512 * 1024;
const DEFAULT_RETRY: KafkaRetryPolicy = { initialMs: 100, maxMs: 30_000 };
const KNOWN = new Set(['producer', 'topic', 'key', 'value', 'acks', 'maxBatchRecords', 'maxBatchBytes', 'retry']);

function integerOption(value: unknown, key: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidOptionType(key, value, `Expected \`${key}\` to be a number, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < min)
    throw invalidOptionValue(key, value, `Expected \`${key}\` to be an integer from ${min} and up, got ${describe(value)}`);
  return value;
}

/**
 * Checks a schema registry id, given (`key` is `'value.schemaId'`) or returned by the
 * `value.schemaId` function (`key` is `'value.schemaId()'`; the sink then fails with
 * `ERR_HOPPER_KAFKA_SEND`, this error as its cause).
 */
export function checkSchemaId(value: unknown, key: string): number {
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidOptionType(key, value, `Expected \`${key}\` to be a number, got ${describe(value)}`);
  if (!Number.isInteger(value) || value < 0 || value > 0x7fffffff) {
    throw invalidOptionValue(key, value, `Expected \`${key}\` to be a schema registry id, an integer from 0 to 2147483647, got ${describe(value)}`);
  }
  return value;
}

/** The sink's options, checked, with their defaults. */
export interface ResolvedSinkOptions<T> {
  producer: KafkaProducer;
  topic: string;
  key: ((record: T) => string | Buffer | null | undefined) | undefined;
  value: ((record: T) => Buffer) | { type: Type; validate: (record: unknown) => void; schemaId: KafkaAvroValue['schemaId'] };
  acks: -1 | 1 | null;
  maxBatchRecords: number;
  maxBatchBytes: number;
  retry: KafkaRetryPolicy;
}

/**
 * Checks the options of `createKafkaSink()` and fills in the defaults; throws a TypeError (unknown
 * option, wrong type) or RangeError (wrong value) naming the option, with
 * `code: 'ERR_HOPPER_INVALID_OPTION'` (options that are not an object: `ERR_HOPPER_INVALID_ARGUMENT`).
 */
export function resolveSinkOptions<T>(options: KafkaSinkOptions<T>): ResolvedSinkOptions<T> {
  if (options === null || typeof options !== 'object')
    throw invalidArgumentType('options', options, `Expected options to be an object, got ${describe(options)}`);
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key))
      throw invalidOptionType(
        key,
        (options as unknown as Record<string, unknown>)[key],
        `Unknown option \`${key}\`; known options are ${[...KNOWN].join(', ')}`,
      );
  }
  const { producer, topic, key, value, retry } = options;
  if (producer === null || typeof producer !== 'object' || typeof producer.send !== 'function') {
    throw invalidOptionType(
      'producer',
      producer,
      `Expected \`producer\` to be a connected producer with a KafkaJS \`send()\` method, got ${describe(producer)}`,
    );
  }
  if (typeof topic !== 'string' || topic === '') throw invalidOptionType('topic', topic, `Expected \`topic\` to be a non-empty string, got ${describe(topic)}`);
  if (key !== undefined && typeof key !== 'function')
    throw invalidOptionType('key', key, `Expected \`key\` to be a function of the record, got ${describe(key)}`);
  let resolvedValue: ResolvedSinkOptions<T>['value'];
  if (typeof value === 'function') {
    resolvedValue = value;
  } else if (value !== null && typeof value === 'object') {
    if (value.schema === undefined)
      throw invalidOptionType(
        'value.schema',
        undefined,
        'Expected `value.schema` to be an Avro schema (object, JSON string or avsc Type), got `undefined` (undefined)',
      );
    let codec: ReturnType<typeof createCodec>;
    try {
      codec = createCodec(value.schema);
    } catch (err) {
      // createCodec's error names `schema`: this one names the sink's option, in avsc's own words.
      const reason = err instanceof Error && err.cause instanceof Error ? err.cause : (err as Error);
      throw invalidOptionType('value.schema', value.schema, `Expected \`value.schema\` to be a valid Avro schema: ${reason.message}`, reason);
    }
    const { schemaId } = value;
    if (typeof schemaId !== 'function') checkSchemaId(schemaId, 'value.schemaId');
    resolvedValue = { type: codec.type, validate: (record) => codec.validate(record), schemaId };
  } else {
    throw invalidOptionType(
      'value',
      value,
      `Expected \`value\` to be { schema, schemaId } or a function of the record returning a Buffer, got ${describe(value)}`,
    );
  }
  const acks = options.acks === undefined ? -1 : options.acks;
  if (acks !== -1 && acks !== 1 && acks !== null) throw invalidOptionValue('acks', acks, `Expected \`acks\` to be -1, 1 or null, got ${describe(acks)}`);
  if (retry !== undefined && (retry === null || typeof retry !== 'object'))
    throw invalidOptionType('retry', retry, `Expected \`retry\` to be an object, got ${describe(retry)}`);
  const initialMs = integerOption(retry?.initialMs, 'retry.initialMs', DEFAULT_RETRY.initialMs, 1);
  const maxMs = integerOption(retry?.maxMs, 'retry.maxMs', Math.max(DEFAULT_RETRY.maxMs, initialMs), 1);
  if (maxMs < initialMs)
    throw invalidOptionValue('retry.maxMs', maxMs, `Expected \`retry.maxMs\` to be at least \`retry.initialMs\` (${initialMs}), got ${describe(maxMs)}`);
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
