/**
 * The slow disk of issue 23, for the bench: ext4 mounted `-o sync` on a loop device whose backing
 * file sits on test/helpers/slowfs.py (a passthrough FUSE file system that sleeps per operation).
 * Needs root, /dev/fuse, python3-fusepy, losetup and mkfs.ext4; throws Unavailable saying which is
 * missing. `release()` unmounts, detaches and removes everything.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Unavailable } from './define-scenario.js';

const SLOWFS = fileURLToPath(new URL('../../test/helpers/slowfs.py', import.meta.url));
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const FUSE_SUPER_MAGIC = 0x65735546;

export interface SlowDisk {
  dir: string;
  release(): Promise<void>;
}

export async function mountSlowDisk(base: string, delayMs: number, sizeMiB = 256): Promise<SlowDisk> {
  if (process.getuid?.() !== 0) throw new Unavailable('not running as root: no FUSE or loop mount');
  if (!fs.existsSync('/dev/fuse')) throw new Unavailable('/dev/fuse is missing');
  const root = path.join(base, 'slowfs-root');
  const fuse = path.join(base, 'slowfs-mnt');
  const dir = path.join(base, 'slow-ext4');
  for (const d of [root, fuse, dir]) fs.mkdirSync(d, { recursive: true });
  const child = spawn(PYTHON, [SLOWFS, root, fuse, String(delayMs)], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  let device: string | undefined;
  let mounted = false;
  const release = async (): Promise<void> => {
    if (mounted) execFileSync('umount', [dir], { stdio: 'ignore' });
    if (device !== undefined) execFileSync('losetup', ['-d', device], { stdio: 'ignore' });
    if (child.exitCode === null) {
      try {
        execFileSync('fusermount', ['-u', fuse], { stdio: 'ignore' });
      } catch {
        child.kill('SIGKILL');
      }
      await exited;
    }
  };
  try {
    for (let i = 0; fs.statfsSync(fuse).type !== FUSE_SUPER_MAGIC; i++) {
      if (child.exitCode !== null || i > 500) throw new Unavailable('slowfs.py did not mount (python3-fusepy missing?)');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const image = path.join(fuse, 'disk.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, sizeMiB * 1024 * 1024);
    device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    execFileSync('mkfs.ext4', ['-q', device], { stdio: 'ignore' });
    execFileSync('mount', ['-o', 'sync', device, dir], { stdio: 'ignore' });
    mounted = true;
  } catch (err) {
    await release();
    if (err instanceof Unavailable) throw err;
    throw new Unavailable(`the loop device on FUSE could not be set up: ${(err as Error).message.split('\n')[0]}`);
  }
  return { dir, release };
}
