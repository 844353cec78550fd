import util from 'node:util';

// Memory size estimates of records held in memory. They must be cheap: they run on every write.
// A Buffer or typed array record counts its byteLength, a string record its UTF-8 byte length:
// exact. Inside a record the counts follow V8's layout on 64-bit: an object 24 bytes plus 8 per
// property, an array 32 plus 8 per element, a string 16 plus its length, a number that is not a
// small integer 16 (a heap number), a Buffer 80 plus its bytes; booleans, null and small integers
// live in their slot. Every record other than a string or a Buffer also counts the 8-byte slot
// that holds it, so that no record is free.

export const OBJECT_BYTES = 24;
export const ARRAY_BYTES = 32;
export const SLOT_BYTES = 8;
export const STRING_BYTES = 16;
export const HEAP_NUMBER_BYTES = 16;
export const BUFFER_BYTES = 80;

/** What a number costs beyond its slot: nothing for a small integer (a V8 Smi), else a heap number. */
function numberSize(value: number): number {
  return (value | 0) === value && value >= -(2 ** 30) && value < 2 ** 30 ? 0 : HEAP_NUMBER_BYTES;
}

/** Above this depth a value is walked carefully (cycles, shared objects): real records are rarely this deep. */
const CYCLE_CHECK_DEPTH = 64;
/** Deeper values are refused: structuredClone and V8's serializer overflow the stack a few thousand levels down. */
export const MAX_DEPTH = 1000;

/**
 * The typed array and DataView classes a record may hold, by prototype; a view comes back as the
 * same class (a Buffer as a Buffer) from either tier. The index is written to segments: append only.
 */
export const VIEW_TYPES: ReadonlyArray<{ BYTES_PER_ELEMENT?: number; prototype: object; name: string }> = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  DataView,
  Buffer,
  BigInt64Array,
  BigUint64Array,
];
const VIEW_PROTOTYPES = new Set<object>(VIEW_TYPES.map((type) => type.prototype));

/** Errors structuredClone gives back with their own class; any other Error subclass comes back as a plain Error. */
const ERROR_PROTOTYPES = new Set<object>([Error, EvalError, RangeError, ReferenceError, SyntaxError, TypeError, URIError].map((type) => type.prototype));

/** Below this length an array's keys are counted; from it on, util.inspect finds its named keys (see {@link mayHaveNamedKeys}). */
const KEY_COUNT_MAX_LENGTH = 64;
/** The keys of a short array's indices, made once: a String() per array cost the check a tenth. */
const INDEX_KEYS: readonly string[] = Array.from({ length: KEY_COUNT_MAX_LENGTH }, (_, i) => String(i));
/** util.inspect showing an array's own enumerable non-index keys and none of its items. */
const NAMED_KEYS_INSPECTION: util.InspectOptions = {
  maxArrayLength: 0,
  depth: 0,
  customInspect: false,
  getters: false,
  showHidden: false,
  showProxy: false,
  breakLength: Number.POSITIVE_INFINITY,
  compact: true,
};

/**
 * Whether a plain array may have own enumerable keys other than its indices (`Object.assign([1],
 * { f })`, which structuredClone carries and the walks by index would not see) or holes: false
 * only when it certainly has neither kind of named key. JavaScript has no way to list an array's
 * named keys without its indices, and `Object.keys` makes a string of each index (a second, a
 * slower walk: 1.1 s for 5,000,000 items, where the walk by index takes a tenth of that). Short
 * arrays are counted so; longer ones are asked of util.inspect, which lists an array's named keys
 * without its indices (Node's own `getOwnNonIndexProperties`) and with `maxArrayLength: 0` shows
 * no item: an array with none prints as `[ ... n more items ]`. Should that form ever change, every
 * long array takes the careful walk: slower, never wrong. Holes in long arrays are not seen here;
 * both tiers keep them, as structuredClone does.
 */
