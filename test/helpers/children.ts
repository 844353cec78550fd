import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { within } from './wait.js';

// Child processes for tests: each is ended in the test's teardown, whatever the outcome, so a
// failed wait never leaves a process behind (ava would then fail to exit).

/**
 * Node arguments that preload end-with-parent.ts into a child that does not import it itself (a
 * `-e` script, an example): it ends itself once its parent is gone.
 */
export const END_WITH_PARENT = ['--import', 'tsx/esm', '--import', new URL('./end-with-parent.ts', import.meta.url).href];

interface Teardown {
  teardown: (fn: () => void | Promise<void>) => void;
}

/** Spawns a child that `t.teardown` kills (SIGKILL) if it is still running, and whose pipes it closes. */
export function spawnChild(t: Teardown, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, options);
  t.teardown(() => endChild(child));
  return child;
}

/** Kills a child still running and waits for it to be gone. */
export async function endChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    const closed = once(child, 'close').catch(() => undefined);
    child.kill('SIGKILL');
    await closed;
  }
  for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.destroy();
}

/** Runs a command to its end and resolves with its output; rejects with stderr on a non-zero status. */
export async function runChild(t: Teardown, command: string, args: readonly string[], options: SpawnOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const child = spawnChild(t, command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += String(chunk);
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
  });
  const [code, signal] = (await within(once(child, 'close'), `${command} ${args.join(' ')} exiting`)) as [number | null, NodeJS.Signals | null];
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${code ?? signal}: ${stderr}`);
  return { stdout, stderr };
}
