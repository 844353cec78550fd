import avsc from 'avsc';
import type { Schema, Type } from 'avsc';
import { invalidOptionType } from './errors.js';
import type { AvroSchema } from './options.js';
import { envelopeCodec } from './envelope-codec.js';
import type { RecordCodec } from './record-codec.js';
import { schemaCodec } from './schema-codec.js';

// Records to bytes and sizes: the codec a channel uses, with a schema (schema-codec.ts) or without
// (the envelope, envelope-codec.ts); what every codec answers is record-codec.ts.
export { BY_REFERENCE_BYTES, BYTES_HEAD_MAX_BYTES, type LargeRecord, type RecordCodec } from './record-codec.js';
export { JSON_ENVELOPE_SCHEMA } from './envelope-codec.js';

/**
 * Builds the codec for a channel: the user's schema (object, JSON string or avsc Type), or the
 * schemaless envelope. A schema avsc refuses is `ERR_HOPPER_INVALID_OPTION` (a TypeError, option
 * `'schema'`), with avsc's error as its cause.
 */
export function createCodec(schema: AvroSchema | undefined): RecordCodec {
  if (schema === undefined) return envelopeCodec();
  if (avsc.Type.isType(schema)) return schemaCodec(schema as Type);
  let parsed: unknown = schema;
  if (typeof schema === 'string') {
    try {
      parsed = JSON.parse(schema);
    } catch {
      // A bare name such as "string" is not JSON: avsc takes it as is.
      parsed = schema;
    }
  }
  try {
    return schemaCodec(avsc.Type.forSchema(parsed as Schema));
  } catch (err) {
    throw invalidOptionType('schema', schema, `Expected \`schema\` to be a valid Avro schema: ${(err as Error).message}`, err);
  }
}
