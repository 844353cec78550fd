// Starts librdkafka's mock cluster (test/helpers/kafka-mock.c) for the Kafka tests: compiles it
// into .tmp/ when CI's .ci/run has not, reads the bootstrap list from its stdout, and takes its
// brokers down and up with signals.
import { execFile, spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../..', import.meta.url));
const source = path.join(root, 'test', 'helpers', 'kafka-mock.c');
export const MOCK_BINARY = path.join(root, '.tmp', 'kafka-mock');

/** Compiles the mock unless an up-to-date binary exists; fails saying what to install. */
export async function buildMock(): Promise<string> {
  const built = fs.statSync(MOCK_BINARY, { throwIfNoEntry: false });
  if (built && built.mtimeMs >= fs.statSync(source).mtimeMs) return MOCK_BINARY;
  fs.mkdirSync(path.dirname(MOCK_BINARY), { recursive: true });
  // Built under a name of its own, then renamed: test files that start at once never run half a file.
  const temporary = `${MOCK_BINARY}.${process.pid}`;
  try {
    await promisify(execFile)('gcc', ['-O2', '-o', temporary, source, '-lrdkafka']);
  } catch (err) {
    throw new Error(
      `could not compile the Kafka mock cluster (${(err as Error).message.trim()}); ` +
        'install gcc and librdkafka-dev (apt-get install -y gcc librdkafka-dev), as .ci/run does',
    );
  }
  fs.renameSync(temporary, MOCK_BINARY);
  return MOCK_BINARY;
}

export interface MockCluster {
  /** The bootstrap addresses, `127.0.0.1:PORT` each. */
  brokers: string[];
  pid: number;
  /** Takes every broker down; resolves once the mock says they are. */
  down(): Promise<void>;
  /** Brings every broker back up; resolves once the mock says they are. */
  up(): Promise<void>;
  /** Ends the mock (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts a mock cluster with the given topics (`name` or `name:partitions`); `topicErrors` maps a
 * topic to the Kafka protocol error code its metadata requests get. The test's teardown ends it.
 */
export async function startMock(
  t: { teardown(fn: () => Promise<void> | void): void },
  topics: string[],
  options: { brokers?: number; topicErrors?: Record<string, number> } = {},
): Promise<MockCluster> {
  const binary = await buildMock();
  const errorArgs = Object.entries(options.topicErrors ?? {}).flatMap(([topic, code]) => ['-e', `${topic}=${code}`]);
  const args = ['-b', String(options.brokers ?? 3), ...errorArgs, ...topics];
  const child: ChildProcessByStdio<null, Readable, Readable> = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = once(child, 'exit');
  exited.catch(() => {}); // a spawn failure is reported by nextLine()
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async (expected: string): Promise<string> => {
    const next = await Promise.race([lines.next(), exited.then(() => ({ done: true as const, value: undefined }))]);
    if (next.done) throw new Error(`the Kafka mock exited while ${expected} was awaited: ${stderr.trim()}`);
    return next.value;
  };
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited;
    }
  };
  // Ended by the test's teardown whatever happens next, a wait for its first line included.
  t.teardown(stop);
  try {
    const bootstrap = await nextLine('the bootstrap list');
    return {
      brokers: bootstrap.trim().split(','),
      pid: child.pid as number,
      async down() {
        child.kill('SIGUSR1');
        const line = await nextLine('"down"');
        if (line !== 'down') throw new Error(`the Kafka mock said ${JSON.stringify(line)} instead of "down"`);
      },
      async up() {
        child.kill('SIGUSR2');
        const line = await nextLine('"up"');
        if (line !== 'up') throw new Error(`the Kafka mock said ${JSON.stringify(line)} instead of "up"`);
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A message read back from the mock. */
export interface ReadMessage {
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
}

/**
 * Reads `count` messages of `topic` from the beginning with a kafkajs consumer, then checks with
 * the high-water marks that the topic holds exactly that many (so none was written twice).
 */
export async function readTopic(brokers: string[], topic: string, count: number): Promise<{ messages: ReadMessage[]; stored: number }> {
  const { Kafka, logLevel } = (await import('kafkajs')).default;
  const kafka = new Kafka({ clientId: 'hopper-test-reader', brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  let stored = 0;
  try {
    for (const { high } of await admin.fetchTopicOffsets(topic)) stored += Number(high);
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({ groupId: `hopper-test-${process.pid}-${Math.random().toString(36).slice(2)}`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  const messages: ReadMessage[] = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      consumer
        .run({
          eachMessage: async ({ partition, message }) => {
            messages.push({ partition, offset: message.offset, key: message.key, value: message.value });
            if (messages.length === count) resolve();
          },
        })
        .catch(reject);
      if (count === 0) resolve();
    });
  } finally {
    await consumer.disconnect();
  }
  return { messages, stored };
}
