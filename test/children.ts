import { once } from 'node:events';
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { spawnChild } from './helpers/children.js';
import { tempDataDir } from './helpers/index.js';
import { within } from './helpers/wait.js';

// The tests' own child processes: one that would run until killed ends itself once its parent is
// gone (test/helpers/end-with-parent.ts), so that a test run killed before its teardowns leaves
// no process behind, writing on.

const ownerChild = fileURLToPath(new URL('helpers/owner-child.ts', import.meta.url));

/** A parent that starts a child (`node --import tsx/esm ARGS`), prints its pid once the child has printed a line, and waits to be killed. */
const INTERMEDIATE = `
const { spawn } = require('node:child_process');
const child = spawn(process.execPath, ['--import', 'tsx/esm', ...process.argv.slice(1)], { stdio: ['ignore', 'pipe', 'inherit'] });
child.stdout.once('data', () => console.log(child.pid));
setInterval(() => {}, 1000);
`;

/** What /proc says of a process: its state letter and command line, or undefined once it is gone. */
function processOf(pid: number): { state: string; cmdline: string } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return { state: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!, cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') };
  } catch {
    return undefined;
  }
}

/** A process has ended: it is gone, or a zombie its new parent (init, here) has not reaped yet. */
function ended(pid: number): boolean {
  const found = processOf(pid);
  return found === undefined || found.state === 'Z';
}

async function untilEnded(pid: number, what: string): Promise<void> {
  await within(
    (async () => {
      while (!ended(pid)) await sleep(20);
    })(),
    what,
  );
}

test('end-with-parent.ts - a child spilling without end whose parent is killed with SIGKILL ends itself', async (t) => {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  const parent = spawnChild(t, process.execPath, ['-e', INTERMEDIATE, ownerChild, 'spill', dir.dataDir, 'orphaned'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await within(once(parent.stdout!.setEncoding('utf8'), 'data'), 'the grandchild spilling')) as [string];
  const pid = Number(line.trim());
  t.true(Number.isSafeInteger(pid) && pid > 0, line);
  // Runs before the data directory is removed (teardowns run last first): a grandchild still
  // writing is killed and waited for.
  t.teardown(async () => {
    if (!ended(pid) && processOf(pid)?.cmdline.includes(ownerChild)) {
      process.kill(pid, 'SIGKILL');
      await untilEnded(pid, 'the grandchild killed in teardown ending');
    }
  });
  t.false(ended(pid), 'the grandchild runs while its parent does');
  t.true(processOf(pid)!.cmdline.includes(ownerChild));

  const parentExited = once(parent, 'exit');
  parent.kill('SIGKILL');
  await parentExited;
  await untilEnded(pid, 'the orphaned grandchild ending');
  t.true(ended(pid));
});
