/**
 * The workloads `bench/compare/run.ts` can run, on the event records with or without their
 * schema: a burst with the reader paused, all spilled or past an 8 MiB budget, then the drain;
 * or (`through`) a pass-through as bench scenario 1 drives it, a synchronous source piped through
 * the Duplex or the pair to a sink that keeps up (16 MiB budget). A burst is written with
 * `send()` and drained with `for await`, or (`streams`) as bench scenario 2 does it: `writable.write()`
 * honouring its return value, then `pipeline(readable, sink)`. A `bytes` mode writes Buffers of
 * that many bytes instead of events, without a schema (the byte mode's records): the cost of the
 * copies that keep a reused Buffer from changing what comes out (16 KiB and more: a copy held by
 * reference in the block; in memory: a copy of every Buffer).
 */
export interface Mode {
  schema: boolean;
  maxMemoryBytes: number;
  through?: 'duplex' | 'pair';
  streams?: boolean;
  bytes?: number;
}

export const MODES: Record<string, Mode> = {
  'schema-spill': { schema: true, maxMemoryBytes: 0 },
  'noschema-spill': { schema: false, maxMemoryBytes: 0 },
  'schema-8mib': { schema: true, maxMemoryBytes: 8 * 1024 * 1024 },
  'noschema-8mib': { schema: false, maxMemoryBytes: 8 * 1024 * 1024 },
  'schema-8mib-streams': { schema: true, maxMemoryBytes: 8 * 1024 * 1024, streams: true },
  'noschema-8mib-streams': { schema: false, maxMemoryBytes: 8 * 1024 * 1024, streams: true },
  'duplex-schema': { schema: true, maxMemoryBytes: 16 * 1024 * 1024, through: 'duplex' },
  'duplex-noschema': { schema: false, maxMemoryBytes: 16 * 1024 * 1024, through: 'duplex' },
  'pair-schema': { schema: true, maxMemoryBytes: 16 * 1024 * 1024, through: 'pair' },
  'pair-noschema': { schema: false, maxMemoryBytes: 16 * 1024 * 1024, through: 'pair' },
  'bytes-1k-spill': { schema: false, maxMemoryBytes: 0, bytes: 1024 },
  'bytes-64k-spill': { schema: false, maxMemoryBytes: 0, bytes: 64 * 1024 },
  'bytes-1k-8mib': { schema: false, maxMemoryBytes: 8 * 1024 * 1024, bytes: 1024 },
  'bytes-64k-8mib': { schema: false, maxMemoryBytes: 8 * 1024 * 1024, bytes: 64 * 1024 },
};
