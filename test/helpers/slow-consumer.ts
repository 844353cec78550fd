// A consumer for CLI tests that starts late: it reads nothing until GO_FILE exists (the test
// writes it when the moment has come), then reads stdin to the end and prints
// {"sha256", "bytes"}. The test ends it in its teardown if the moment never comes.
// Usage: slow-consumer.ts GO_FILE
import './end-with-parent.js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const [goFile] = process.argv.slice(2);
while (!fs.existsSync(goFile!)) await sleep(20);
const hash = crypto.createHash('sha256');
let bytes = 0;
for await (const chunk of process.stdin) {
  hash.update(chunk as Buffer);
  bytes += (chunk as Buffer).length;
}
process.stdout.write(JSON.stringify({ sha256: hash.digest('hex'), bytes }));
