import { mayHaveNamedKeys } from './size.js';

/**
 * Plain data: what JSON gives back exactly (the segment log's JSON path for records without a
 * schema, {@link isJsonExact}), and the copy the memory tier keeps of such a record
 * ({@link memoryCopy}). One rule for both, so that a copy comes back from memory exactly as the
 * record would from disk.
 *
 * Why the memory tier copies: V8 decides per allocation site (an object or array literal in the producer's code) whether
 * to allocate its objects straight in old space, from how many of them survive a young-generation
 * collection. A memory tier holding the producer's own objects makes nearly all of them survive
 * while it fills, so V8 pretenures the producer's sites; from then on every record they make, even
 * one that goes to disk and is dropped at once, lives until a full collection. In 0.3.0 that cost
 * the burst write about a third of its rate and the process some 60 MiB of peak RSS (bench
 * scenarios 2 and 4; running them with `--no-allocation-site-pretenuring` showed the difference,
 * which is gone since). Copies made here come from this module's sites, which only ever make records
 * that are held, so the producer's records die young whichever tier they take. A library cannot
 * set V8's flags for its user's process; this is the part of the cause it owns.
 *
 * Only plain data is copied: plain objects and arrays (what literals make) of strings, booleans,
 * null and finite numbers other than -0, which is also what the segment log writes as JSON, so a
 * copy comes back from memory exactly as it would from disk (shared parts become equal copies in
 * both tiers). Any other record (a string or a Buffer, a Date or a Map anywhere in it, an array
 * with holes or named properties, a value nested deeper than {@link PLAIN_MAX_DEPTH}) is copied
 * by the codec as the disk tier would copy it (a Buffer by a copy of its bytes, any other value by
 * a round trip through the codec's encoding): the producer may reuse what it passed once its write
 * was accepted (a pooled Buffer, an object it fills again).
 */

/** Deeper values are not looked at: they take the V8 path on disk, and the codec copies them. */
const PLAIN_MAX_DEPTH = 64;

/** A leaf JSON gives back exactly: a string (JSON.stringify escapes lone surrogates), a boolean, or a finite number other than -0. */
function isJsonScalar(value: unknown): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && (value !== 0 || 1 / value > 0);
    default:
      return false;
  }
}

/**
 * Whether `JSON.parse(JSON.stringify(value))` gives back exactly `value` (as util.isDeepStrictEqual
 * sees it), for a value the size walk accepted: plain objects and arrays (no holes, no
 * `undefined`, no named properties on arrays) of such scalars and null, no deeper than
 * {@link PLAIN_MAX_DEPTH}.
 */
export function isJsonExact(value: unknown, depth = 0): boolean {
  if (typeof value !== 'object') return isJsonScalar(value);
  if (value === null) return true;
  if (depth === PLAIN_MAX_DEPTH) return false;
  const proto = Object.getPrototypeOf(value);
  if (proto === Array.prototype) {
    const array = value as unknown[];
    for (let i = 0; i < array.length; i++) {
      const item = array[i];
      if (item === undefined || !isJsonExact(item, depth + 1)) return false;
    }
    return !mayHaveNamedKeys(array);
  }
  if (proto !== Object.prototype) return false;
  for (const key in value) {
    if (!isJsonExact((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

/** Thrown inside the copy, and caught in {@link memoryCopy}: the codec copies the record instead. */
const NOT_PLAIN = new Error('not plain data');

/** The copy of a plain object or array, under {@link isJsonExact}'s rule, in the same pass; throws {@link NOT_PLAIN} where that rule says no. */
function copyObject(value: object, depth: number): unknown {
  if (depth === PLAIN_MAX_DEPTH) throw NOT_PLAIN;
  const proto = Object.getPrototypeOf(value);
  if (proto === Array.prototype) {
    // Holes read as undefined and are refused below; named properties would not survive slice().
    if (mayHaveNamedKeys(value as unknown[])) throw NOT_PLAIN;
    const copy = (value as unknown[]).slice();
    for (let i = 0; i < copy.length; i++) {
      const item = copy[i];
      // A finite number other than -0, checked in the loop (a call per item cost a large array of numbers half its copy).
      if (typeof item === 'number') {
        if (item - item !== 0 || (item === 0 && 1 / item < 0)) throw NOT_PLAIN;
      } else if (typeof item !== 'object') {
        if (!isJsonScalar(item)) throw NOT_PLAIN;
      } else if (item !== null) copy[i] = copyObject(item, depth + 1);
    }
    return copy;
  }
  if (proto !== Object.prototype) throw NOT_PLAIN;
  // A spread keeps the object's shape (its hidden class), so the copy is as fast to read.
  const copy: Record<string, unknown> = { ...value };
  for (const key in copy) {
    const item = copy[key];
    if (typeof item !== 'object') {
      if (!isJsonScalar(item)) throw NOT_PLAIN;
    } else if (item !== null) copy[key] = copyObject(item, depth + 1);
  }
  return copy;
}

const EMPTY = {};

/** Whether something made a property of Object.prototype enumerable (a polluted prototype). */
function prototypeHasEnumerable(): boolean {
  for (const _key in EMPTY) return true;
  return false;
}

/** A copy of a Buffer: allocUnsafe and copy() cost a third of what Buffer.from() does for 1 KiB. */
export function copyBuffer(buffer: Buffer): Buffer {
  const copy = Buffer.allocUnsafe(buffer.length);
  buffer.copy(copy);
  return copy;
}

/**
 * A copy of a Buffer, typed array or DataView, of the same class, holding its own bytes only:
 * what structuredClone gives back for it (and a Buffer stays a Buffer).
 */
export function copyView(view: ArrayBufferView): ArrayBufferView {
  if (Buffer.isBuffer(view)) return copyBuffer(view);
  const bytes = view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength);
  if (view instanceof DataView) return new DataView(bytes);
  const TypedArray = (view as unknown as { constructor: new (buffer: ArrayBufferLike) => ArrayBufferView }).constructor;
  return new TypedArray(bytes);
}

/**
 * The value the memory tier holds for `record` (already validated): a copy when it is plain data,
 * else `copyOther(record)` (the codec's copy: what the disk tier would give back), or the record
 * itself when there is no `copyOther`. Either way nothing the producer does to the objects it
 * passed, once they were accepted, changes what the memory tier gives back.
 */
export function memoryCopy(record: unknown, copyOther?: (record: unknown) => unknown): unknown {
  if (typeof record !== 'object' || record === null) return record;
  const other = copyOther ?? keep;
  // A Buffer (the CLI's byte mode) or any other class: no throw per record.
  const proto = Object.getPrototypeOf(record);
  if (proto !== Object.prototype && proto !== Array.prototype) return other(record);
  // for...in in the copy would also see what is enumerable on Object.prototype, and copy it in.
  if (prototypeHasEnumerable()) return other(record);
  try {
    return copyObject(record, 0);
  } catch {
    // Not plain data; or a getter that threw now though it did not during validation: the record
    // was accepted, so the codec copies it as it would for the disk tier.
    return other(record);
  }
}

function keep(record: unknown): unknown {
  return record;
}
