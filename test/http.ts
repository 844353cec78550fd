import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import test from 'ava';
import { createIngestServer, type Ingested } from '../examples/http-ingest.js';
import { createHopperStreams, HopperError } from '../lib/index.js';
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

for (const [tier, maxMemoryBytes] of [
  ['in memory', 16 * MiB],
  ['on disk', 64 * 1024],
] as const) {
  test(`HTTP ingest - pipeline(request, hopper.writable) with an upload aborted mid-body: every chunk received is delivered ${tier}, then ERR_HOPPER_PRODUCER_FAILED`, async (t) => {
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams<Buffer>({ dataDir: dir.dataDir, maxMemoryBytes, maxSegmentBytes: 256 * 1024 });
    let received = 0;
    let onReceived!: () => void;
    const sentSize = 1 * MiB;
    const allReceived = new Promise<void>((resolve) => (onReceived = resolve));
    let onPipelineFailed!: (err: unknown) => void;
    const pipelineFailed = new Promise<unknown>((resolve) => (onPipelineFailed = resolve));
    const server = http.createServer((request) => {
      request.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received === sentSize) onReceived();
      });
      pipeline(request, hopper.writable).then(() => onPipelineFailed(undefined), onPipelineFailed);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => server.close());
    const { port } = server.address() as AddressInfo;

    // The body announces twice what is sent: the client goes away half-way through.
    const body = randomBytes(sentSize);
    const request = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/ingest', headers: { 'content-length': String(2 * sentSize) } });
    request.on('error', () => {});
    request.write(body);
    await allReceived;
    request.destroy();
    const cause = await pipelineFailed;
    t.true(cause instanceof Error, 'the request failed');
    if (tier === 'on disk') t.true(hopper.stats().diskRecords > 0, 'the backlog is on disk');
    else t.is(hopper.stats().diskRecords, 0, 'the backlog is in memory');

    const chunks: Buffer[] = [];
    let error: unknown;
    try {
      for await (const chunk of hopper.readable) chunks.push(chunk);
    } catch (err) {
      error = err;
    }
    t.is(chunks.length, hopper.stats().recordsIn, 'every chunk accepted is delivered');
    t.true(Buffer.concat(chunks).equals(body), 'every byte received, in order');
    t.true(HopperError.is(error, 'ERR_HOPPER_PRODUCER_FAILED'), String(error));
    t.is((error as Error).cause, cause);
    t.deepEqual(dir.files(), [], 'the hopper removed its files');
  });
}
