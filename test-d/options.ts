// Type test: options built from values that may be undefined (a setting read from the
// environment, a flag not given) type-check under `exactOptionalPropertyTypes`, which this
// folder's tsconfig turns on: an option set to `undefined` means "the default".
import { createHopperStream, createHopperStreams, type DropEvent, type HopperErrorDetails, type HopperOptions } from 'hopper-streams';
import { createKafkaSink, type KafkaProducer } from 'hopper-streams/kafka';
import { createHopperStreams as createStreamxHopper } from 'hopper-streams/streamx';

declare const maybeDir: string | undefined;
declare const maybeName: string | undefined;
declare const maybeBytes: number | undefined;
declare const maybeSignal: AbortSignal | undefined;
declare const producer: KafkaProducer;

const options: HopperOptions = {
  dataDir: maybeDir,
  name: maybeName,
  schema: undefined,
  maxMemoryBytes: maybeBytes,
  maxSegmentBytes: maybeBytes,
  maxSegments: undefined,
  maxDiskBytes: maybeBytes,
  onFull: undefined,
  codec: undefined,
  onCorrupt: undefined,
  staleLockMs: maybeBytes,
  signal: maybeSignal,
};
void createHopperStreams(options);
void createHopperStream({ dataDir: maybeDir, maxMemoryBytes: maybeBytes });
void createStreamxHopper({ dataDir: maybeDir, signal: maybeSignal });
void createKafkaSink<string>({
  producer,
  topic: 't',
  value: (record) => Buffer.from(record),
  key: undefined,
  acks: undefined,
  maxBatchRecords: maybeBytes,
  maxBatchBytes: undefined,
  retry: { initialMs: maybeBytes, maxMs: undefined },
});

const drop: DropEvent = { count: 1, policy: 'drop-newest', reason: 'full', file: undefined };
const details: HopperErrorDetails = { file: maybeDir, offset: maybeBytes };
void [drop, details];

// @ts-expect-error undefined is allowed, a value of another type is not
createHopperStreams({ dataDir: 42 });
