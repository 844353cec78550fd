import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createHopperStreams, type SegmentEvent } from '../lib/index.js';
import { diskSettled, tempDataDir } from './helpers/index.js';

// Sealed segments read by an Avro implementation that is not avsc: Apache Avro's Python library
// (Debian's python3-avro, which .ci/run installs). Where it cannot be had, the test says so.

const PYTHON = '/usr/bin/python3';
const READER = `
import json, sys, base64
from avro.datafile import DataFileReader
from avro.io import DatumReader
def plain(value):
    if isinstance(value, bytes):
        return {'$bytes': base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
out = []
for name in sys.argv[1:]:
    with open(name, 'rb') as f:
        reader = DataFileReader(f, DatumReader())
        out.extend(plain(record) for record in reader)
        reader.close()
print(json.dumps(out))
`;

const pythonAvro = spawnSync(PYTHON, ['-c', 'import avro.datafile'], { stdio: 'ignore' }).status === 0;

/** Without Python's avro the check cannot run: say so in the test log (the issue allows it; CI installs it). */
function notCheckable(t: ExecutionContext): boolean {
  if (pythonAvro) return false;
  t.log(`NOT CHECKED: ${PYTHON} cannot import avro; install Debian's python3-avro (.ci/run does) to run this check`);
  t.pass();
  return true;
}

function readWithPython(files: string[]): unknown[] {
  return JSON.parse(execFileSync(PYTHON, ['-c', READER, ...files], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }));
}

const schema = {
  type: 'record',
  name: 'Order',
  namespace: 'shop',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'customer', type: 'string' },
    { name: 'total', type: 'double' },
    { name: 'paid', type: 'boolean' },
    { name: 'status', type: { type: 'enum', name: 'Status', symbols: ['NEW', 'PAID', 'SHIPPED'] } },
    {
      name: 'lines',
      type: {
        type: 'array',
        items: {
          type: 'record',
          name: 'Line',
          fields: [
            { name: 'sku', type: 'string' },
            { name: 'qty', type: 'int' },
          ],
        },
      },
    },
    { name: 'attributes', type: { type: 'map', values: 'string' } },
    { name: 'note', type: ['null', 'string'], default: null },
    { name: 'blob', type: 'bytes' },
  ],
};

function order(i: number) {
  return {
    id: 10_000_000_000 + i,
    customer: `customer-${i % 97} ✓`,
    total: i * 1.25,
    paid: i % 2 === 0,
    status: ['NEW', 'PAID', 'SHIPPED'][i % 3],
    lines: Array.from({ length: i % 4 }, (_, k) => ({ sku: `sku-${k}`, qty: k + 1 })),
    attributes: { channel: i % 5 === 0 ? 'web' : 'shop' },
    note: i % 7 === 0 ? null : `note ${i}`,
    blob: Buffer.from([i % 256, 0, 255]),
  };
}

function sealedCopies(hopper: { on(event: 'segment', listener: (event: SegmentEvent) => void): unknown }, aside: string): string[] {
  fs.mkdirSync(aside, { recursive: true });
  const files: string[] = [];
  hopper.on('segment', (event) => {
    if (event.action !== 'sealed') return;
    const copy = path.join(aside, path.basename(event.file));
    fs.copyFileSync(event.file, copy);
    files.push(copy);
  });
  return files;
}

for (const codec of ['null', 'deflate'] as const) {
  test(`Avro interop - sealed segments (codec ${codec}) decode with Apache Avro's Python reader to the records written`, async (t) => {
    if (notCheckable(t)) return;
    const dir = tempDataDir();
    t.teardown(dir.remove);
    const hopper = createHopperStreams({ dataDir: dir.dataDir, schema, maxMemoryBytes: 0, maxSegmentBytes: codec === 'deflate' ? 2_000 : 8_000, codec });
    const files = sealedCopies(hopper, path.join(dir.dataDir, 'aside'));
    const written = Array.from({ length: 600 }, (_, i) => order(i));
    for (const record of written) hopper.send(record);
    await diskSettled(hopper); // sealed once their blocks are on disk (written in the background)
    hopper.destroy();
    t.true(files.length >= 3);
    const decoded = readWithPython(files);
    const expected = written.slice(0, decoded.length).map((record) => ({ ...record, blob: { $bytes: record.blob.toString('base64') } }));
    t.true(decoded.length > 300);
    t.deepEqual(decoded, expected);
  });
}

test('Avro interop - schemaless segments decode with the Python reader: bytes, strings, JSON text and V8 bytes', async (t) => {
  if (notCheckable(t)) return;
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<unknown>({ dataDir: dir.dataDir, maxMemoryBytes: 0, maxSegmentBytes: 1 });
  const files = sealedCopies(hopper, path.join(dir.dataDir, 'aside'));
  hopper.send(Buffer.from([1, 2, 3]));
  hopper.send('héllo');
  hopper.send({ a: [1, null, 'x'] });
  hopper.send(new Map([['k', 1]]));
  await diskSettled(hopper);
  hopper.destroy();
  const decoded = readWithPython(files) as unknown[];
  t.deepEqual(decoded.slice(0, 3), [{ $bytes: Buffer.from([1, 2, 3]).toString('base64') }, 'héllo', { data: '{"a":[1,null,"x"]}' }]);
  // A value JSON cannot carry is the same Value record, its data the V8 serialization as Avro bytes.
  const map = decoded[3] as { data: { $bytes: string } };
  t.deepEqual(Object.keys(map), ['data']);
  t.true(Buffer.from(map.data.$bytes, 'base64').length > 0);
});
