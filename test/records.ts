import fs from 'node:fs';
import avsc from 'avsc';
import test from 'ava';
import fc from 'fast-check';
import { createHopperStreams, HopperError } from '../lib/index.js';
import { createCodec } from '../lib/codec.js';
import { compileQuickCheck } from '../lib/quick-check.js';
import { collect, plain, tempDataDir } from './helpers/index.js';

async function roundTrip(records: unknown[], maxMemoryBytes: number): Promise<unknown[]> {
  const dir = tempDataDir();
  try {
    const hopper = createHopperStreams<unknown>({ dataDir: dir.dataDir, maxMemoryBytes });
    for (const record of records) hopper.send(record);
    const closed = hopper.close();
    const out = await collect(hopper.readable);
    await closed;
    return out;
  } finally {
    dir.remove();
  }
}

const samples: unknown[] = [
  Buffer.from([0, 1, 2, 3, 254, 255]),
  Buffer.alloc(0),
  'plain ascii',
  'ünïcödé ✓ 𝄞',
  '',
  { nested: { list: [1, 2.5, 'three', null, true] }, empty: {} },
  [1, [2, [3]]],
  42,
  -0.125,
  false,
];

for (const [tier, budget] of [
  ['memory', 1024 ** 2],
  ['disk', 0],
] as const) {
  test(`records without a schema - round-trip from ${tier}: Buffers byte-exact, strings as strings, the rest as structuredClone gives it`, async (t) => {
    const out = await roundTrip(samples, budget);
    t.deepEqual(out, samples);
    t.true(Buffer.isBuffer(out[0]));
    t.is(typeof out[2], 'string');
  });

  test(`records without a schema - a Uint8Array comes back as a Uint8Array with the same bytes (${tier})`, async (t) => {
    const backing = new Uint8Array([9, 8, 7, 6, 5, 4]);
    const view = backing.subarray(1, 4);
    const [out] = await roundTrip([view], budget);
    t.true(out instanceof Uint8Array && !Buffer.isBuffer(out));
    t.deepEqual([...(out as Uint8Array)], [8, 7, 6]);
  });
}

test('records with a schema - invalid records name the nested field path and the expected type', (t) => {
  const schema = {
    type: 'record',
    name: 'Order',
    fields: [
      { name: 'id', type: 'long' },
      { name: 'customer', type: { type: 'record', name: 'Customer', fields: [{ name: 'email', type: 'string' }] } },
      { name: 'lines', type: { type: 'array', items: 'int' } },
    ],
  };
  const hopper = createHopperStreams<unknown>({ schema });
  t.teardown(() => hopper.destroy());
  const nested = t.throws(() => hopper.send({ id: 1, customer: { email: null }, lines: [] }), { instanceOf: HopperError });
  t.deepEqual(nested!.path, ['customer', 'email']);
  t.regex(nested!.message, /field `customer.email` expected "string", got null \(null\)/);
  const inArray = t.throws(() => hopper.send({ id: 1, customer: { email: 'a@b' }, lines: [1, 'two'] }), { instanceOf: HopperError });
  t.deepEqual(inArray!.path, ['lines', '1']);
  const missing = t.throws(() => hopper.send({ id: 1 }), { instanceOf: HopperError });
  t.deepEqual(missing!.path, ['customer']);
  // avsc's int check computes `val | 0`, which throws for an object that cannot become a number.
  const unconvertible = t.throws(() => hopper.send({ id: 1, customer: { email: 'a@b' }, lines: [{ toString: '' }] }), { instanceOf: HopperError });
  t.is(unconvertible!.code, 'ERR_HOPPER_INVALID_RECORD');
  hopper.send({ id: 1, customer: { email: 'a@b' }, lines: [1, 2] });
  t.is(hopper.stats().recordsIn, 1);
});

