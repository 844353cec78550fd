/**
 * An HTTP ingest server in front of Kafka: POST /events takes a body of NDJSON lines, each an
 * event of fixtures/schemas/event.avsc; a valid body goes through a hopper into a Kafka topic, as
 * Confluent-framed Avro keyed by `userId`. An invalid line refuses the whole body (400).
 *
 *   KAFKA_BROKERS=127.0.0.1:9092 npx tsx examples/http-to-kafka.ts
 *   curl --data-binary @events.ndjson http://127.0.0.1:8080/events
 *
 * Environment: KAFKA_BROKERS (required, comma-separated), KAFKA_TOPIC (default `events`),
 * SCHEMA_ID (the schema's registry id, default 1), PORT (default 8080, 0 for any),
 * ANSWER (`accepted`, the default: answer once the hopper holds the body; `acknowledged`: once
 * Kafka acknowledged every record of it), HOPPER_MAX_MEMORY_BYTES, HOPPER_DATA_DIR.
 * GET /stats shows the hopper's and the sink's counters. SIGTERM or SIGINT stops taking bodies,
 * waits until Kafka acknowledged everything accepted, and exits; a second signal exits at once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import avsc from 'avsc';
import kafkajs from 'kafkajs';
import { createHopperStreams, HopperError, type HopperOptions } from '../lib/index.js';
import { createKafkaSink, type KafkaProducer } from '../lib/kafka.js';
import { eventSchema, type Event } from './events.js';

/** When a POST is answered: once the hopper holds its records, or once Kafka acknowledged them. */
export type Answer = 'accepted' | 'acknowledged';

export interface KafkaIngestOptions {
  producer: KafkaProducer;
  topic: string;
  schemaId: number;
  answer?: Answer;
  hopper?: HopperOptions;
  /** Largest body taken, in bytes. */
  maxBodyBytes?: number;
}

export interface KafkaIngest {
  server: http.Server;
  /** Stops taking bodies; resolves once every accepted record is acknowledged by Kafka. */
  drain(): Promise<void>;
}

/** Parses and checks every line of a body; throws a message naming the first bad line. */
function parseBody(body: string, type: avsc.Type): Event[] {
  const events: Event[] = [];
  const lines = body.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw new Error(`line ${i + 1}: not JSON`);
    }
    let problem: string | undefined;
    type.isValid(value, { errorHook: (path) => (problem ??= `line ${i + 1}: field \`${path.join('.') || '(record)'}\` does not match the schema`) });
    if (problem) throw new Error(problem);
    events.push(value as Event);
  }
  return events;
}

