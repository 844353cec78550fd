/**
 * Profiles one repetition of one grid point: runs its child with `--cpu-prof` and prints the
 * functions with the most self time (file:function, % of samples).
 *
 *   npx tsx bench/profile.ts burst-drain impl=hopper records=2000000 [--top 25] [--flag=--no-allocation-site-pretenuring]
 *
 * Settings not given take the scenario's first grid value. The .cpuprofile is kept (path printed)
 * for Chrome DevTools or speedscope.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runChild } from './lib/runner.js';
import { formatDuration, formatValue } from './lib/format.js';
import { topSelfTime, type CpuProfile } from './lib/profile.js';
import type { Settings } from './lib/define-scenario.js';
import { loadScenario } from './lib/registry.js';
import { runMain } from './lib/main.js';

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { top: { type: 'string' }, flag: { type: 'string', multiple: true } } });
  const [name, ...pairs] = positionals;
  if (name === undefined) {
    console.error('Usage: npx tsx bench/profile.ts <scenario> [key=value ...] [--top N] [--flag=<node flag> ...]');
    return 2;
  }
  const scenario = await loadScenario(name);
  const settings: Record<string, string | number> = {};
  for (const [key, values] of Object.entries(scenario.grid)) settings[key] = values[0]!;
  for (const pair of pairs) {
    const [key = '', value = ''] = pair.split('=');
    settings[key] = typeof settings[key] === 'number' ? Number(value) : value;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hopper-bench-profile-'));
  const outcome = await runChild(scenario, settings as Settings, [...(values.flag ?? []), '--cpu-prof', `--cpu-prof-dir=${dir}`]);
  if (outcome.status !== 'ok') {
    console.error(`${outcome.status}: ${outcome.status === 'error' ? outcome.message : outcome.reason}`);
    return 1;
  }
  const figures = scenario.metrics.map((m) => `${m.label} ${formatValue(outcome.metrics[m.key] ?? Number.NaN, m.unit)}`).join(', ');
  console.log(`${scenario.name} ${scenario.label(settings as Settings)}: ${figures} (${formatDuration(outcome.wallMs)})`);
  const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (file === undefined) throw new Error(`no profile written in ${dir}`);
  const profile = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
  for (const { name: fn, share } of topSelfTime(profile, Number(values.top ?? 25))) {
    console.log(`${(share * 100).toFixed(1).padStart(5)}%  ${fn}`);
  }
  console.log(`profile: ${path.join(dir, file)}`);
  return 0;
}

runMain(main);
