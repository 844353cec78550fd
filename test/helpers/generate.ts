// A producer for CLI tests: writes BYTES random bytes to stdout in 64 KiB chunks, then writes
// {"sha256", "bytes"} of what it wrote to DONE_FILE and exits. With STEP_FILE, chunk n (from 1)
// waits until STEP_FILE holds a number >= n: the test releases the chunks one by one.
// Usage: generate.ts BYTES DONE_FILE [STEP_FILE]
import './end-with-parent.js';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const [bytesArg, doneFile, stepFile] = process.argv.slice(2);
const total = Number(bytesArg);
const hash = crypto.createHash('sha256');
const write = (chunk: Buffer): Promise<void> =>
  new Promise((resolve, reject) => {
    process.stdout.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
const released = (): number => {
  try {
    return Number(fs.readFileSync(stepFile!, 'utf8'));
  } catch {
    return 0;
  }
};

for (let sent = 0, n = 0; sent < total; n++) {
  if (stepFile !== undefined) while (released() < n) await sleep(10);
  const chunk = crypto.randomBytes(Math.min(64 * 1024, total - sent));
  hash.update(chunk);
  await write(chunk);
  sent += chunk.length;
}
// Written aside and renamed: the consumer never sees a half-written file.
fs.writeFileSync(`${doneFile!}.tmp`, JSON.stringify({ sha256: hash.digest('hex'), bytes: total }));
fs.renameSync(`${doneFile!}.tmp`, doneFile!);