export function createKafkaIngest(options: KafkaIngestOptions): KafkaIngest {
  const { producer, topic, schemaId, answer = 'accepted', maxBodyBytes = 16 * 1024 * 1024 } = options;
  const schema = eventSchema();
  const type = avsc.Type.forSchema(schema);
  const hopper = createHopperStreams<Event>({ ...options.hopper, schema });
  const sink = createKafkaSink<Event>({ producer, topic, key: (e) => e.userId, value: { schema, schemaId } });
  const delivered = pipeline(hopper.readable, sink);
  delivered.catch(() => {}); // reported by drain(), and by the requests still waiting

  // Bodies waiting for Kafka's acknowledgement, in the order their records went into the hopper:
  // the sink acknowledges records in that order, so each 'ack' settles them from the front.
  const waiting: Array<{ left: number; settle: (err?: Error) => void }> = [];
  sink.on('ack', ({ records }) => {
    let n = records.length;
    while (n > 0 && waiting.length > 0) {
      const head = waiting[0] as { left: number; settle: (err?: Error) => void };
      const take = Math.min(n, head.left);
      head.left -= take;
      n -= take;
      if (head.left === 0) {
        waiting.shift();
        head.settle();
      }
    }
  });
  delivered.catch((err: Error) => {
    for (const body of waiting.splice(0)) body.settle(err);
  });

  const reply = (response: http.ServerResponse, status: number, body: object): void => {
    response.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(body)}\n`);
  };

  const server = http.createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/stats') {
      reply(response, 200, { hopper: hopper.stats(), sink: sink.stats() });
      return;
    }
    if (request.method !== 'POST' || request.url !== '/events') {
      reply(response, 404, { error: 'POST NDJSON to /events' });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBodyBytes) chunks.push(chunk);
    });
    request.on('error', () => response.destroy());
    request.on('end', () => {
      if (size > maxBodyBytes) return reply(response, 413, { error: `the body is larger than ${maxBodyBytes} bytes` });
      let events: Event[];
      try {
        events = parseBody(Buffer.concat(chunks).toString('utf8'), type);
      } catch (err) {
        return reply(response, 400, { error: (err as Error).message });
      }
      try {
        // send() takes a valid record at once, or throws ERR_HOPPER_FULL (the disk cap is reached):
        // the records of one body go in together, each body's after the one before.
        for (const event of events) hopper.send(event);
      } catch (err) {
        if (HopperError.is(err, 'ERR_HOPPER_FULL')) return reply(response, 503, { error: 'the buffer is full; retry later' });
        return reply(response, 500, { error: (err as Error).message });
      }
      if (answer === 'accepted' || events.length === 0) return reply(response, 202, { accepted: events.length });
      waiting.push({
        left: events.length,
        settle: (err) => (err ? reply(response, 502, { error: err.message }) : reply(response, 200, { acknowledged: events.length })),
      });
    });
  });

  return {
    server,
    async drain() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      hopper.writable.end();
      await delivered;
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const brokers = (process.env.KAFKA_BROKERS ?? '').split(',').filter(Boolean);
  if (brokers.length === 0) {
    console.error('set KAFKA_BROKERS, e.g. KAFKA_BROKERS=127.0.0.1:9092 npx tsx examples/http-to-kafka.ts');
    process.exit(2);
  }
  const answer = (process.env.ANSWER ?? 'accepted') as Answer;
  if (answer !== 'accepted' && answer !== 'acknowledged') {
    console.error(`ANSWER must be accepted or acknowledged, got ${answer}`);
    process.exit(2);
  }
  const { Kafka, logLevel } = kafkajs;
  // The client gives up after a few quick retries of its own, and the sink takes over: it resends
  // the same batch with its own backoff for as long as the outage lasts. Not idempotent, for the
  // librdkafka mock cluster the tests use; a real cluster can take `idempotent: true`.
  const kafka = new Kafka({ clientId: 'http-to-kafka', brokers, logLevel: logLevel.ERROR, retry: { initialRetryTime: 100, retries: 3 } });
  const producer = kafka.producer({ idempotent: false, allowAutoTopicCreation: false });
  await producer.connect();
  const ingest = createKafkaIngest({
    producer,
    topic: process.env.KAFKA_TOPIC ?? 'events',
    schemaId: Number(process.env.SCHEMA_ID ?? 1),
    answer,
    hopper: {
      ...(process.env.HOPPER_MAX_MEMORY_BYTES ? { maxMemoryBytes: Number(process.env.HOPPER_MAX_MEMORY_BYTES) } : {}),
      ...(process.env.HOPPER_DATA_DIR ? { dataDir: process.env.HOPPER_DATA_DIR } : {}),
    },
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    console.log('draining: waiting for Kafka to acknowledge every accepted record');
    ingest
      .drain()
      .then(() => producer.disconnect())
      .then(() => {
        console.log('drained');
        process.exit(0);
      })
      .catch((err: unknown) => {
        console.error('failed:', err);
        process.exit(1);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  ingest.server.listen(Number(process.env.PORT ?? 8080), '127.0.0.1', () => {
    console.log(`listening on http://127.0.0.1:${(ingest.server.address() as AddressInfo).port}/events (answer: ${answer})`);
  });
}
