import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { mountSlowFs } from './fuse.js';

/**
 * A slow disk, as issue 23 measured one: ext4 mounted `-o sync` on a loop device whose backing
 * file sits on a passthrough FUSE file system that sleeps `delayMs` per operation
 * (test/helpers/slowfs.py). A dataDir directly on FUSE is refused at open (lib/directory.ts), so
 * the channel sees a plain ext4 file system that is slow. Everything is unmounted, detached and
 * removed in the test's teardown. Returns the ext4 mount point, or why it cannot be had here (the
 * caller logs NOT CHECKED).
 */
export async function mountSlowDisk(t: ExecutionContext, delayMs: number, sizeMiB = 64): Promise<{ dir: string } | { notChecked: string }> {
  const fuse = await mountSlowFs(t, delayMs);
  if ('notChecked' in fuse) return fuse;
  for (const tool of ['losetup', 'mkfs.ext4', 'mount', 'umount']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return { notChecked: `${tool} is missing` };
    }
  }
  const image = path.join(fuse.mountPoint, 'disk.img');
  const dir = `${fuse.mountPoint}.ext4`;
  let device: string | undefined;
  let mounted = false;
  // Registered after the FUSE mount's teardown, so it runs before it (ava runs teardowns last in, first out).
  t.teardown(() => {
    if (mounted) execFileSync('umount', [dir], { stdio: 'ignore' });
    if (device !== undefined) execFileSync('losetup', ['-d', device], { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    fs.writeFileSync(image, '');
    fs.truncateSync(image, sizeMiB * 1024 * 1024);
    device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    execFileSync('mkfs.ext4', ['-q', device], { stdio: 'ignore' });
    fs.mkdirSync(dir);
    execFileSync('mount', ['-o', 'sync', device, dir], { stdio: 'ignore' });
    mounted = true;
  } catch (err) {
    return { notChecked: `the loop device on FUSE could not be set up: ${(err as Error).message.split('\n')[0]}` };
  }
  return { dir };
}
