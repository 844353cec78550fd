// A producer for CLI tests: writes BYTES random bytes to stdout in 64 KiB chunks (sleeping
// PAUSE_MS between chunks, if given), then writes {"sha256", "bytes"} of what it wrote to
// DONE_FILE and exits. Usage: generate.ts BYTES DONE_FILE [PAUSE_MS]
import crypto from 'node:crypto';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const [bytesArg, doneFile, pauseArg] = process.argv.slice(2);
const total = Number(bytesArg);
const pause = Number(pauseArg ?? 0);
const hash = crypto.createHash('sha256');
const write = (chunk: Buffer): Promise<void> => new Promise((resolve, reject) => {
  process.stdout.write(chunk, (err) => (err ? reject(err) : resolve()));
});

for (let sent = 0; sent < total;) {
  const chunk = crypto.randomBytes(Math.min(64 * 1024, total - sent));
  hash.update(chunk);
  await write(chunk);
  sent += chunk.length;
  if (pause > 0) await sleep(pause);
}
// Written aside and renamed: the consumer never sees a half-written file.
fs.writeFileSync(`${doneFile!}.tmp`, JSON.stringify({ sha256: hash.digest('hex'), bytes: total }));
fs.renameSync(`${doneFile!}.tmp`, doneFile!);
