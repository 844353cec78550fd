/**
 * A `stream.pipeline` composition: source → hopper (one Duplex) → transform → slow sink.
 *
 *   npx tsx examples/pipeline.ts --records 100000
 */
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { createHopperStream } from '../lib/index.js';

export interface PipelineResult {
  lines: string[];
  spilled: number;
}

/** Numbers flow from a fast source through a hopper into a transform that formats them, then a slow sink. */
export async function runPipeline(records: number, maxMemoryBytes = 64 * 1024): Promise<PipelineResult> {
  const hopper = createHopperStream<number>({ maxMemoryBytes });
  const lines: string[] = [];
  await pipeline(
    Readable.from(Array.from({ length: records }, (_, i) => i)),
    hopper,
    new Transform({
      objectMode: true,
      transform(n: number, _encoding, callback) {
        callback(null, `${n}\t${(n * n) % 9973}`);
      },
    }),
    new Writable({
      objectMode: true,
      write(line: string, _encoding, callback) {
        lines.push(line);
        if (lines.length % 1_000 === 0) sleep(1).then(() => callback(), callback);
        else callback();
      },
    }),
  );
  return { lines, spilled: hopper.stats().spilled };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { records: { type: 'string', default: '100000' } } });
  const { lines, spilled } = await runPipeline(Number(values.records));
  console.log(`${lines.length} lines through the pipeline (${spilled} records went through disk); last: ${lines.at(-1)}`);
}
