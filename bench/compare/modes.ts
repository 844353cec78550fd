/** The workloads `bench/compare/run.ts` can run: the event records, with or without their schema, all spilled or past an 8 MiB budget. */
export interface Mode {
  schema: boolean;
  maxMemoryBytes: number;
}

export const MODES: Record<string, Mode> = {
  'schema-spill': { schema: true, maxMemoryBytes: 0 },
  'noschema-spill': { schema: false, maxMemoryBytes: 0 },
  'schema-8mib': { schema: true, maxMemoryBytes: 8 * 1024 * 1024 },
  'noschema-8mib': { schema: false, maxMemoryBytes: 8 * 1024 * 1024 },
};