export function mayHaveNamedKeys(array: unknown[]): boolean {
  const length = array.length;
  if (length < KEY_COUNT_MAX_LENGTH) {
    // Indices come first, in order, then named keys: with neither hole nor named key the keys are
    // '0' to `length - 1`. A count alone would miss a named key beside a hole (`[1, , 3]` with `f`).
    const keys = Object.keys(array);
    return keys.length !== length || (length !== 0 && keys[length - 1] !== INDEX_KEYS[length - 1]);
  }
  return util.inspect(array, NAMED_KEYS_INSPECTION) !== `[ ... ${length} more items ]`;
}

/**
 * The fast walk for values without a schema: NaN (which every sum carries up) for anything that
 * needs a closer look — a function, symbol or BigInt, anything but a plain object, an array or
 * a known view, an array that may have named keys, or nesting deeper than CYCLE_CHECK_DEPTH.
 */
function quickSize(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return STRING_BYTES + value.length;
    case 'number':
      return numberSize(value);
    case 'boolean':
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null) return 0;
      if (depth === CYCLE_CHECK_DEPTH) return Number.NaN;
      const proto = Object.getPrototypeOf(value);
      if (proto === Array.prototype) {
        const array = value as unknown[];
        if (mayHaveNamedKeys(array)) return Number.NaN;
        let size = ARRAY_BYTES + SLOT_BYTES * array.length;
        // Numbers and strings sized in the loop: a call per item doubled the cost of a large array.
        for (let i = 0; i < array.length; i++) {
          const item = array[i];
          if (typeof item === 'number') size += numberSize(item);
          else if (typeof item === 'string') size += STRING_BYTES + item.length;
          else size += quickSize(item, depth + 1);
        }
        return size;
      }
      if (proto === Object.prototype) {
        let size = OBJECT_BYTES;
        // for-in also sees inherited enumerable keys: at worst an overestimate, or a NaN that the
        // careful walk then settles.
        for (const key in value) size += SLOT_BYTES + quickSize((value as Record<string, unknown>)[key], depth + 1);
        return size;
      }
      if (VIEW_PROTOTYPES.has(proto)) return BUFFER_BYTES + (value as ArrayBufferView).byteLength;
      return Number.NaN;
    }
    default:
      return Number.NaN;
  }
}

/**
 * The fast check, without sizes, for a record handed straight to a waiting reader: true when the
 * value is plain data the quick walk would accept (plain objects and arrays without named keys of
 * primitives other than symbols and BigInts, and known views), no deeper than CYCLE_CHECK_DEPTH. False means "ask
 * {@link sizeOfSchemaless}", which decides. Leaves are checked in the loops, not by a call each:
 * this runs once per record on the pass-through path.
 */
export function isQuickValid(value: object, depth = 0): boolean {
  if (depth === CYCLE_CHECK_DEPTH) return false;
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype) {
    for (const key in value) {
      const item = (value as Record<string, unknown>)[key];
      const kind = typeof item;
      if (kind === 'string' || kind === 'number' || kind === 'boolean' || kind === 'undefined') continue;
      if (kind !== 'object' || (item !== null && !isQuickValid(item as object, depth + 1))) return false;
    }
    return true;
  }
  if (proto === Array.prototype) {
    const array = value as unknown[];
    if (mayHaveNamedKeys(array)) return false;
    for (let i = 0; i < array.length; i++) {
      const item = array[i];
      const kind = typeof item;
      if (kind === 'string' || kind === 'number' || kind === 'boolean' || kind === 'undefined') continue;
      if (kind !== 'object' || (item !== null && !isQuickValid(item as object, depth + 1))) return false;
    }
    return true;
  }
  return VIEW_PROTOTYPES.has(proto);
}

/** {@link quickKind}: plain data the quick walk accepts. */
export const QUICK = 1;
/** {@link quickKind}: also what JSON gives back exactly (see plain-data.ts isJsonExact). */
export const JSON_EXACT = 2;

/**
 * {@link isQuickValid} and plain-data's `isJsonExact` in one walk, for a record bound for disk
 * (its encoding asks the second; each asks an array for its named keys, the costly part of both):
 * 0 where isQuickValid says false; else {@link QUICK}, with {@link JSON_EXACT} set where
 * isJsonExact says true too (no `undefined`, hole, NaN, ±Infinity, -0 or view anywhere in it).
 */
