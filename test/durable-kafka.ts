import { once } from 'node:events';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import kafkajs from 'kafkajs';
import { endChild, spawnChild } from './helpers/children.js';
import { tempDataDir } from './helpers/index.js';
import type { IngestRecord } from './helpers/ingest-child.js';
import { startMock } from './helpers/kafka-mock.js';
import { seededRandom } from './helpers/power-cut-fs.js';
import { within } from './helpers/wait.js';

// Issue 24's end-to-end test of the Kafka hand-off: an HTTP ingest (test/helpers/ingest-child.ts)
// writes into a durable hopper and answers 200 once the records are durable; the hopper feeds a
// Kafka sink, whose 'ack' acknowledges in the hopper what the brokers acknowledged (the recipe of
// docs/kafka.md); librdkafka's mock cluster stands for Kafka. The brokers go down, the posts go
// on, the ingest is killed with SIGKILL in the middle of them and started again on the same
// directory, the brokers come back: every record answered 200 must arrive, in per-key order.
// Duplicates are allowed (at least once) and counted.

const ingestChild = fileURLToPath(new URL('helpers/ingest-child.ts', import.meta.url));
const KEYS = 12;
const POSTERS = 4;
const PER_POST = 20;
const SEED = Number(process.env.HOPPER_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));

interface Ingest {
  port: number;
  kill(): Promise<void>;
}

async function startIngest(t: { teardown(fn: () => void | Promise<void>): void }, settings: Record<string, unknown>): Promise<Ingest> {
  const child = spawnChild(t, process.execPath, ['--import', 'tsx/esm', ingestChild, JSON.stringify(settings)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'close');
  const port = await within(
    new Promise<number>((resolve, reject) => {
      lines.on('line', (line) => {
        const match = /^listening (\d+)$/.exec(line);
        if (match) resolve(Number(match[1]));
      });
      exited.then(() => reject(new Error(`the ingest exited: ${stderr.slice(-2000)}`)), reject);
    }),
    'the ingest listening',
  );
  return { port, kill: () => endChild(child) };
}

/** Posts one body; resolves with the HTTP status, or 0 when the connection failed (the ingest was killed). */
function post(port: number, records: IngestRecord[]): Promise<number> {
  return new Promise((resolve) => {
    const request = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/records', agent: false }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
      response.on('error', () => resolve(0));
    });
    request.on('error', () => resolve(0));
    request.end(records.map((r) => JSON.stringify(r)).join('\n'));
  });
}

function getStats(port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/stats', agent: false }, (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve(JSON.parse(text) as Record<string, number>));
      })
      .on('error', reject);
  });
}

