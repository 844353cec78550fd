// Imported first by every test child process that would otherwise run until it is killed (or
// preloaded into one with `--import`): the child ends itself once its parent is gone. A test's
// teardown kills its children, but a test run that is itself killed runs no teardown, and a child
// that spills without end would go on filling the temporary directory (it once left 382,000
// files there).
//
// The parent is gone when this process's parent pid changes: the kernel hands an orphan to init
// (or a subreaper) the moment its parent exits, reaped or not. Node reads `process.ppid` once, at
// startup, so the current one is read from /proc/self/stat; asynchronously, so that a child run
// with --trace-sync-io reports nothing of it. The timer is unref'd: it never keeps a child alive.
// The child exits through process.exit(), so that its channels' exit hook still removes their files.
// Children of other languages follow the same rule natively: kafka-mock.c and slowfs.py ask the
// kernel for a signal when their parent dies (PR_SET_PDEATHSIG).
import fs from 'node:fs';

/** How often the parent pid is read. */
const POLL_MS = 100;
/** The exit status of a child that ended because its parent was gone. */
export const ORPHANED_EXIT_CODE = 87;

/** The parent pid in the text of /proc/<pid>/stat (its 4th field, after the command name in parentheses, which may hold spaces). */
export function parentPidOf(stat: string): number {
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

const parent = process.ppid;
let reading = false;
const check = (): void => {
  if (reading) return;
  reading = true;
  fs.readFile('/proc/self/stat', 'utf8', (err, stat) => {
    reading = false;
    // No /proc (not Linux): nothing to watch.
    if (err) clearInterval(timer);
    else if (parentPidOf(stat) !== parent) process.exit(ORPHANED_EXIT_CODE);
  });
};
const timer = setInterval(check, POLL_MS).unref();
// Orphaned already, before this module ran: the parent is init.
if (parent === 1) process.exit(ORPHANED_EXIT_CODE);
