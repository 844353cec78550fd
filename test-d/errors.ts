// Type test: HopperError.is() narrows, and err.record is the hopper's T where it is the record written.
import { createHopperStreams, HopperError, type HopperErrorCode } from 'hopper-streams';

interface Event {
  seq: number;
}

declare function shed(event: Event): void;
declare const err: unknown;

const hopper = createHopperStreams<Event>();
try {
  hopper.send({ seq: 1 });
} catch (caught) {
  if (HopperError.is<Event>(caught, 'ERR_HOPPER_FULL')) shed(caught.record);
  else throw caught;
}

if (HopperError.is<Event>(err, 'ERR_HOPPER_FULL')) {
  const record: Event = err.record;
  const code: 'ERR_HOPPER_FULL' = err.code;
  const message: string = err.message;
  void [record, code, message];
}
if (HopperError.is<Event>(err, 'ERR_HOPPER_IO')) {
  // Handed back only when a write was refused; a failed read or directory has no record.
  const record: Event | undefined = err.record;
  const cause: unknown = err.cause;
  // @ts-expect-error an ERR_HOPPER_IO may carry no record
  const always: Event = err.record;
  void [record, cause, always];
}
if (HopperError.is(err, 'ERR_HOPPER_INVALID_RECORD')) {
  const path: string[] | undefined = err.path;
  // @ts-expect-error an invalid record is whatever was written, not a T
  const record: Event = err.record;
  void [path, record];
}
if (HopperError.is(err, 'ERR_HOPPER_CORRUPT_SEGMENT')) {
  const where: [string | undefined, number | undefined] = [err.file, err.offset];
  void where;
}
if (HopperError.is(err)) {
  const code: HopperErrorCode = err.code;
  void code;
}
if (HopperError.is(err, 'ERR_HOPPER_FULL')) {
  // Without a type argument the record is unknown: it can be inspected, not used as a T.
  const record: unknown = err.record;
  // @ts-expect-error unknown is not an Event
  shed(err.record);
  void record;
}
// @ts-expect-error not a code hopper-streams reports
HopperError.is(err, 'ERR_NOPE');
declare const someCode: HopperErrorCode | undefined;
if (HopperError.is(err, someCode)) void err.code;

// A refused option is a TypeError or RangeError and a HopperError: instanceof narrows either way.
try {
  createHopperStreams({ maxMemoryBytes: -1 });
} catch (caught) {
  if (caught instanceof HopperError) {
    const code: HopperErrorCode = caught.code;
    void code;
  }
  if (caught instanceof RangeError) void caught.message;
}
if (HopperError.is(err, 'ERR_HOPPER_INVALID_OPTION')) {
  const option: string = err.option;
  const value: unknown = err.value;
  void [option, value];
}
if (HopperError.is(err, 'ERR_HOPPER_INVALID_ARGUMENT')) {
  const argument: string = err.argument;
  void [argument, err.value];
}
if (HopperError.is(err, 'ERR_HOPPER_FULL')) {
  // The disk cap that had no room keeps its narrow type.
  const cap: 'maxDiskBytes' | 'maxSegments' | undefined = err.option;
  void cap;
}
// A subclass narrows to itself: HopperError's own instanceof does not change that.
class RetryLater extends HopperError {
  readonly delayMs = 100;
}
if (err instanceof RetryLater) {
  const delayMs: number = err.delayMs;
  void delayMs;
}
