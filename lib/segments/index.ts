// The segment log: an append-only sequence of Avro Object Container Files in the channel
// directory, read front to back and deleted once read. Who does what:
// - the facade (log.ts, `SegmentLog`) is what the channel calls: the caps, the record count, the
//   close; it wires the parts below and the one retry timer;
// - write-behind (write-behind.ts) decides when the block being filled goes to the writer, writes
//   synchronously as the last resort, and handles write faults;
// - the read path (read-path.ts) finds the next record and decides what corruption and failed
//   reads cost;
// - removals (removals.ts) remove segments read through, drop the oldest to make room, and remove
//   every file at close;
// - the block builder (block-builder.ts) encodes appended records into the block being filled;
// - the writer (writer.ts) creates segment files and writes blocks to them, and seals them;
// - the reader (reader.ts) reads blocks back through the block reader (block-reader.ts, shared
//   with `verify`), checks them, and decodes records;
// - the ledger (ledger.ts) is the index of segments and blocks that all of them consult;
// - io.ts holds the file operations and the one retry policy;
// - stale.ts removes, at open, the segments a previous run left;
// - results.ts says how each part fails, and what this facade answers the channel.
// It knows nothing of memory placements or streams. This file only re-exports.

export type { RetryClock, SegmentDirectory, SegmentFileSystem } from './io.js';
export { segmentFileName } from './ledger.js';
export type { DiskBehindEvent, SegmentEvent, SegmentLogHooks, SegmentLogOptions } from './log-state.js';
export { SegmentLog } from './log.js';
export { LostRecords, WAIT, type AppendResult, type DroppedSegment, type FaultEvent } from './results.js';
