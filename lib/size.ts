import type { Type } from 'avsc';

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

/** Above this depth a value is checked for cycles before going on: real records are rarely this deep. */
const CYCLE_CHECK_DEPTH = 64;

/**
 * The fast walk for values without a schema: NaN (which every sum carries up) for anything that
 * needs a closer look — a function, symbol or BigInt, or nesting deeper than CYCLE_CHECK_DEPTH.
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
      if (Array.isArray(value)) {
        let size = ARRAY_BYTES;
        for (let i = 0; i < value.length; i++) size += SLOT_BYTES + quickSize(value[i], depth + 1);
        return size;
      }
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return BUFFER_BYTES + value.byteLength;
      let size = OBJECT_BYTES;
      // for-in also sees inherited enumerable keys: at worst an overestimate, or a NaN that the
      // careful walk then settles.
      for (const key in value) size += SLOT_BYTES + quickSize((value as Record<string, unknown>)[key], depth + 1);
      return size;
    }
    default:
      return Number.NaN;
  }
}

/** Where a value stops being something JSON can carry. */
export interface SizeProblem {
  path: string[];
  problem: string;
}

function findCycle(value: object, ancestors: object[], path: string[]): string[] | undefined {
  if (ancestors.includes(value)) return path;
  ancestors.push(value);
  for (const key of Object.keys(value)) {
    const child = (value as Record<string, unknown>)[key];
    if (child !== null && typeof child === 'object') {
      const found = findCycle(child, ancestors, [...path, key]);
      if (found) return found;
    }
  }
  ancestors.pop();
  return undefined;
}

function describeValue(value: unknown): string {
  return typeof value === 'bigint' ? `${value}n` : typeof value === 'symbol' ? value.toString() : typeof value === 'function' ? `function ${value.name || '(anonymous)'}` : String(value);
}

/** The careful walk: own keys only, a shared path stack, cycles found; throws a SizeProblem. */
function carefulSize(value: unknown, path: string[], depth: number): number {
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
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return BUFFER_BYTES + value.byteLength;
      if (depth === CYCLE_CHECK_DEPTH) {
        const cycle = findCycle(value, [], [...path]);
        if (cycle) throw { path: cycle, problem: 'refers back to itself (circular structure)' } satisfies SizeProblem;
      }
      let size = Array.isArray(value) ? ARRAY_BYTES : OBJECT_BYTES;
      const keys = Array.isArray(value) ? value.keys() : Object.keys(value);
      for (const key of keys) {
        path.push(String(key));
        size += SLOT_BYTES + carefulSize((value as Record<string, unknown>)[key as string], path, depth + 1);
        path.pop();
      }
      return size;
    }
    default:
      throw {
        path: [...path],
        problem: `is a ${typeof value} (${describeValue(value)}), which JSON cannot carry; give a schema or convert it`,
      } satisfies SizeProblem;
  }
}

/**
 * Estimated size of a record without a schema. Throws a {@link SizeProblem} for what JSON cannot
 * carry (functions, symbols, BigInt, cycles), with the path to it.
 */
export function sizeOfSchemaless(record: unknown): number {
  if (typeof record === 'string') return Buffer.byteLength(record);
  if (ArrayBuffer.isView(record)) return record.byteLength;
  const size = quickSize(record, 0);
  return SLOT_BYTES + (Number.isNaN(size) ? carefulSize(record, [], 0) : size);
}

/** Estimated size of any value, never throwing: unions and logical types inside schemas use it. */
function looseSize(value: unknown): number {
  const size = quickSize(value, 0);
  return Number.isNaN(size) ? OBJECT_BYTES + SLOT_BYTES * 4 : size;
}

function arraySize(items: unknown[], sizeOfItem: (value: unknown) => number): number {
  let size = ARRAY_BYTES;
  for (let i = 0; i < items.length; i++) size += SLOT_BYTES + sizeOfItem(items[i]);
  return size;
}

function mapSize(map: Record<string, unknown>, sizeOfValue: (value: unknown) => number): number {
  let size = OBJECT_BYTES;
  for (const key in map) size += SLOT_BYTES + STRING_BYTES + key.length + sizeOfValue(map[key]);
  return size;
}

/**
 * Compiles a size function for records of an Avro type, in the way avsc compiles its checkers:
 * record fields become direct property reads, so the estimate costs about as much as reading the
 * record once. Only call it on values the type has validated.
 */
export function compileSizeOf(root: Type): (record: unknown) => number {
  // A record that is itself a string or bytes counts exactly, as without a schema.
  if (root.typeName === 'string') return (record) => Buffer.byteLength(record as string);
  if (root.typeName === 'bytes' || root.typeName === 'fixed') return (record) => (record as Buffer).length;
  const functions: Array<(value: unknown) => number> = [];
  const ids = new Map<Type, number>();

  /** JavaScript that sizes a value of `type` held in a slot of an object or array. */
  const expression = (type: Type, value: string): string => {
    switch (type.typeName) {
      case 'null':
      case 'boolean':
      case 'int':
      case 'enum':
        return '0';
      case 'long':
      case 'float':
      case 'double':
        return String(HEAP_NUMBER_BYTES);
      case 'string':
        return `(${STRING_BYTES} + ${value}.length)`;
      case 'bytes':
      case 'fixed':
        return `(${BUFFER_BYTES} + ${value}.length)`;
      default:
        return `f[${functionFor(type)}](${value})`;
    }
  };

  function functionFor(type: Type): number {
    const known = ids.get(type);
    if (known !== undefined) return known;
    const id = functions.length;
    ids.set(type, id);
    functions.push(looseSize); // placeholder until compiled; recursive types refer to the slot
    const anyType = type as Type & {
      itemsType?: Type;
      valuesType?: Type;
      fields?: Array<{ name: string; type: Type }>;
    };
    let compiled: (value: unknown) => number;
    switch (type.typeName) {
      case 'array': {
        const item = functionFor(anyType.itemsType!);
        compiled = (value) => arraySize(value as unknown[], functions[item]!);
        break;
      }
      case 'map': {
        const item = functionFor(anyType.valuesType!);
        compiled = (value) => mapSize(value as Record<string, unknown>, functions[item]!);
        break;
      }
      case 'record':
      case 'error': {
        const fields = anyType.fields!;
        const terms = fields.map((field) => expression(field.type, `v[${JSON.stringify(field.name)}]`));
        const body = `return function (v) { return ${OBJECT_BYTES + SLOT_BYTES * fields.length}${terms.map((term) => ` + ${term}`).join('')}; };`;
        compiled = new Function('f', body)(functions) as (value: unknown) => number;
        break;
      }
      case 'null':
      case 'boolean':
      case 'int':
      case 'long':
      case 'float':
      case 'double':
      case 'enum':
      case 'string':
      case 'bytes':
      case 'fixed':
        compiled = new Function(`return function (v) { return ${expression(type, 'v')}; };`)() as (value: unknown) => number;
        break;
      default:
        // Unions and logical types: their values vary in kind, so the generic walk sizes them.
        compiled = looseSize;
    }
    functions[id] = compiled;
    return id;
  }

  const sizeOf = functions[functionFor(root)]!;
  return (record) => SLOT_BYTES + sizeOf(record);
}
