/** The machine a run measured: CPU, Node, memory, and the disk under the temp directory. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface MachineInfo {
  cpu: string;
  cores: number;
  node: string;
  os: string;
  memoryBytes: number;
  /** The device and file system holding os.tmpdir(), where every implementation writes. */
  disk: string;
  tmpDir: string;
  /** 1-minute load average when the run started: other work on the machine skews the figures. */
  loadAverage: number;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const VENDORS: Record<string, string> = { '0x1af4': 'virtio', '0x8086': 'Intel', '0x144d': 'Samsung' };

function describeDisk(dir: string): string {
  let source: string;
  let fstype: string;
  try {
    [source = '?', fstype = '?'] = execFileSync('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '-T', dir], { encoding: 'utf8' }).trim().split(/\s+/);
  } catch {
    return 'unknown (findmnt not available)';
  }
  const parts = [`${source} (${fstype})`];
  const device = path.basename(source).replace(/p?\d+$/, '');
  const sys = `/sys/block/${device}`;
  const model = readText(`${sys}/device/model`);
  const vendor = readText(`${sys}/device/vendor`);
  const rotational = readText(`${sys}/queue/rotational`);
  const sectors = Number(readText(`${sys}/size`));
  if (model) parts.push(model);
  else if (vendor) parts.push(`${VENDORS[vendor] ?? vendor} block device`);
  if (Number.isFinite(sectors) && sectors > 0) parts.push(`${Math.round((sectors * 512) / 1024 ** 3)} GiB`);
  if (rotational !== undefined) parts.push(`rotational=${rotational}`);
  return parts.join(', ');
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    memoryBytes: os.totalmem(),
    disk: describeDisk(os.tmpdir()),
    tmpDir: os.tmpdir(),
    loadAverage: os.loadavg()[0] ?? 0,
  };
}
