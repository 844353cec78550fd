import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { sleep } from './index.js';

const SLOWFS = fileURLToPath(new URL('slowfs.py', import.meta.url));
/** Debian's interpreter, where python3-fusepy installs (a pyenv python3 on PATH would not have it). */
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const FUSE_SUPER_MAGIC = 0x65735546;

/**
 * Mounts test/helpers/slowfs.py (a passthrough FUSE file system that sleeps `delayMs` per
 * operation) on a fresh directory; everything is unmounted and removed in the test's teardown.
 * Returns the mount point, or why it cannot be had here (the caller logs NOT CHECKED).
 */
export async function mountSlowFs(t: ExecutionContext, delayMs: number): Promise<{ mountPoint: string } | { notChecked: string }> {
  if (process.getuid?.() !== 0) return { notChecked: 'not running as root, so no FUSE file system can be mounted' };
  if (!fs.existsSync('/dev/fuse')) return { notChecked: '/dev/fuse is missing' };
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-fuse-'));
  const root = path.join(base, 'root');
  const mountPoint = path.join(base, 'mnt');
  fs.mkdirSync(root);
  fs.mkdirSync(mountPoint);
  const child = spawn(PYTHON, [SLOWFS, root, mountPoint, String(delayMs)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let running = true;
  void exited.then(() => (running = false));
  t.teardown(async () => {
    if (running) {
      spawn('fusermount', ['-u', mountPoint], { stdio: 'ignore' }).once('exit', () => child.kill('SIGKILL'));
      await exited;
    }
    fs.rmSync(base, { recursive: true, force: true });
  });
  // Mounted once the mount point's file system is FUSE; the file system's own start-up has no event.
  while (running && fs.statfsSync(mountPoint).type !== FUSE_SUPER_MAGIC) await sleep(20);
  if (!running) {
    const why = /No module named/.test(stderr)
      ? 'python3-fusepy is missing (apt-get install python3-fusepy fuse3; .ci/run does)'
      : `slowfs.py exited: ${stderr.trim().split('\n').pop() ?? ''}`;
    return { notChecked: why };
  }
  return { mountPoint };
}
