import { Channel, type ChannelEmit } from './channel.js';
import { createCodec } from './codec.js';
import { ChannelDirectory } from './directory.js';
import type { ResolvedOptions } from './options.js';
import nodeFs from 'node:fs';
import { DurableLog } from './segments/durable-log.js';
import { withDurableOps } from './segments/durable-io.js';
import { SegmentLog, type FaultEvent, type SegmentFileSystem, type SegmentLogHooks } from './segments/index.js';
import { refuseDurableLeftovers } from './segments/durable-scan.js';

// Where the engine is put together: the codec, the channel directory (locked), the segment log in
// it, and the channel over them, built here in that order and released in the reverse order
// (the log's files before the directory and its lock). No part builds or closes another.

/** Release functions of the channels open in this process, run at exit. */
const openChannels = new Set<() => void>();
let exitHookInstalled = false;
/** The process is exiting: the channels are being released by {@link releaseAllAtExit}. */
let exiting = false;

/** True while the process exits and its channels are released (nothing deferred will run). */
export function isExiting(): boolean {
  return exiting;
}

function releaseAllAtExit(): void {
  exiting = true;
  // Every channel is released, even after one of them threw (a 'fault' listener's exception, or a
  // bug); the first exception is then thrown on, and Node prints it.
  let first: { error: unknown } | undefined;
  for (const release of [...openChannels]) {
    try {
      release();
    } catch (error) {
      first ??= { error };
    }
  }
  if (first !== undefined) throw first.error;
}

/**
 * Opens a channel: makes and locks its directory, removes segments a dead run of it left, and
 * builds the engine. A failed open leaves nothing behind. Throws `ERR_HOPPER_LOCKED` or
 * `ERR_HOPPER_IO`. `fileSystem` is the segment log's fault-injection seam (tests).
 */
export function openChannel(options: ResolvedOptions, emit: ChannelEmit, fileSystem?: SegmentFileSystem): Channel {
  const codec = createCodec(options.schema);
  const directory = ChannelDirectory.open(options.dataDir, options.name, options.staleLockMs);
  // The log reports to the channel built after it: until then there is nothing to wake.
  let channel: Channel | undefined;
  let log: SegmentLog | DurableLog;
  let durable: DurableLog | undefined;
  const logHooks: SegmentLogHooks = {
    onSegment: (event) => emit('segment', event),
    onFault: (event) => emit('fault', event),
    onRecovered: () => channel?.diskRecovered(),
    onDiskBehind: (event) => emit('diskBehind', event),
  };
  try {
    if (options.durable) {
      durable = new DurableLog(
        directory,
        codec,
        { ...options, channel: options.name },
        {
          ...logHooks,
          onTorn: (event) => emit('torn', event),
          onRecoveredBacklog: (event) => emit('recovered', event),
          onFailed: (err) => channel?.fail(err),
        },
        withDurableOps(fileSystem ?? nodeFs),
      );
    } else {
      // Promised records are never deleted silently: a durable channel's directory is refused.
      // Read-only, through node:fs: the seam's faults are for the segment log's own calls.
      refuseDurableLeftovers(withDurableOps(nodeFs), directory.path);
    }
    log = durable ?? new SegmentLog(directory, codec, { ...options, channel: options.name }, logHooks, fileSystem);
  } catch (err) {
    directory.release();
    throw err;
  }
  const release = (): void => {
    openChannels.delete(release);
    let leftovers: FaultEvent[];
    try {
      // Throws only on a bug: files it cannot remove are handed back, not thrown.
      leftovers = log.close();
    } finally {
      directory.release();
    }
    // Announced once nothing is held any more: a 'fault' listener that throws can neither keep the
    // lock nor leave a file open, and its exception reaches whoever closed the channel (the
    // readable's destroy(), which Node turns into its 'error').
    for (const fault of leftovers) emit('fault', fault);
  };
  channel = new Channel(options, { codec, disk: log, durable, path: directory.path, release, idle: () => log.idle().then(() => directory.tidy()) }, emit);
  const opened = channel;
  // Another process took the lock (this one stalled past the window): stop writing at once.
  directory.onLost((err) => opened.fail(err));
  openChannels.add(release);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', releaseAllAtExit);
  }
  return channel;
}
