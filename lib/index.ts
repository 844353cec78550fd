/// <reference types="node" preserve="true" />
export { createHopperStream, createHopperStreams, HopperStreams } from './streams.js';
export type { HopperDuplex, HopperWritable, HopperReadable, HopperEvents } from './streams.js';
export type { CorruptEvent, DropEvent, HopperStats } from './channel.js';
export type { RecoveredEvent, TornEvent } from './channel-parts.js';
export type { DurableStats } from './segments/durable-log.js';
export type { DiskBehindEvent, FaultEvent, SegmentEvent } from './segments/index.js';
export { HopperError } from './errors.js';
export type { HopperErrorCode, HopperErrorDetails, HopperErrorOf } from './errors.js';
export { ACK_MODES, FSYNC_POLICIES, ON_CORRUPT_POLICIES, ON_FULL_POLICIES, SEGMENT_CODECS } from './options.js';
export type { AckMode, AvroSchema, FsyncPolicy, HopperOptions, OnCorrupt, OnFull, SegmentCodec } from './options.js';
