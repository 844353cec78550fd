import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { createIngestServer, type Ingested } from '../examples/http-ingest.js';
import { tempDataDir } from './helpers/index.js';

const MiB = 1024 * 1024;

/** Uploads `size` random bytes in 64 KiB writes, honouring backpressure; resolves with the body's sha256 and the response. */
function upload(port: number, size: number): Promise<{ sha256: string; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const request = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/ingest', headers: { 'content-type': 'application/octet-stream' } });
    request.on('error', reject);
    request.on('response', (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (text: string) => (body += text));
      response.on('end', () => resolve({ sha256: hash.digest('hex'), status: response.statusCode ?? 0, body }));
    });
    let sent = 0;
    const writeMore = (): void => {
      while (sent < size) {
        const chunk = randomBytes(Math.min(64 * 1024, size - sent));
        hash.update(chunk);
        sent += chunk.length;
        if (!request.write(chunk)) {
          request.once('drain', writeMore);
          return;
        }
      }
      request.end();
    };
    writeMore();
  });
}

test('HTTP ingest - a 64 MiB upload is drained at full speed into a slow consumer; bytes match, memory stays within budget, disk is used', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const maxMemoryBytes = 4 * MiB;
  let onIngested!: (result: Ingested) => void;
  const ingested = new Promise<Ingested>((resolve) => (onIngested = resolve));
  const server = createIngestServer({ maxMemoryBytes, consumerDelayMs: 3, dataDir: dir.dataDir, onIngested });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;

  const size = 64 * MiB;
  const sent = await upload(port, size);
  t.is(sent.status, 202);
  const result = await ingested;

  t.is(result.bytes, size);
  t.is(result.sha256, sent.sha256, 'the bytes out are the bytes uploaded');
  t.true(result.peakMemoryBytes <= maxMemoryBytes, `peak memory ${result.peakMemoryBytes} of ${maxMemoryBytes}`);
  t.true(result.stats.spilled > 0, 'the disk tier was used');
  t.is(result.stats.recordsIn, result.stats.recordsOut);
  // The upload was not paced by the consumer: it was answered while records were still held for
  // it. (Counted, not timed: how much sooner is a matter of speed, for bench/.)
  t.true(result.heldWhenReceived > 0, `${result.heldWhenReceived} records held when the upload was answered`);
  t.deepEqual(dir.files(), [], 'the hopper removed its files');
});
