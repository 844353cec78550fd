import type { Type } from 'avsc';

// Memory size estimates of records held in memory. They must be cheap: they run on every write.
// Buffers and typed arrays count their byteLength; a string record its UTF-8 byte length; inside
// objects a string counts its length, a number 8, a boolean 4, and each object or array 16 bytes
// plus 8 per slot plus its contents.

/** Above this depth a value is checked for cycles before going on: real records are rarely this deep. */
const CYCLE_CHECK_DEPTH = 64;

/**
 * The fast walk for values without a schema: NaN (which every sum carries up) for anything that
 * needs a closer look — a function, symbol or BigInt, or nesting deeper than CYCLE_CHECK_DEPTH.
 */
function quickSize(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return value.length;
    case 'number':
      return 8;
    case 'boolean':
      return 4;
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null) return 0;
      if (depth === CYCLE_CHECK_DEPTH) return Number.NaN;
      if (Array.isArray(value)) {
        let size = 16;
        for (let i = 0; i < value.length; i++) size += 8 + quickSize(value[i], depth + 1);
        return size;
      }
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value.byteLength;
      let size = 16;
      // for-in also sees inherited enumerable keys: at worst an overestimate, or a NaN that the
      // careful walk then settles.
      for (const key in value) size += 8 + quickSize((value as Record<string, unknown>)[key], depth + 1);
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
      return value.length;
    case 'number':
      return 8;
    case 'boolean':
      return 4;
    case 'undefined':
      return 0;
    case 'object': {
      if (value === null) return 0;
      if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return value.byteLength;
      if (depth === CYCLE_CHECK_DEPTH) {
        const cycle = findCycle(value, [], [...path]);
        if (cycle) throw { path: cycle, problem: 'refers back to itself (circular structure)' } satisfies SizeProblem;
      }
      let size = 16;
      const keys = Array.isArray(value) ? value.keys() : Object.keys(value);
      for (const key of keys) {
        path.push(String(key));
        size += 8 + carefulSize((value as Record<string, unknown>)[key as string], path, depth + 1);
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
  const size = quickSize(record, 0);
  return Number.isNaN(size) ? carefulSize(record, [], 0) : size;
}

/** Estimated size of any value, never throwing: unions and logical types inside schemas use it. */
function looseSize(value: unknown): number {
  const size = quickSize(value, 0);
  return Number.isNaN(size) ? 64 : size;
}

function arraySize(items: unknown[], sizeOfItem: (value: unknown) => number): number {
  let size = 16;
  for (let i = 0; i < items.length; i++) size += 8 + sizeOfItem(items[i]);
  return size;
}

function mapSize(map: Record<string, unknown>, sizeOfValue: (value: unknown) => number): number {
  let size = 16;
  for (const key in map) size += 8 + key.length + sizeOfValue(map[key]);
  return size;
}

/**
 * Compiles a size function for records of an Avro type, in the way avsc compiles its checkers:
 * record fields become direct property reads, so the estimate costs about as much as reading the
 * record once. Only call it on values the type has validated.
 */
export function compileSizeOf(root: Type): (record: unknown) => number {
  if (root.typeName === 'string') return (record) => Buffer.byteLength(record as string);
  const functions: Array<(value: unknown) => number> = [];
  const ids = new Map<Type, number>();

  const expression = (type: Type, value: string): string => {
    switch (type.typeName) {
      case 'null':
        return '0';
      case 'boolean':
        return '4';
      case 'int':
      case 'long':
      case 'float':
      case 'double':
      case 'enum':
        return '8';
      case 'string':
      case 'bytes':
      case 'fixed':
        return `${value}.length`;
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
        const body = `return function (v) { return ${16 + 8 * fields.length}${terms.map((term) => ` + ${term}`).join('')}; };`;
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

  return functions[functionFor(root)]!;
}
