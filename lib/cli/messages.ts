import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BufferCommand, BufferFlag } from './args.js';
import { HopperError } from '../errors.js';
import { formatBytes } from './progress.js';

// What the buffer command tells the user when the library refuses: the library's messages name
// its options, which a CLI user never typed, so they are said again in the flags' terms.

/**
 * What the user is told when the hopper refuses a record: the library's message names its
 * options, so refusals that concern flags are said again in the flags' terms, from the error's
 * code and the cap it names (`option`).
 */
export function refusalMessage(err: Error, command: BufferCommand): string {
  const memory = `${flag(command, 'memory')} ${formatBytes(command.memory)}`;
  const maxDisk = `${flag(command, 'max-disk')} ${formatBytes(command.maxDisk)}`;
  if (HopperError.is(err, 'ERR_HOPPER_FULL') && err.option !== undefined) {
    const cap = err.option === 'maxSegments' ? `${flag(command, 'max-segments')} ${command.maxSegments}` : maxDisk;
    return `hopper is full: neither memory (${memory}) nor the disk cap (${cap}) has room for it; the record was not accepted`;
  }
  if (HopperError.is(err, 'ERR_HOPPER_RECORD_TOO_LARGE')) {
    return `record too large: it is bigger than ${memory} and, encoded, than ${maxDisk} allows`;
  }
  return err.message;
}

/** A flag as the user typed it (`-m` or `--memory`), by its long name. */
function flag(command: BufferCommand, name: BufferFlag): string {
  return command.typed[name] ?? `--${name}`;
}

/** Why a directory operation failed, from its system error, in the user's words. */
function systemReason(err: unknown, enoent = 'its file system does not take new directories (as /proc and /sys do not)'): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return 'permission denied: this user may not write there';
    case 'EROFS':
      return 'it is on a read-only file system';
    case 'ENOENT':
      return enoent;
    case 'ENOTDIR':
      return 'a part of the path is a file, not a directory';
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'the disk quota is used up';
    default:
      return err instanceof Error ? err.message : String(err);
  }
}

/**
 * What the user is told when the channel directory cannot be opened: the library's message names
 * `dataDir`, an option the CLI user never typed, so the CLI looks at --dir itself and says what is
 * wrong with it, and what would work.
 */
export function openFailureMessage(err: unknown, command: BufferCommand): string {
  if (!HopperError.is(err, 'ERR_HOPPER_IO')) return (err as Error).message;
  if (command.dir === undefined) {
    const reason = systemReason(err.cause, fs.existsSync(os.tmpdir()) ? undefined : 'it does not exist');
    return `cannot make a temp directory in ${os.tmpdir()} (TMPDIR): ${reason}; set TMPDIR to a directory this user can write to, or give --dir`;
  }
  const dir = command.dir;
  const name = command.name ?? 'hopper';
  const instead = 'give --dir a directory this user can write to (one that does not exist yet is made), or leave --dir out to use a temp directory';
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dir);
  } catch (statErr) {
    if ((statErr as NodeJS.ErrnoException).code !== 'ENOENT') return `--dir ${dir}: ${systemReason(statErr)}; ${instead}`;
    return `--dir ${dir}: cannot make it: ${systemReason(err.cause)}; ${instead}`;
  }
  if (!stat.isDirectory()) return `--dir ${dir} is a file, not a directory; ${instead}`;
  let channel: fs.Stats | undefined;
  try {
    channel = fs.lstatSync(path.join(dir, name));
  } catch {}
  if (channel !== undefined && !channel.isDirectory()) {
    const named = command.name === undefined ? 'the channel directory' : `--name ${name}`;
    return `${named}: ${path.join(dir, name)} exists and is not a directory; give another --name, or remove it`;
  }
  const what = `cannot make the channel directory ${JSON.stringify(name)} in it`;
  return `--dir ${dir}: ${err.cause === undefined ? err.message : `${what}: ${systemReason(err.cause)}`}; ${instead}`;
}
