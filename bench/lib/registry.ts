import type { Scenario } from './define-scenario.js';

/** The scenarios of tracker issues 6, 15, 21 and 24, in issue order: one file each under bench/scenarios/. */
const loaders: Record<string, () => Promise<{ default: Scenario }>> = {
  passthrough: () => import('../scenarios/passthrough.js'),
  'burst-drain': () => import('../scenarios/burst-drain.js'),
  'byte-mode': () => import('../scenarios/byte-mode.js'),
  'memory-flatness': () => import('../scenarios/memory-flatness.js'),
  latency: () => import('../scenarios/latency.js'),
  concurrency: () => import('../scenarios/concurrency.js'),
  cli: () => import('../scenarios/cli.js'),
  'event-loop': () => import('../scenarios/event-loop.js'),
  'large-record': () => import('../scenarios/large-record.js'),
  'slow-disk': () => import('../scenarios/slow-disk.js'),
  durable: () => import('../scenarios/durable.js'),
  'durable-passthrough': () => import('../scenarios/durable-passthrough.js'),
  'durable-reopen': () => import('../scenarios/durable-reopen.js'),
};

export const SCENARIO_NAMES: readonly string[] = Object.keys(loaders);

export async function loadScenario(name: string): Promise<Scenario> {
  const load = loaders[name];
  if (load === undefined) throw new RangeError(`Expected a scenario name (${SCENARIO_NAMES.join(', ')}), got \`${name}\``);
  return (await load()).default;
}
