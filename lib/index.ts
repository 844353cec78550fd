export { createHopperStreams, HopperStreams } from './streams.js';
export type { HopperWritable, HopperReadable, HopperEvents } from './streams.js';
export type { HopperStats } from './channel.js';
export type { SegmentEvent } from './segments.js';
export { HopperError } from './errors.js';
export type { HopperErrorCode, HopperErrorDetails } from './errors.js';
export { ON_FULL_POLICIES, SEGMENT_CODECS } from './options.js';
export type { AvroSchema, HopperOptions, OnFull, SegmentCodec } from './options.js';
