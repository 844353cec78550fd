// `npm test`'s ava run, with a temp directory of its own: ava and every child it starts get
// TMPDIR=<a fresh directory>, so that whatever a test file leaves in os.tmpdir() (a hopper's
// temp channel directory, a lock left by a child killed with SIGKILL) is found here, named, and
// fails the run. The directory is removed either way: `npm test` leaves the system temp
// directory as it found it. Arguments are passed on to ava.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-ava-'));
// tsx keeps its compile cache in os.tmpdir() (tsx-<uid>): it is tsx's, not a test's.
const notLeftovers = /^tsx-\d+$/;

/** Every path under `dir` that a test left, relative to it (a directory with contents as its files). */
function leftovers(dir) {
  const found = [];
  const walk = (current) => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (current === dir && notLeftovers.test(entry.name)) continue;
      if (entry.isDirectory() && !entry.isSymbolicLink() && fs.readdirSync(full).length > 0) walk(full);
      else found.push(path.relative(dir, full) + (entry.isDirectory() ? '/' : ''));
    }
  };
  walk(dir);
  return found.sort();
}

const ava = path.join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs');
const child = spawn(process.execPath, [ava, ...process.argv.slice(2)], { cwd: root, stdio: 'inherit', env: { ...process.env, TMPDIR: tmpdir } });
// A Ctrl-C reaches ava too (same process group): wait for it to end, then clean up.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => {});
child.on('exit', (code, signal) => {
  const left = leftovers(tmpdir);
  fs.rmSync(tmpdir, { recursive: true, force: true });
  if (left.length > 0) {
    console.error(`\nThe tests left ${left.length} paths in the temp directory (TMPDIR=${tmpdir}, now removed):`);
    for (const file of left.slice(0, 50)) console.error(`  ${file}`);
    if (left.length > 50) console.error(`  ... and ${left.length - 50} more`);
    console.error('Every test must remove what it made, even after killing a child.');
  }
  process.exitCode = signal !== null ? 1 : code !== 0 ? code : left.length > 0 ? 1 : 0;
});
