/// <reference types="node" preserve="true" />
/**
 * `hopper-streams/kafka`: a Writable that hands records on to a Kafka producer and calls a write
 * back only once the brokers have acknowledged the batch that carried it. Behind a hopper, a send
 * that fails is retried with the same records, in the same order, while the hopper spills.
 */
import { resolveSinkOptions, type KafkaSinkOptions } from './kafka-options.js';
import { Sink, type KafkaSink } from './kafka-sink.js';

export type { KafkaAvroValue, KafkaSinkOptions } from './kafka-options.js';
export type { KafkaMessage, KafkaProducer, KafkaProducerRecord, KafkaRecordMetadata } from './kafka-producer.js';
export type { KafkaAckEvent, KafkaPartitionOffset, KafkaRetryEvent, KafkaSink, KafkaSinkStats } from './kafka-sink.js';

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
