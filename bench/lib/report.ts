/** The results file: a Markdown table per scenario, targets first, and the JSON beside it. */
import type { BenchResults, ScenarioResult } from './runner.js';
import { formatDuration, formatRatio, formatSpread, formatValue } from './format.js';
import type { InfoValue, PointSummary, TargetCheck } from './define-scenario.js';

function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

function row(cells: string[]): string {
  return `| ${cells.map(cell).join(' | ')} |`;
}

function table(header: string[], rows: string[][]): string[] {
  return [row(header), row(header.map(() => '---')), ...rows.map(row)];
}

function verdict(check: TargetCheck): string {
  if (check.report) return 'reported';
  if (check.met === undefined) return 'not judged';
  return check.met ? 'met' : '**missed**';
}

function showInfo(value: InfoValue | undefined): string {
  if (value === undefined || value === null) return '—';
  return typeof value === 'number' ? value.toLocaleString('en-US') : String(value);
}

export function targetsTable(results: BenchResults): string[] {
  const rows = results.scenarios.flatMap((scenario) => scenario.targets.map((check) => [String(check.scenario), check.target, check.measured, verdict(check)]));
  return table(['#', 'target', 'measured (median, min–max)', 'verdict'], rows);
}

function pointRow(scenario: ScenarioResult, point: PointSummary, ratioMetrics: ScenarioResult['metrics']): string[] {
  const cells = [point.isBaseline ? `${point.label} (baseline)` : point.label];
  if (point.failure !== undefined && Object.keys(point.metrics).length === 0) {
    cells.push(point.failure);
    const rest = ratioMetrics.length - 1 + scenario.metrics.length + scenario.infoColumns.length;
    for (let i = 0; i < rest; i++) cells.push('—');
    return cells;
  }
  for (const metric of ratioMetrics) cells.push(point.isBaseline ? '1×' : formatRatio(point.ratios[metric.key]));
  for (const metric of scenario.metrics) cells.push(formatSpread(point.metrics[metric.key], metric.unit));
  for (const column of scenario.infoColumns ?? []) cells.push(showInfo(point.info[column.key]));
  if (point.failure !== undefined) cells[0] += ` (${point.failure})`;
  return cells;
}

export function scenarioTable(scenario: ScenarioResult): string[] {
  const ratioMetrics = scenario.metrics.filter((metric, i) => i === 0 || metric.showRatio);
  const header = [
    'implementation',
    ...ratioMetrics.map((metric) => `${metric.label} vs baseline`),
    ...scenario.metrics.map((metric) => metric.label),
    ...scenario.infoColumns.map((column) => column.label),
  ];
  return table(
    header,
    scenario.points.map((point) => pointRow(scenario, point, ratioMetrics)),
  );
}

function gridText(scenario: ScenarioResult): string {
  return Object.entries(scenario.grid)
    .map(([key, values]) => `${key}: ${values.map((v) => (typeof v === 'number' ? v.toLocaleString('en-US') : v)).join(', ')}`)
    .join('; ');
}

export function machineLine(results: BenchResults): string {
  const m = results.machine;
  return (
    `${m.cpu} (${m.cores} cores), Node ${m.node}, ${m.os}, ${formatValue(m.memoryBytes, 'bytes')} memory; ` +
    `disk under ${m.tmpDir}: ${m.disk}; load average ${m.loadAverage.toFixed(2)} at the start`
  );
}

export function markdownReport(results: BenchResults, options: { chartFile?: string } = {}): string {
  const lines: string[] = [];
  lines.push(`# ${results.package} ${results.version}: benchmark results`, '');
  if (results.smoke) lines.push('**Smoke run** (tiny sizes): checks that every scenario runs; the figures mean nothing.', '');
  if (results.note) lines.push(results.note, '');
  lines.push(
    `Measured ${results.date.slice(0, 16).replace('T', ' ')} UTC, commit ${results.commit}, on ${machineLine(results)}.`,
    '',
    `${results.reps} repetition${results.reps === 1 ? '' : 's'} of every figure, each in a child process of its own (so that peak RSS does not bleed), ` +
      'run one at a time with the implementations interleaved. Figures are medians, with the min–max of the repetitions in parentheses. ' +
      "A ratio is this implementation's figure over the baseline's from the same repetition (run back to back), " +
      'summarised the same way. Whole run: ' +
      formatDuration(results.wallSeconds * 1000) +
      '. Rerun with `npm run bench`.',
    '',
    '## Targets',
    '',
    ...targetsTable(results),
    '',
  );
  if (options.chartFile) lines.push(`![records/s per scenario and implementation](${options.chartFile})`, '');
  for (const scenario of results.scenarios) {
    lines.push(`## ${scenario.id}. ${scenario.title}`, '', scenario.description, '', `Grid: ${gridText(scenario)}. Baseline: ${scenario.baselineLabel}.`, '');
    lines.push(...scenarioTable(scenario), '');
    for (const note of scenario.notes) lines.push(`- ${note}`);
    if (scenario.notes.length > 0) lines.push('');
  }
  return `${lines.join('\n').trimEnd()}\n`;
}
