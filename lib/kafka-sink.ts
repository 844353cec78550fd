import { Writable } from 'node:stream';
import { kafkaDestroyedError, kafkaEncodeError, kafkaSendError } from './errors.js';
import { checkSchemaId, type ResolvedSinkOptions } from './kafka-options.js';
import { isRetriableSendError, retryDelay } from './kafka-policy.js';
import type { KafkaMessage, KafkaProducerRecord, KafkaRecordMetadata } from './kafka-producer.js';
import { describe } from './options.js';

// The Kafka sink: a Writable that sends its writes batch by batch and calls each back once the
// brokers acknowledged it, resending a failed batch until it goes through or the sink is destroyed.

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

/** The Confluent wire format's header: the magic byte 0 and a 4-byte schema id. */
const HEADER_BYTES = 5;

/** Thrown inside the sink when it was destroyed while it waited: nothing more is to be done. */
const STOPPED = Symbol('stopped');

/** The sink `createKafkaSink()` makes (kafka.ts). */
export class Sink<T> extends Writable {
  private readonly options: ResolvedSinkOptions<T>;
  private counts: KafkaSinkStats = { sent: 0, acked: 0, retries: 0, inFlight: 0 };
  /** The callback of the write (or writev) being delivered: held until all its records are acknowledged. */
  private held: Callback | undefined;
  /** The records of that write, in order; those from `acknowledged` on are not acknowledged yet. */
  private delivering: T[] = [];
  private acknowledged = 0;
  private header: Buffer | undefined;
  private wakeUp: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ResolvedSinkOptions<T>) {
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
    const value = this.options.value as Exclude<ResolvedSinkOptions<T>['value'], (record: T) => Buffer>;
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