test('records with a schema - records decoded from disk carry the same fields as those held in memory', async (t) => {
  const schema = {
    type: 'record',
    name: 'Tagged',
    fields: [
      { name: 'tag', type: ['null', 'string'], default: null },
      { name: 'blob', type: 'bytes' },
    ],
  };
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const hopper = createHopperStreams<{ tag: string | null; blob: Buffer }>({ dataDir: dir.dataDir, schema, maxMemoryBytes: 150 });
  const records = [
    { tag: 'a', blob: Buffer.from('one') },
    { tag: null, blob: Buffer.from('two') },
    { tag: 'c', blob: Buffer.alloc(100, 1) },
  ];
  for (const record of records) hopper.send(record);
  t.is(hopper.stats().spilled, 2);
  const closed = hopper.close();
  const out = await collect<{ tag: string | null; blob: Buffer }>(hopper.readable);
  await closed;
  t.deepEqual(
    out.map((record) => ({ ...record })),
    records,
  );
  t.deepEqual(plain(out), plain(records));
});

test('memory size estimate - exact for Buffer and string records, V8-like counts inside records', (t) => {
  const schemaless = createHopperStreams<unknown>({ maxMemoryBytes: Infinity });
  t.teardown(() => schemaless.destroy());
  const sizes = (record: unknown): number => {
    const before = schemaless.stats().memoryBytes;
    schemaless.send(record);
    return schemaless.stats().memoryBytes - before;
  };
  t.is(sizes(Buffer.alloc(1000)), 1000);
  t.is(sizes(new Uint8Array(10)), 10);
  t.is(sizes('héllo ✓'), Buffer.byteLength('héllo ✓'));
  // The record's own slot (8); an object: 24 + 8 per property; a small integer and booleans live in
  // their slot; a string is 16 + length; a fraction is a 16-byte heap number.
  t.is(sizes({ a: 1, b: 'xyz', c: true, d: null, e: 0.5 }), 8 + 24 + 5 * 8 + (16 + 3) + 16);
  t.is(sizes([1, 2]), 8 + 32 + 2 * 8);
  t.is(sizes({ blob: Buffer.alloc(7) }), 8 + 24 + 8 + 80 + 7);
  t.is(sizes(7), 8, 'no record is free');

  const schema = {
    type: 'record',
    name: 'Sized',
    fields: [
      { name: 'n', type: 'long' },
      { name: 'i', type: 'int' },
      { name: 's', type: 'string' },
      { name: 'list', type: { type: 'array', items: 'int' } },
      { name: 'inner', type: { type: 'record', name: 'Inner', fields: [{ name: 'b', type: 'bytes' }] } },
      { name: 'maybe', type: ['null', 'string'] },
    ],
  };
  const typed = createHopperStreams<unknown>({ schema, maxMemoryBytes: Infinity });
  t.teardown(() => typed.destroy());
  typed.send({ n: 1, i: 2, s: 'abcd', list: [1, 2, 3], inner: { b: Buffer.alloc(7) }, maybe: 'xy' });
  // long: a heap number (16); int: in its slot; the union is sized by the generic walk.
  t.is(typed.stats().memoryBytes, 8 + 24 + 6 * 8 + 16 + 0 + (16 + 4) + (32 + 3 * 8) + (24 + 8 + 80 + 7) + (16 + 2));
});

test('records larger than a 64 KiB block - Buffers of 64 KiB and more round-trip through disk, alone and after small ones', async (t) => {
  const sizes = [65_536, 10, 65_536, 200_000, 3, 65_535, 65_537, 1_000_000];
  const records = sizes.map((size, i) => Buffer.alloc(size, i + 1));
  for (let i = 0; i < 4; i++) records.push(...records.slice(0, sizes.length));
  const out = await roundTrip(records, 0);
  t.is(out.length, records.length);
  t.true(out.every((record, i) => Buffer.isBuffer(record) && (record as Buffer).equals(records[i]!)));
});

