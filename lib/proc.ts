import fs from 'node:fs';
import os from 'node:os';
import { threadId } from 'node:worker_threads';

// What /proc (Linux) says about processes and threads: who this thread is, whether a process or a
// thread is still there and is the one it was. Elsewhere these know less, and say so (undefined).

/** A process and thread, as a lock's owner file names them. Fields marked Linux are absent elsewhere. */
export interface ThreadIdentity {
  pid: number;
  hostname: string;
  /** Linux: /proc/sys/kernel/random/boot_id. */
  bootId?: string;
  /** Linux: the pid namespace (/proc/self/ns/pid), so a pid is only compared within its namespace. */
  pidNamespace?: string;
  /** Linux: the process start time, in clock ticks after boot (field 22 of /proc/<pid>/stat). */
  startTime?: string;
  /** Linux: the kernel's id of the thread (its task in /proc/<pid>/task/). Absent in locks of 0.5.0. */
  tid?: number;
  /** Linux: the thread's start time, in clock ticks after boot (field 22 of /proc/<pid>/task/<tid>/stat). */
  threadStartTime?: string;
  /** Node's `worker_threads.threadId`: 0 for the main thread. For messages only. */
  threadId?: number;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Field 22 (start time, in clock ticks after boot) of a /proc stat file; undefined when it cannot be read. */
function statStartTime(file: string): string | undefined {
  const stat = readText(file);
  if (stat === undefined) return undefined;
  // The command name (field 2) may hold spaces and parentheses: fields after it follow the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

/** Start time of a process in clock ticks after boot, from /proc (Linux); undefined elsewhere or when it is gone. */
export function processStartTime(pid: number): string | undefined {
  return statStartTime(`/proc/${pid}/stat`);
}

/**
 * Start time of thread `tid` of process `pid` (Linux); 'gone' when /proc shows the process but not
 * that thread; undefined when /proc cannot tell (no /proc, or the process is hidden from us).
 */
export function threadStartTime(pid: number, tid: number): string | 'gone' | undefined {
  const startTime = statStartTime(`/proc/${pid}/task/${tid}/stat`);
  if (startTime !== undefined) return startTime;
  // A thread that ended leaves no task; a process we may not look into leaves no task directory either.
  return fs.existsSync(`/proc/${pid}/task/${pid}`) && !fs.existsSync(`/proc/${pid}/task/${tid}`) ? 'gone' : undefined;
}

/** This thread's kernel thread id, from /proc/thread-self (`<pid>/task/<tid>`); undefined without it. */
function thisThreadId(): number | undefined {
  try {
    const match = /^(\d+)\/task\/(\d+)$/.exec(fs.readlinkSync('/proc/thread-self'));
    // A /proc of another pid namespace than ours would name other numbers: then it tells nothing.
    return match && Number(match[1]) === process.pid ? Number(match[2]) : undefined;
  } catch {
    return undefined;
  }
}

let self: ThreadIdentity | undefined;

/** Who this thread is. Each thread loads this module anew, so each computes its own. */
export function thisThread(): ThreadIdentity {
  if (self === undefined) {
    let pidNamespace: string | undefined;
    try {
      pidNamespace = fs.readlinkSync('/proc/self/ns/pid');
    } catch {
      pidNamespace = undefined;
    }
    const tid = thisThreadId();
    const taskStart = tid === undefined ? undefined : threadStartTime(process.pid, tid);
    self = {
      pid: process.pid,
      hostname: os.hostname(),
      ...optional('bootId', readText('/proc/sys/kernel/random/boot_id')?.trim()),
      ...optional('pidNamespace', pidNamespace),
      ...optional('startTime', processStartTime(process.pid)),
      ...(tid !== undefined && taskStart !== undefined && taskStart !== 'gone' ? { tid, threadStartTime: taskStart } : {}),
      threadId,
    };
  }
  return self;
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined || value === '' ? {} : { [key]: value }) as { [P in K]?: string };
}

/** True while process `pid` exists, whoever owns it. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
