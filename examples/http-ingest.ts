/**
 * An HTTP ingest server that drains request bodies at full speed through a hopper, so a slow
 * downstream never slows the client; the bytes come out in order, at the consumer's pace.
 *
 *   npx tsx examples/http-ingest.ts --port 8080
 *   curl --data-binary @big.file http://127.0.0.1:8080/ingest
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { createHopperStreams, type HopperStats } from '../lib/index.js';

/** What the slow consumer saw of one upload. */
export interface Ingested {
  bytes: number;
  sha256: string;
  /** When the client's upload had been fully received (ms since the request arrived). */
  receivedMs: number;
  /** Records the hopper still held (not yet taken by the consumer) when the body had been received. */
  heldWhenReceived: number;
  /** When the consumer had processed the last byte. */
  consumedMs: number;
  peakMemoryBytes: number;
  stats: HopperStats;
}

export interface IngestServerOptions {
  maxMemoryBytes?: number;
  /** The consumer waits this long after each chunk: a deliberately slow downstream. */
  consumerDelayMs?: number;
  dataDir?: string;
  onIngested?: (result: Ingested) => void;
}

/**
 * A server whose POST /ingest pipes the body into a hopper and answers as soon as the body has
 * been received; a slow consumer drains the hopper behind it.
 */
export function createIngestServer(options: IngestServerOptions = {}): http.Server {
  const { maxMemoryBytes = 16 * 1024 * 1024, consumerDelayMs = 2, dataDir, onIngested } = options;
  let uploads = 0;
  return http.createServer((request, response) => {
    if (request.method !== 'POST' || request.url !== '/ingest') {
      response.writeHead(404).end();
      return;
    }
    const started = performance.now();
    const hopper = createHopperStreams<Buffer>({ maxMemoryBytes, dataDir, name: `upload-${process.pid}-${++uploads}` });
    let receivedMs = 0;
    let heldWhenReceived = 0;
    hopper.writable.on('finish', () => {
      receivedMs = performance.now() - started;
      const { memoryRecords, diskRecords } = hopper.stats();
      heldWhenReceived = memoryRecords + diskRecords;
      response.writeHead(202, { 'content-type': 'application/json' }).end(JSON.stringify({ accepted: hopper.stats().recordsIn }));
    });
    request.on('error', (err) => hopper.destroy(err));
    request.pipe(hopper.writable);

    void (async () => {
      const hash = createHash('sha256');
      let bytes = 0;
      let peakMemoryBytes = 0;
      for await (const chunk of hopper.readable) {
        hash.update(chunk);
        bytes += chunk.length;
        peakMemoryBytes = Math.max(peakMemoryBytes, hopper.stats().memoryBytes);
        await sleep(consumerDelayMs);
      }
      onIngested?.({
        bytes,
        sha256: hash.digest('hex'),
        receivedMs,
        heldWhenReceived,
        consumedMs: performance.now() - started,
        peakMemoryBytes,
        stats: hopper.stats(),
      });
    })().catch((err: unknown) => {
      console.error('ingest consumer failed:', err);
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '8080' } } });
  const server = createIngestServer({
    onIngested: (result) =>
      console.log(
        `ingested ${result.bytes} bytes, sha256 ${result.sha256}; received in ${result.receivedMs.toFixed(0)} ms, consumed in ${result.consumedMs.toFixed(0)} ms`,
      ),
  });
  server.listen(Number(values.port), '127.0.0.1', () => {
    console.log(`POST bodies to http://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`);
  });
}