export function quickKind(value: object, depth = 0): number {
  if (depth === CYCLE_CHECK_DEPTH) return 0;
  const proto = Object.getPrototypeOf(value);
  let kind = QUICK | JSON_EXACT;
  if (proto === Object.prototype) {
    for (const key in value) {
      kind = itemKind((value as Record<string, unknown>)[key], kind, depth);
      if (kind === 0) return 0;
    }
    return kind;
  }
  if (proto === Array.prototype) {
    const array = value as unknown[];
    if (mayHaveNamedKeys(array)) return 0;
    for (let i = 0; i < array.length; i++) {
      kind = itemKind(array[i], kind, depth);
      if (kind === 0) return 0;
    }
    return kind;
  }
  return VIEW_PROTOTYPES.has(proto) ? QUICK : 0;
}

/** {@link quickKind}'s `kind` once `item`, a property or item of a value at `depth`, is taken into account. */
function itemKind(item: unknown, kind: number, depth: number): number {
  switch (typeof item) {
    case 'string':
    case 'boolean':
      return kind;
    case 'number':
      return item - item !== 0 || (item === 0 && 1 / item < 0) ? kind & QUICK : kind;
    case 'undefined':
      return kind & QUICK;
    case 'object':
      return item === null ? kind : kind & quickKind(item, depth + 1);
    default:
      return 0;
  }
}

/** Where a value stops being something structuredClone gives back as it was written (thrown by the size walk, made a HopperError by the codec). */
export class SizeProblem extends Error {
  constructor(
    readonly path: string[],
    readonly problem: string,
  ) {
    super(problem);
  }
}

function describeValue(value: unknown): string {
  return typeof value === 'bigint'
    ? `${value}n`
    : typeof value === 'symbol'
      ? value.toString()
      : typeof value === 'function'
        ? `function ${value.name || '(anonymous)'}`
        : String(value);
}

function problem(path: string[], text: string): SizeProblem {
  return new SizeProblem([...path], text);
}

/** A class's name for messages, read without running user code that could throw. */
function className(proto: object): string {
  const ctor = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value as { name?: unknown } | undefined;
  return typeof ctor?.name === 'string' && ctor.name !== '' ? ctor.name : 'an unnamed class';
}

/** The built-ins structuredClone carries without their own properties (Errors are checked on their own, views keep only their bytes). */
const BUILT_IN_NAMES = new Map<object, string>([
  [Date.prototype, 'a Date'],
  [Boolean.prototype, 'a Boolean object'],
  [Number.prototype, 'a Number object'],
  [BigInt.prototype, 'a BigInt object'],
  [String.prototype, 'a String object'],
  [RegExp.prototype, 'a RegExp'],
  [Map.prototype, 'a Map'],
  [Set.prototype, 'a Set'],
  [ArrayBuffer.prototype, 'an ArrayBuffer'],
]);

/** Refuses a built-in with own enumerable properties: structuredClone drops them (a String object's indices are its characters, not properties). */
function checkNoOwnKeys(value: object, proto: object, path: string[]): void {
  let keys = Object.keys(value);
  if (proto === String.prototype) keys = keys.slice((value as { length: number }).length);
  if (keys.length === 0) return;
  throw problem(
    path,
    `is ${BUILT_IN_NAMES.get(proto)} with own properties (${keys.slice(0, 3).join(', ')}), which structuredClone drops; send them beside it, in a plain object`,
  );
}

/**
 * The careful walk: own keys only, a shared path stack, each object counted once (so cycles and
 * shared parts end), the built-ins structuredClone carries; throws a SizeProblem for the rest.
 */
