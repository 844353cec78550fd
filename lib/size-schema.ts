import type { Type } from 'avsc';
import { ARRAY_BYTES, BUFFER_BYTES, HEAP_NUMBER_BYTES, OBJECT_BYTES, SLOT_BYTES, STRING_BYTES, looseSize } from './size.js';

// Memory size estimates of records with a schema (see size.ts for the counts): a size function
// compiled per Avro type, as avsc compiles its checkers.

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
