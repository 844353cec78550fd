import type { Type } from 'avsc';
import { HopperError, invalidRecordError } from './errors.js';
import { compileQuickCheck } from './quick-check.js';
import { compileSizeOf } from './size-schema.js';

// The codec of a channel with a schema: avsc encodes, the compiled quick check validates, and a
// value avsc would not give back as written is refused with the path to it.
import { checkTopLevel, encodeFailure, isWellFormed, shown, typeName, unreadable, type RecordCodec } from './record-codec.js';

/** What a schema type expects, in words: `"string"`, `enum Kind (A|B)`, `union ["null","string"]`, `record User`. */
function expectation(type: Type): string {
  const schema = type.schema() as unknown;
  if (typeof schema === 'string') return JSON.stringify(schema);
  if (Array.isArray(schema)) {
    const branches = JSON.stringify(schema);
    return `union ${branches.length > 60 ? `of ${schema.length} types` : branches}`;
  }
  const { type: kind, name, symbols } = schema as { type: string; name?: string; symbols?: string[] };
  if (symbols) return `enum ${name} (${symbols.join('|')})`;
  return name ? `${kind} ${name}` : JSON.stringify(kind);
}

const LONE_SURROGATE = 'holds a lone surrogate, which Avro strings (UTF-8) give back as U+FFFD; send it as bytes, or repair it (toWellFormed())';

/** The largest finite float: a double beyond it (and beyond the rounding margin) becomes Infinity as a float. */
function floatOverflows(value: number): boolean {
  return Number.isFinite(value) && !Number.isFinite(Math.fround(value));
}

interface TypeParts {
  typeName: string;
  itemsType?: Type;
  valuesType?: Type;
  fields?: Array<{ name: string; type: Type }>;
  types?: Type[];
}

/**
 * What avsc accepts (its `isValid` is true) but would not give back as written, with the path to
 * it: a `map` given as anything but a plain object (avsc reads its own enumerable properties, so
 * a JS Map comes back as `{}`), a `float` beyond the float range (it comes back as Infinity), a
 * -0 for an `int` or `long` (it comes back as 0), a string (or map key) with a lone surrogate (it
 * comes back with U+FFFD), a plain object with a key its record type does not declare (it is
 * dropped). Undefined when there is none.
 */
function fidelityProblem(type: Type, value: unknown, path: string[]): string | undefined {
  const parts = type as unknown as TypeParts;
  switch (parts.typeName) {
    case 'float':
      return typeof value === 'number' && floatOverflows(value)
        ? `is ${value}, beyond the range of a float (it would come back as ${value > 0 ? '' : '-'}Infinity)`
        : undefined;
    case 'int':
    case 'long':
      return Object.is(value, -0) ? `is -0, which an Avro ${parts.typeName} gives back as 0` : undefined;
    case 'string':
      return typeof value === 'string' && !isWellFormed(value) ? LONE_SURROGATE : undefined;
    case 'map': {
      // Missing: avsc takes the field's default (it accepted the record).
      if (value === undefined) return undefined;
      const proto = value === null || typeof value !== 'object' ? undefined : Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        return `is ${value instanceof Map ? 'a Map' : 'not a plain object'}; avsc encodes a map from an object's own properties (it would come back as {}): give a plain object`;
      }
      for (const key of Object.keys(value as object)) {
        path.push(key);
        if (!isWellFormed(key)) return `is a map key that ${LONE_SURROGATE}`;
        const found = fidelityProblem(parts.valuesType!, (value as Record<string, unknown>)[key], path);
        if (found) return found;
        path.pop();
      }
      return undefined;
    }
    case 'array': {
      if (!Array.isArray(value)) return undefined;
      for (let i = 0; i < value.length; i++) {
        path.push(String(i));
        const found = fidelityProblem(parts.itemsType!, value[i], path);
        if (found) return found;
        path.pop();
      }
      return undefined;
    }
    case 'record':
    case 'error': {
      if (value === null || typeof value !== 'object') return undefined;
      // A plain object keeps every key in memory; Avro keeps the declared fields only. (Any other
      // object is copied through avsc in both tiers.)
      if (Object.getPrototypeOf(value) === Object.prototype) {
        const undeclared = Object.keys(value).find((key) => !parts.fields!.some((field) => field.name === key));
        if (undeclared !== undefined) {
          path.push(undeclared);
          return 'is a field the schema does not declare, which Avro does not carry (it would be dropped on disk); leave it out, or declare it';
        }
      }
      for (const field of parts.fields!) {
        path.push(field.name);
        const found = fidelityProblem(field.type, (value as Record<string, unknown>)[field.name], path);
        if (found) return found;
        path.pop();
      }
      return undefined;
    }
    case 'union:unwrapped': {
      // The branch avsc will encode the value with: the first that accepts it.
      const branch = parts.types!.find((candidate) => candidate.isValid(value));
      return branch === undefined ? undefined : fidelityProblem(branch, value, path);
    }
    case 'union:wrapped': {
      if (value === null || typeof value !== 'object') return undefined;
      const [name] = Object.keys(value);
      const branch = parts.types!.find((candidate) => candidate.branchName === name);
      if (branch === undefined) return undefined;
      path.push(name!);
      const found = fidelityProblem(branch, (value as Record<string, unknown>)[name!], path);
      if (found) return found;
      path.pop();
      return undefined;
    }
    default:
      return undefined;
  }
}

export function schemaCodec(type: Type): RecordCodec {
  const describeFailure = (record: unknown): HopperError => {
    let failure: HopperError | undefined;
    try {
      type.isValid(record, {
        errorHook(path: string[], value: unknown, fieldType: Type) {
          failure ??= invalidRecordError(record, path, `expected ${expectation(fieldType)}, got ${shown(value)} (${typeName(value)})`);
        },
      });
    } catch (err) {
      failure ??= invalidRecordError(record, [], `does not match the schema (${(err as Error).message})`, err);
    }
    return failure ?? invalidRecordError(record, [], 'does not match the schema');
  };
  // avsc's checks coerce some values (an int check computes `val | 0`): one that cannot be
  // converted throws, and counts as invalid.
  const isValid = (record: unknown): boolean => {
    try {
      return type.isValid(record);
    } catch {
      return false;
    }
  };
  const sizeOf = compileSizeOf(type);
  const quickCheck = compileQuickCheck(type);
  const validate = (record: unknown): void => {
    checkTopLevel(record);
    try {
      // The quick check accepts only values avsc gives back as written; a value it leaves to avsc
      // is also checked for what avsc accepts but would change.
      if (quickCheck(record)) return;
      if (!isValid(record)) throw describeFailure(record);
      const path: string[] = [];
      const problem = fidelityProblem(type, record, path);
      if (problem !== undefined) throw invalidRecordError(record, path, problem);
    } catch (err) {
      throw HopperError.is(err) ? err : unreadable(record, err);
    }
  };
  return {
    type,
    validateAndSize(record) {
      validate(record);
      try {
        return sizeOf(record);
      } catch (err) {
        throw unreadable(record, err);
      }
    },
    validate,
    encode(record, buf, pos) {
      try {
        return type.encode(record, buf, pos);
      } catch (err) {
        throw encodeFailure(record, err);
      }
    },
    decode: (buf, pos) => type.decode(buf, pos),
    copy(record) {
      if (typeof record !== 'object' || record === null) return record;
      try {
        return type.fromBuffer(type.toBuffer(record));
      } catch {
        // User code (a getter) that threw now though it did not during validation: kept as written.
        return record;
      }
    },
  };
}