function carefulSize(value: unknown, path: string[], depth: number, seen: Set<object>): number {
  switch (typeof value) {
    case 'string':
      return STRING_BYTES + value.length;
    case 'number':
      return numberSize(value);
    case 'bigint':
      return HEAP_NUMBER_BYTES + Math.ceil(value.toString(16).length / 2);
    case 'boolean':
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null || seen.has(value)) return 0;
      if (depth > MAX_DEPTH) throw problem(path, `nests deeper than ${MAX_DEPTH} levels`);
      seen.add(value);
      const proto = Object.getPrototypeOf(value) as object | null;
      if (util.types.isProxy(value)) throw problem(path, 'is a Proxy, which structuredClone cannot carry');
      if (proto === Object.prototype || proto === Array.prototype) {
        let size = proto === Array.prototype ? ARRAY_BYTES : OBJECT_BYTES;
        for (const key of Object.keys(value)) size += SLOT_BYTES + carefulChild(value, key, path, depth, seen);
        return size;
      }
      if (proto === null) {
        throw problem(path, 'is an object with a null prototype, which structuredClone gives back as a plain object; copy it into one ({ ...value })');
      }
      if (VIEW_PROTOTYPES.has(proto)) return BUFFER_BYTES + (value as ArrayBufferView).byteLength;
      if (BUILT_IN_NAMES.has(proto)) checkNoOwnKeys(value, proto, path);
      if (proto === ArrayBuffer.prototype) {
        if ((value as ArrayBuffer & { resizable?: boolean }).resizable) throw problem(path, 'is a resizable ArrayBuffer, which comes back fixed-size');
        return BUFFER_BYTES + (value as ArrayBuffer).byteLength;
      }
      if (proto === Date.prototype || proto === Boolean.prototype || proto === Number.prototype || proto === BigInt.prototype) return OBJECT_BYTES;
      if (proto === String.prototype || proto === RegExp.prototype) return OBJECT_BYTES + STRING_BYTES + String(value).length;
      if (proto === Map.prototype || proto === Set.prototype) {
        let size = OBJECT_BYTES;
        let index = 0;
        for (const entry of value as Map<unknown, unknown> | Set<unknown>) {
          path.push(String(index++));
          if (proto === Map.prototype) {
            const [key, item] = entry as [unknown, unknown];
            size += 2 * SLOT_BYTES + carefulSize(key, path, depth + 1, seen) + carefulSize(item, path, depth + 1, seen);
          } else {
            size += SLOT_BYTES + carefulSize(entry, path, depth + 1, seen);
          }
          path.pop();
        }
        return size;
      }
      if (ERROR_PROTOTYPES.has(proto)) {
        const keys = Object.keys(value);
        if (keys.length > 0) {
          throw problem(
            path,
            `is an Error with own properties (${keys.slice(0, 3).join(', ')}), which structuredClone drops; only name, message, stack and cause are kept`,
          );
        }
        const error = value as Error;
        let size = OBJECT_BYTES + STRING_BYTES * 2 + String(error.message).length + String(error.stack ?? '').length;
        if (Object.hasOwn(error, 'cause')) size += carefulChild(error, 'cause', path, depth, seen);
        return size;
      }
      throw problem(path, `is an instance of ${className(proto)}, which structuredClone gives back as a plain object; send a plain object, or give a schema`);
    }
    default:
      throw problem(path, `is a ${typeof value} (${describeValue(value)}), which structuredClone cannot carry; give a schema or convert it`);
  }
}

function carefulChild(parent: object, key: string, path: string[], depth: number, seen: Set<object>): number {
  path.push(key);
  const size = carefulSize((parent as Record<string, unknown>)[key], path, depth + 1, seen);
  path.pop();
  return size;
}

/**
 * Estimated size of a record without a schema. Throws a {@link SizeProblem} for what
 * structuredClone would not give back as written (functions, symbols, class instances, null
 * prototypes, nesting past {@link MAX_DEPTH}), with the path to it; other errors (a getter or a
 * Proxy that throws) propagate.
 */
export function sizeOfSchemaless(record: unknown): number {
  if (typeof record === 'string') return Buffer.byteLength(record);
  if (ArrayBuffer.isView(record) && VIEW_PROTOTYPES.has(Object.getPrototypeOf(record))) return record.byteLength;
  const size = quickSize(record, 0);
  return SLOT_BYTES + (Number.isNaN(size) ? carefulSize(record, [], 0, new Set()) : size);
}

/** Estimated size of any value, never throwing: unions and logical types inside schemas use it. */
export function looseSize(value: unknown): number {
  const size = quickSize(value, 0);
  return Number.isNaN(size) ? OBJECT_BYTES + SLOT_BYTES * 4 : size;
}
