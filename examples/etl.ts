/**
 * ETL: a fast object source piped into a hopper, drained by a slow sink.
 * The source never waits for the sink; what the memory budget cannot hold pages to disk.
 *
 *   npx tsx examples/etl.ts --records 200000
 */
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { createHopperStreams } from '../lib/index.js';

export interface Row {
  id: number;
  name: string;
  amount: number;
}

const rowSchema = {
  type: 'record',
  name: 'Row',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'name', type: 'string' },
    { name: 'amount', type: 'double' },
  ],
};

export interface EtlResult {
  loaded: number;
  inOrder: boolean;
  /** Milliseconds from start until the source had handed over its last row. */
  extractMs: number;
  /** Milliseconds from start until the sink had stored the last row. */
  loadMs: number;
  spilled: number;
  peakMemoryBytes: number;
}

/** Extracts `records` rows from a fast source and loads them into a sink that stalls every `sinkBatch` rows. */
export async function runEtl(records: number, maxMemoryBytes = 1024 * 1024, sinkBatch = 500): Promise<EtlResult> {
  const started = performance.now();
  const hopper = createHopperStreams<Row>({ schema: rowSchema, maxMemoryBytes });
  let peakMemoryBytes = 0;
  let extractMs = 0;
  hopper.writable.on('finish', () => {
    extractMs = performance.now() - started;
  });

  const source = Readable.from(
    (function* () {
      for (let id = 0; id < records; id++) yield { id, name: `customer-${id % 977}`, amount: ((id * 37) % 10_000) / 100 };
    })(),
  );
  source.pipe(hopper.writable);

  let loaded = 0;
  let inOrder = true;
  const sink = new Writable({
    objectMode: true,
    write(row: Row, _encoding, callback) {
      inOrder &&= row.id === loaded;
      loaded++;
      peakMemoryBytes = Math.max(peakMemoryBytes, hopper.stats().memoryBytes);
      if (loaded % sinkBatch === 0) sleep(1).then(() => callback(), callback);
      else callback();
    },
  });
  await pipeline(hopper.readable, sink);
  return { loaded, inOrder, extractMs, loadMs: performance.now() - started, spilled: hopper.stats().spilled, peakMemoryBytes };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { records: { type: 'string', default: '200000' } } });
  const result = await runEtl(Number(values.records));
  console.log(
    `loaded ${result.loaded} rows (in order: ${result.inOrder}); source done after ${result.extractMs.toFixed(0)} ms, ` +
      `sink done after ${result.loadMs.toFixed(0)} ms; ${result.spilled} rows went through disk, peak memory ${result.peakMemoryBytes} bytes`,
  );
}
