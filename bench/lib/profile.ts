/** Reading a V8 .cpuprofile: self time per function. */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

function where(url: string): string {
  if (url === '') return '(native)';
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  const relative = path.relative(REPO_ROOT, file);
  return relative.startsWith('..') ? file : relative;
}

/** Self time per file:function, as a share of all samples. */
export function topSelfTime(profile: CpuProfile, top: number): { name: string; share: number }[] {
  const total = profile.samples.length || profile.nodes.reduce((n, node) => n + (node.hitCount ?? 0), 0);
  const byName = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = node.hitCount ?? 0;
    if (hits === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    // Files compiled by tsx report line 0: no line rather than a wrong one.
    const name = `${where(url)}:${functionName || '(anonymous)'}${url && lineNumber > 0 ? `:${lineNumber + 1}` : ''}`;
    byName.set(name, (byName.get(name) ?? 0) + hits);
  }
  return [...byName.entries()]
    .map(([name, hits]) => ({ name, share: hits / total }))
    .sort((a, b) => b.share - a.share)
    .slice(0, top);
}