test('records without a schema - the codec decodes a large Buffer as a view only of bytes it is told are settled, and only when it is a fifth or more of their memory', (t) => {
  const codec = createCodec(undefined);
  const large = Buffer.alloc(20_000, 5);
  const encoded = Buffer.alloc(20_010);
  const end = codec.encode(large, encoded, 0);
  const written = encoded.subarray(0, end);
  const copied = codec.decode(written, 0);
  t.deepEqual(copied, { value: large, offset: end });
  t.not((copied.value as Buffer).buffer, encoded.buffer, 'not settled: a copy');
  const viewed = codec.decode(written, 0, true);
  t.deepEqual(viewed, { value: large, offset: end });
  t.is((viewed.value as Buffer).buffer, encoded.buffer, 'settled: a view');
  // A Buffer that is a small part of a large read: copied, so as not to keep the rest alive.
  const wide = Buffer.alloc(200_000);
  written.copy(wide, 10);
  const part = codec.decode(wide, 10, true);
  t.deepEqual(part, { value: large, offset: 10 + end });
  t.not((part.value as Buffer).buffer, wide.buffer);
  const fifth = Buffer.alloc(100_000);
  written.copy(fifth, 10);
  t.is((codec.decode(fifth, 10, true).value as Buffer).buffer, fifth.buffer, 'a fifth of the memory: a view');
  // Small Buffers, strings and JSON decode as ever; a Buffer cut short does not decode.
  const small = Buffer.alloc(64);
  for (const record of [Buffer.from([1, 2]), 'text', { a: 1 }]) {
    const n = codec.encode(record, small, 0);
    t.deepEqual(codec.decode(small.subarray(0, n), 0, true), { value: record, offset: n });
  }
  t.is(codec.decode(written.subarray(0, end - 1), 0, true).offset, -1);
});

test('records without a schema - large Buffers round-trip through disk with the deflate codec too, and the Buffers written are left unchanged', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const records = [Buffer.alloc(70_000, 1), 'x', Buffer.alloc(20_000, 2), Buffer.from(Array.from({ length: 50_000 }, (_, i) => i % 251))];
  const copies = records.map((record) => (Buffer.isBuffer(record) ? Buffer.from(record) : record));
  for (const codec of ['null', 'deflate'] as const) {
    const hopper = createHopperStreams<unknown>({ dataDir: dir.dataDir, maxMemoryBytes: 0, codec });
    for (const record of records) hopper.send(record);
    const closed = hopper.close();
    t.deepEqual(await collect(hopper.readable), copies, `codec ${codec}`);
    await closed;
  }
  t.deepEqual(records, copies);
});

const QUICK_CHECK_SCHEMAS: Record<string, unknown> = {
  event: JSON.parse(fs.readFileSync(new URL('../fixtures/schemas/event.avsc', import.meta.url), 'utf8')),
  recursive: {
    type: 'record',
    name: 'Node',
    fields: [
      { name: 'value', type: 'int' },
      { name: 'next', type: ['null', 'Node'], default: null },
    ],
  },
  mixed: {
    type: 'record',
    name: 'Mixed',
    fields: [
      { name: 'flag', type: 'boolean' },
      { name: 'ratio', type: 'float' },
      { name: 'score', type: 'double' },
      { name: 'small', type: 'int' },
      { name: 'big', type: 'long' },
      { name: 'blob', type: 'bytes' },
      { name: 'maybeLong', type: ['null', 'long'], default: null },
      { name: 'nameOrNull', type: ['string', 'null'] },
      { name: 'kind', type: { type: 'enum', name: 'Kind', symbols: ['A', 'B'] } },
      { name: 'children', type: { type: 'array', items: { type: 'record', name: 'Child', fields: [{ name: 'id', type: 'long' }] } } },
      { name: 'child', type: ['null', 'Child'], default: null },
      { name: 'list', type: ['null', { type: 'array', items: 'string' }], default: null },
      // Every field has a default: only the kind of value tells an array or a Buffer from this record.
      { name: 'opt', type: ['null', { type: 'record', name: 'Opt', fields: [{ name: 'a', type: ['null', 'int'], default: null }] }], default: null },
    ],
  },
  // Types the quick check leaves to avsc: it must answer false, never true, for them.
  fallback: {
    type: 'record',
    name: 'Fallback',
    fields: [
      { name: 'id', type: 'long' },
      { name: 'attrs', type: { type: 'map', values: 'string' } },
      { name: 'hash', type: { type: 'fixed', name: 'Hash', size: 4 } },
      { name: 'either', type: ['string', 'long'] },
    ],
  },
  long: 'long',
  nullableString: ['null', 'string'],
  ints: { type: 'array', items: 'int' },
};