/** Reads `topic` from the start until `enough(messages)` holds. */
async function readUntil(brokers: string[], topic: string, enough: (messages: IngestRecord[]) => boolean): Promise<IngestRecord[]> {
  const { Kafka, logLevel } = kafkajs;
  const kafka = new Kafka({ clientId: 'hopper-test-reader', brokers, logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: `hopper-durable-${process.pid}-${Math.random().toString(36).slice(2)}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  const messages: IngestRecord[] = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await within(
      new Promise<void>((resolve, reject) => {
        consumer
          .run({
            // One partition's messages come in offset order: per key, the order Kafka stored them in.
            eachMessage: async ({ message }) => {
              messages.push(JSON.parse(String(message.value)) as IngestRecord);
              if (enough(messages)) resolve();
            },
          })
          .catch(reject);
      }),
      'every record answered 200 arriving in Kafka',
    );
  } finally {
    await consumer.disconnect();
  }
  return messages;
}

test('durable: true - HTTP ingest to Kafka: brokers down, kill -9 of the ingest, restart, brokers up: every record answered 200 arrives, in per-key order', async (t) => {
  t.timeout(5 * 60_000); // a safety net; ava's own fires after 2 minutes without a result
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const random = seededRandom(SEED);
  const topic = 'ingest';
  const mock = await startMock(t, [`${topic}:3`]);
  const settings = { dataDir: dir.dataDir, name: 'ingest', brokers: mock.brokers, topic, fsync: 'batch' };

  const seqs = new Map<string, number>();
  const stored: IngestRecord[] = []; // answered 200
  let refused = 0;
  // Concurrent posts are accepted in any order: each poster has keys of its own, so that per key
  // the order of the seqs is the order the ingest accepted them in.
  const body = (poster: number | undefined): IngestRecord[] =>
    Array.from({ length: PER_POST }, () => {
      const k = Math.floor(random() * KEYS);
      const key = `k${poster === undefined ? k : poster + POSTERS * Math.floor(k / POSTERS)}`;
      const seq = (seqs.get(key) ?? 0) + 1;
      seqs.set(key, seq);
      return { key, seq };
    });
  const postOne = async (port: number, poster?: number): Promise<void> => {
    const records = body(poster);
    const status = await post(port, records);
    if (status === 200) stored.push(...records);
    else refused++;
  };

  let ingest = await startIngest(t, settings);
  for (let i = 0; i < 10; i++) await postOne(ingest.port);
  await mock.down();
  for (let i = 0; i < 10; i++) await postOne(ingest.port);
  // Posts in flight, POSTERS at a time, until the ingest is dead: it is killed after a random
  // number of answers, with the other posts in flight.
  const killAfter = 1 + Math.floor(random() * 12);
  let answered = 0;
  let killed: Promise<void> | undefined;
  let dead = false;
  const port = ingest.port;
  const first = ingest;
  const poster = async (index: number): Promise<void> => {
    while (!dead) {
      await postOne(port, index);
      if (++answered === killAfter) {
        killed = first.kill().then(() => {
          dead = true;
        });
      }
    }
  };
  await Promise.all(Array.from({ length: POSTERS }, (_, index) => poster(index)));
  await killed;
  ingest = await startIngest(t, settings);
  const restarted = (await getStats(ingest.port)) as { recovered: number };
  for (let i = 0; i < 10; i++) await postOne(ingest.port);
  await mock.up();
  for (let i = 0; i < 5; i++) await postOne(ingest.port);

  const expected = new Set(stored.map((r) => `${r.key}/${r.seq}`));
  const seen = new Set<string>();
  const messages = await readUntil(mock.brokers, topic, (got) => {
    const last = got.at(-1)!;
    seen.add(`${last.key}/${last.seq}`);
    return [...expected].every((id) => seen.has(id));
  });

  // Per key: a message is new (above every seq seen for its key) or a duplicate of one seen; a
  // first occurrence below the highest seen would be a record overtaken by a later one.
  const highest = new Map<string, number>();
  const firsts = new Set<string>();
  let duplicates = 0;
  const outOfOrder: string[] = [];
  for (const { key, seq } of messages) {
    const id = `${key}/${seq}`;
    if (firsts.has(id)) {
      duplicates++;
      continue;
    }
    firsts.add(id);
    if (seq <= (highest.get(key) ?? 0)) outOfOrder.push(`${id} after ${key}/${highest.get(key)}`);
    highest.set(key, Math.max(seq, highest.get(key) ?? 0));
  }
  t.log(
    `seed ${SEED}: ${stored.length} records answered 200, ${refused} posts cut by the kill, ${restarted.recovered} records recovered at the restart, ` +
      `${messages.length} messages in Kafka, ${duplicates} duplicates`,
  );
  t.deepEqual(outOfOrder, [], `per-key order (seed ${SEED})`);
  t.true(
    [...expected].every((id) => firsts.has(id)),
    'every record answered 200 is in Kafka',
  );
  t.true(stored.length >= 35 * PER_POST, 'the posts before and after the kill were answered');
  t.true(restarted.recovered >= 10 * PER_POST, 'the restart found the records posted while the brokers were down');
  await ingest.kill();
});
