// The producer the Kafka sink talks to, structurally: the part of KafkaJS' API it uses. The
// package imports no Kafka client.

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