/** Values close to what a schema accepts: edge numbers, wrong kinds, arrays and Buffers where objects go. */
const NEAR_MISS_VALUES: unknown[] = [
  -0,
  0.5,
  Number.NaN,
  Infinity,
  -Infinity,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53 - 1,
  2 ** 53 - 2,
  -(2 ** 53) + 2,
  2 ** 53,
  1e300,
  '',
  'A',
  'C',
  'toString',
  '__proto__',
  null,
  undefined,
  true,
  [],
  {},
  Buffer.alloc(4),
  new Uint8Array(4),
  [1, 2],
  ['x'],
  [null],
  { toString: '' },
  { valueOf: () => 7 },
  new Date(0),
];
const nearMiss = fc.oneof(fc.constantFrom(...NEAR_MISS_VALUES), fc.anything());

/** avsc's answer; its checks coerce some values, and one that cannot be converted makes it throw (a no). */
function avscAccepts(type: avsc.Type, value: unknown): boolean {
  try {
    return type.isValid(value);
  } catch {
    return false;
  }
}

function mutate(value: unknown, path: readonly string[], replacement: unknown, remove: boolean): unknown {
  if (path.length === 0 || value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return replacement;
  const copy: Record<string, unknown> = Array.isArray(value) ? ([...value] as unknown as Record<string, unknown>) : { ...(value as Record<string, unknown>) };
  const [key, ...rest] = path;
  const keys = Object.keys(copy);
  if (keys.length === 0) return replacement;
  const target = keys.includes(key!) ? key! : keys[key!.length % keys.length]!;
  if (remove && rest.length === 0) delete copy[target];
  else copy[target] = mutate(copy[target], rest, replacement, remove);
  return copy;
}

test('records with a schema - the quick check accepts only what avsc isValid accepts, and accepts the valid records of the types it knows (property)', (t) => {
  for (const [name, schema] of Object.entries(QUICK_CHECK_SCHEMAS)) {
    const type = avsc.Type.forSchema(schema as avsc.Schema);
    const quickCheck = compileQuickCheck(type);
    // Valid records: the quick check knows every type here but the fallback schema's.
    let quickAccepted = 0;
    for (let i = 0; i < 200; i++) {
      const valid = type.random();
      t.true(type.isValid(valid));
      if (quickCheck(valid)) quickAccepted++;
    }
    if (name === 'fallback') t.is(quickAccepted, 0, 'maps, fixed and multi-branch unions go to avsc');
    else t.is(quickAccepted, 200, `${name}: the quick check accepts valid records`);
    // Near misses: whatever the quick check accepts, avsc must accept. Each field with each edge
    // value first, then random paths and values.
    const fields = (type as unknown as { fields?: Array<{ name: string }> }).fields ?? [];
    for (const edge of NEAR_MISS_VALUES) {
      for (const candidate of [edge, ...fields.map((field) => mutate(type.random(), [field.name], edge, false))]) {
        if (quickCheck(candidate)) t.true(avscAccepts(type, candidate), `${name}: ${String(candidate)}`);
      }
    }
    fc.assert(
      fc.property(
        fc.array(
          fc.constantFrom(
            'seq',
            'timestamp',
            'kind',
            'tags',
            'referrer',
            'next',
            'value',
            'child',
            'children',
            'id',
            'big',
            'small',
            'ratio',
            'list',
            'opt',
            'x',
          ),
          { maxLength: 3 },
        ),
        nearMiss,
        fc.boolean(),
        (path, replacement, remove) => {
          const candidate = mutate(type.random(), path, replacement, remove);
          if (quickCheck(candidate)) return avscAccepts(type, candidate);
          return true;
        },
      ),
      { numRuns: 2_000 },
    );
  }
});
