import type { Type } from 'avsc';

// Why this exists: validating every record with avsc's `isValid` was the largest cost of the
// memory path (about a third of the time per event record in the pass-through profile), mostly its long
// check, `val % 1 === 0`, which is a floating-point remainder call for timestamps and other
// numbers beyond small integers. This check is compiled from the schema, like avsc's, for the
// common types only. It is sound, not complete: true only for values avsc's `isValid` accepts
// and gives back as written (no -0 for an int or long, no float beyond the float range); false
// means "ask avsc" and the fidelity check, which then decide (and name the field). It is false
// too for a string with a lone surrogate and for a plain object with an undeclared key.

/** Enums with at most this many symbols are checked by comparisons, not a Set lookup. */
const ENUM_INLINE_SYMBOLS = 8;

/** The largest float32; a number beyond it may round to Infinity when written as a float. */
const FLOAT_MAX = 3.4028234663852886e38;

/** avsc's isSafeLong bounds: a long must be an integer within ±(2^53 − 2). */
const LONG_MAX = 9007199254740990;

interface TypeParts {
  typeName: string;
  itemsType?: Type;
  fields?: Array<{ name: string; type: Type; defaultValue(): unknown }>;
  symbols?: string[];
  types?: Type[];
}

/**
 * Compiles a check that returns true only for values `type.isValid()` accepts. Types it does not
 * know (maps, fixed, logical and abstract types, wrapped unions, unions other than `null` and one
 * other branch, error records) compile to `false`, which hands the value to avsc.
 */
export function compileQuickCheck(root: Type): (value: unknown) => boolean {
  const functions: Array<(value: unknown) => boolean> = [];
  const constants: unknown[] = [];
  const ids = new Map<Type, number>();

  /** JavaScript for "the value at `value` certainly is a `type`", or undefined when unknown. */
  const expression = (type: Type, value: string): string | undefined => {
    const parts = type as unknown as TypeParts;
    switch (parts.typeName) {
      case 'null':
        return `${value} === null`;
      case 'boolean':
        return `typeof ${value} === 'boolean'`;
      case 'int':
        // avsc's check is `val === (val | 0)`, which coerces (and can throw on) objects: test the
        // kind first. -0 passes avsc but comes back as 0: it is left to avsc and the fidelity check.
        return `(typeof ${value} === 'number' && ${value} === (${value} | 0) && (${value} !== 0 || 1 / ${value} > 0))`;
      case 'long':
        // A small integer passes the first test without a call; any other integer in range, the second.
        return `(typeof ${value} === 'number' && (${value} !== 0 ? ${value} === (${value} | 0) || (Number.isInteger(${value}) && ${value} >= -${LONG_MAX} && ${value} <= ${LONG_MAX}) : 1 / ${value} > 0))`;
      case 'float':
        // A finite value beyond the float range comes back as ±Infinity; NaN and ±Infinity are
        // left to avsc too (they come back as written, more slowly checked).
        return `(typeof ${value} === 'number' && ${value} >= -${FLOAT_MAX} && ${value} <= ${FLOAT_MAX})`;
      case 'double':
        return `typeof ${value} === 'number'`;
      case 'string':
        // A lone surrogate comes back as U+FFFD (Avro strings are UTF-8). isWellFormed() is a
        // flag test for a one-byte string (no surrogates there), a scan only for a two-byte one.
        return `(typeof ${value} === 'string' && ${value}.isWellFormed())`;
      case 'bytes':
        return `Buffer.isBuffer(${value})`;
      case 'enum': {
        const symbols = parts.symbols!;
        // A few symbols: compared one by one (an interned string compares by pointer); more: a Set.
        if (symbols.length <= ENUM_INLINE_SYMBOLS) return `(${symbols.map((symbol) => `${value} === ${JSON.stringify(symbol)}`).join(' || ')})`;
        const id = constants.push(new Set(symbols)) - 1;
        return `(typeof ${value} === 'string' && c[${id}].has(${value}))`;
      }
      case 'union:unwrapped': {
        // Only `null` and one other branch: the value is null, or in that branch's bucket (avsc
        // picks a branch by the kind of value: a record branch takes no array and no Buffer).
        // (Avro has no union directly in a union, and maps compile to undefined below.)
        const branches = parts.types!;
        const nullAt = branches.findIndex((branch) => (branch as unknown as TypeParts).typeName === 'null');
        if (branches.length !== 2 || nullAt < 0) return undefined;
        const check = expression(branches[1 - nullAt]!, value);
        return check === undefined ? undefined : `(${value} === null || ${check})`;
      }
      case 'record':
      case 'array':
        return `f[${functionFor(type)}](${value})`;
      default:
        return undefined;
    }
  };

  function functionFor(type: Type): number {
    const known = ids.get(type);
    if (known !== undefined) return known;
    const id = functions.length;
    ids.set(type, id);
    functions.push(() => false); // until compiled; recursive types refer to the slot
    const parts = type as unknown as TypeParts;
    let body = 'return false;';
    if (parts.typeName === 'array') {
      const item = expression(parts.itemsType!, 'a[i]');
      if (item !== undefined) {
        body = `if (!Array.isArray(v)) return false; const a = v; for (let i = 0; i < a.length; i++) if (!(${item})) return false; return true;`;
      }
    } else {
      const terms: string[] = ['v !== null', "typeof v === 'object'", '!Array.isArray(v)', '!(v instanceof Uint8Array)'];
      for (const [index, field] of parts.fields!.entries()) {
        const slot = `x${index}`;
        const check = expression(field.type, slot);
        if (check === undefined) {
          terms.push('false');
          break;
        }
        // As avsc's record check: a field with a default may be missing.
        terms.push(
          field.defaultValue() === undefined
            ? `((${slot} = v[${JSON.stringify(field.name)}]), ${check})`
            : `((${slot} = v[${JSON.stringify(field.name)}]) === undefined || ${check})`,
        );
      }
      // A plain object with a key the schema does not declare would keep it in memory and lose it
      // on disk: it is left to avsc and the fidelity check, which refuse it. (Other objects are
      // copied through avsc in both tiers, so they come back alike.) for-in also sees what is
      // enumerable on Object.prototype: such a record takes the slower path, which reads own keys.
      const names = parts.fields!.map((field) => `case ${JSON.stringify(field.name)}:`).join(' ');
      const declaredOnly =
        constants.push(new Function(`return function (v) { for (const k in v) switch (k) { ${names} continue; default: return false; } return true; };`)()) - 1;
      terms.push(`(Object.getPrototypeOf(v) !== Object.prototype || c[${declaredOnly}](v))`);
      const slots = parts.fields!.map((_, index) => `x${index}`);
      body = `${slots.length > 0 ? `let ${slots.join(', ')};` : ''} return ${terms.join(' && ')};`;
    }
    functions[id] = new Function('f', 'c', `return function (v) { ${body} };`)(functions, constants) as (value: unknown) => boolean;
    return id;
  }

  const check = expression(root, 'v');
  if (check === undefined) return () => false;
  return new Function('f', 'c', `return function (v) { return ${check}; };`)(functions, constants) as (value: unknown) => boolean;
}
