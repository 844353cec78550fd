// The HTTP ingest of test/durable-kafka.ts: POST /records (NDJSON, one `{ key, seq }` a line)
// writes each record into a durable hopper and answers 200 once every write callback fired (the
// records are durable under the fsync policy), 500 otherwise. The hopper's readable is piped to a
// Kafka sink, and the sink's 'ack' acknowledges in the hopper what the brokers acknowledged: the
// recipe of docs/kafka.md. The producer connects in the background, so that the ingest starts and
// takes records while the brokers are down. GET /stats answers `hopper.stats()`. Argument: the
// settings as JSON. Prints `listening <port>` once it takes requests.
import './end-with-parent.js';
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import kafkajs from 'kafkajs';
import { createHopperStreams, type HopperOptions } from '../../lib/index.js';
import { createKafkaSink } from '../../lib/kafka.js';

interface Settings {
  dataDir: string;
  name: string;
  brokers: string[];
  topic: string;
  fsync: 'always' | 'batch' | 'never';
}

export interface IngestRecord {
  key: string;
  seq: number;
}

const settings = JSON.parse(process.argv[2]!) as Settings;
const recordSchema = {
  type: 'record',
  name: 'IngestRecord',
  fields: [
    { name: 'key', type: 'string' },
    { name: 'seq', type: 'long' },
  ],
} as const;

const hopper = createHopperStreams<IngestRecord>({
  dataDir: settings.dataDir,
  name: settings.name,
  schema: recordSchema,
  durable: true,
  fsync: settings.fsync,
  ack: 'manual',
  maxMemoryBytes: 16 * 1024,
  maxSegmentBytes: 16 * 1024,
} as unknown as HopperOptions) as ReturnType<typeof createHopperStreams<IngestRecord>> & { ack(count: number): void };

const server = http.createServer((request, response) => {
  if (request.method === 'GET' && request.url === '/stats') {
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(hopper.stats()));
    return;
  }
  if (request.method !== 'POST' || request.url !== '/records') {
    response.writeHead(404).end();
    return;
  }
  let body = '';
  request.setEncoding('utf8');
  request.on('data', (chunk: string) => (body += chunk));
  request.on('end', () => {
    const records = body
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as IngestRecord);
    let waiting = records.length;
    let failed: Error | undefined;
    const answer = (): void => {
      if (failed) response.writeHead(500).end(failed.message);
      else response.writeHead(200).end('stored');
    };
    if (waiting === 0) answer();
    for (const record of records) {
      hopper.writable.write(record, (err) => {
        failed ??= err ?? undefined;
        if (--waiting === 0) answer();
      });
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  process.stdout.write(`listening ${address.port}\n`);
});

const { Kafka, logLevel } = kafkajs;
const kafka = new Kafka({
  clientId: 'hopper-ingest',
  brokers: settings.brokers,
  logLevel: logLevel.NOTHING,
  connectionTimeout: 1_000,
  retry: { retries: 1, initialRetryTime: 50 },
});
const producer = kafka.producer({ idempotent: false, allowAutoTopicCreation: false });
for (;;) {
  try {
    await producer.connect();
    break;
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 100)); // the brokers are down: the hopper keeps what comes meanwhile
  }
}
const sink = createKafkaSink<IngestRecord>({
  producer,
  topic: settings.topic,
  key: (record) => record.key,
  value: (record) => Buffer.from(JSON.stringify(record)),
  maxBatchRecords: 50,
  retry: { initialMs: 20, maxMs: 200 },
});
// The recipe: the sink sends one batch at a time, in order, and says 'ack' once per batch the
// brokers acknowledged; those are the oldest records the hopper delivered and that are not acknowledged.
sink.on('ack', ({ records }) => hopper.ack(records.length));
process.stdout.write('connected\n');
await pipeline(hopper.readable, sink);
