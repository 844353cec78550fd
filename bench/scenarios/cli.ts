/**
 * 7. The command line as a pipe buffer: bytes from a file through `hopper-streams` to /dev/null,
 * against a bare Node pipe (`process.stdin.pipe(process.stdout)`) and, where it is installed,
 * mbuffer. Each run is a whole process, as a shell pipeline would start it: stdin is the file
 * itself (`< file`, the target) or a pipe from `cat` (`cat file |`, as most pipelines
 * feed a pipe buffer).
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatRatio } from '../lib/format.js';
import { MiB, now } from '../lib/measure.js';
import { Unavailable, defineScenario, type PointSummary, type RunReport, type TargetCheck } from '../lib/define-scenario.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const LABELS: Record<string, string> = {
  'node-pipe': 'node -e "process.stdin.pipe(process.stdout)"',
  hopper: 'hopper-streams (64 MiB memory)',
  mbuffer: 'mbuffer -q -m 64M',
};

/** The built command line, as package.json's `bin` names it (`npm run bench` builds first). */
function cliPath(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  const file = path.join(REPO_ROOT, pkg.bin['hopper-streams']!);
  if (!fs.existsSync(file)) throw new Unavailable(`${file} is not built: run \`npm run build\``);
  return file;
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(path.delimiter).some((dir) => dir !== '' && fs.existsSync(path.join(dir, command)));
}

/** A file of `bytes` random-looking bytes (random 1 MiB, repeated). */
function makeInput(file: string, bytes: number): void {
  const chunk = crypto.randomBytes(Math.min(MiB, bytes));
  const fd = fs.openSync(file, 'w');
  try {
    for (let written = 0; written < bytes; written += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written));
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs the command on `input` (as the file itself or through `cat`), to /dev/null; resolves once every process has exited. */
function runCommand(
  command: string,
  args: string[],
  input: string,
  stdin: 'file' | 'pipe',
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const cat = stdin === 'pipe' ? spawn('cat', [input], { stdio: ['ignore', 'pipe', 'inherit'] }) : undefined;
    const inputFd = cat === undefined ? fs.openSync(input, 'r') : undefined;
    const stdout = fs.openSync('/dev/null', 'w');
    const child = spawn(command, args, { stdio: [cat?.stdout ?? inputFd!, stdout, 'pipe'], env });
    if (inputFd !== undefined) fs.closeSync(inputFd);
    fs.closeSync(stdout);
    // The child has its own end of cat's pipe.
    cat?.stdout?.destroy();
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.on('error', reject);
    cat?.on('error', reject);
    const catExit = cat === undefined ? Promise.resolve() : new Promise<void>((done) => cat.on('close', () => done()));
    child.on('close', (code) => void catExit.then(() => resolve({ code, stderr })));
  });
}

export default defineScenario({
  id: 7,
  name: 'cli',
  title: 'Command line: bytes through a pipe buffer',
  description:
    'A file of random bytes is the standard input of the command (the file itself, or a pipe from `cat`), /dev/null its ' +
    'standard output; the time is that of the whole process (and `cat`), start to exit. hopper-streams runs as `hopper-streams` with its defaults (byte mode, 64 MiB of memory) ' +
    'from the built package; the baseline is `node -e "process.stdin.pipe(process.stdout)"`; mbuffer is reported beside them where installed.',
  grid: { impl: ['node-pipe', 'hopper', 'mbuffer'], stdin: ['file', 'pipe'], megabytes: [200] },
  smoke: { megabytes: [2] },
  baseline: { impl: 'node-pipe' },
  metrics: [{ key: 'bytesPerSec', label: 'throughput', unit: 'bytes/s', better: 'higher' }],
  chart: { metric: 'bytesPerSec', unit: 'bytes/s' },
  timeoutMs: 180_000,
  notes: ['The file is read from the page cache (written just before), so the figures are of the processes, not the disk.'],
  label: (settings) => `${LABELS[settings.impl as string] ?? String(settings.impl)}, ${settings.stdin === 'pipe' ? 'cat file |' : '< file'}`,

  async run(settings, { tmpDir }): Promise<RunReport> {
    const bytes = Number(settings.megabytes) * 1_000_000;
    let command: string;
    let args: string[];
    if (settings.impl === 'node-pipe') {
      command = process.execPath;
      args = ['-e', 'process.stdin.pipe(process.stdout)'];
    } else if (settings.impl === 'hopper') {
      command = process.execPath;
      args = [cliPath(), '--dir', tmpDir, '--no-progress'];
    } else {
      if (!onPath('mbuffer')) throw new Unavailable('mbuffer is not installed (apt-get install mbuffer)');
      command = 'mbuffer';
      args = ['-q', '-m', '64M'];
    }
    const input = path.join(tmpDir, 'input.bin');
    makeInput(input, bytes);
    const started = now();
    const { code, stderr } = await runCommand(command, args, input, settings.stdin === 'pipe' ? 'pipe' : 'file', { ...process.env, NODE_OPTIONS: '' });
    const elapsed = now() - started;
    if (code !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr.trim()}`);
    return {
      metrics: { bytesPerSec: (bytes * 1000) / elapsed },
      info: { bytes },
      check: { expected: 1, received: 1, inOrder: true },
    };
  },

  targets({ points }) {
    const checks: TargetCheck[] = [];
    for (const point of points.filter((p: PointSummary) => !p.isBaseline)) {
      const ratio = point.ratios.bytesPerSec;
      // The target is for a file on stdin; through a pipe, it is reported.
      const target = point.settings.impl === 'hopper' && point.settings.stdin !== 'pipe' ? 0.9 : undefined;
      checks.push({
        scenario: 7,
        target: target === undefined ? `report: ${point.label}` : `${point.label}: ≥ ${target}× the bare Node pipe's throughput`,
        measured: point.failure ?? formatRatio(ratio),
        met: target === undefined || !ratio || ratio.n === 0 ? undefined : ratio.median >= target,
        ...(target === undefined ? { report: true } : {}),
      });
    }
    return checks;
  },
});
