// A consumer for CLI tests that starts late: it waits until the producer has written
// DONE_FILE (so the producer finished before anything was read), then DELAY_MS more, then
// reads stdin to the end and prints {"sha256", "bytes", "startedAfterProducerMs"}.
// Usage: slow-consumer.ts DONE_FILE DELAY_MS
import crypto from 'node:crypto';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const [doneFile, delayArg] = process.argv.slice(2);
const deadline = Date.now() + 20_000;
while (!fs.existsSync(doneFile!)) {
  if (Date.now() > deadline) {
    process.stderr.write('slow-consumer: the producer never finished: it was held back\n');
    process.exit(3);
  }
  await sleep(20);
}
const producerDone = Date.now();
await sleep(Number(delayArg));
const startedAfterProducerMs = Date.now() - producerDone;
const hash = crypto.createHash('sha256');
let bytes = 0;
for await (const chunk of process.stdin) {
  hash.update(chunk as Buffer);
  bytes += (chunk as Buffer).length;
}
process.stdout.write(JSON.stringify({ sha256: hash.digest('hex'), bytes, startedAfterProducerMs }));
