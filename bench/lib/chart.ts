/**
 * The chart: records/s per scenario and implementation, from the JSON results, as a standalone
 * SVG. One horizontal bar per implementation (the median), a whisker for the min–max, on a
 * log scale because the implementations differ by orders of magnitude.
 */
import type { BenchResults } from './runner.js';

interface Bar {
  label: string;
  median: number;
  min: number;
  max: number;
  kind: 'hopper' | 'baseline' | 'peer';
}

interface Group {
  title: string;
  unit: string;
  bars: Bar[];
}

const COLORS = { hopper: '#2563eb', baseline: '#6b7280', peer: '#ea580c' } as const;
const WIDTH = 980;
const LABEL_WIDTH = 330;
const PLOT_WIDTH = 470;
const ROW = 22;
const GROUP_GAP = 34;
const TOP = 56;

function escapeXml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function short(value: number): string {
  if (value >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
  if (value >= 1e3) return `${+(value / 1e3).toPrecision(3)}k`;
  return `${+value.toPrecision(3)}`;
}

function groups(results: BenchResults): Group[] {
  const out: Group[] = [];
  for (const scenario of results.scenarios) {
    const chart = scenario.chart;
    if (!chart) continue;
    const scale = chart.scale ?? 1;
    const bars: Bar[] = [];
    for (const point of scenario.points) {
      const spread = point.metrics[chart.metric];
      if (spread === undefined || spread.n === 0) continue;
      const kind = point.label.startsWith('hopper-streams') ? 'hopper' : point.isBaseline ? 'baseline' : 'peer';
      bars.push({ label: point.label, median: spread.median * scale, min: spread.min * scale, max: spread.max * scale, kind });
    }
    if (bars.length > 0) out.push({ title: `${scenario.id}. ${scenario.title}`, unit: chart.unit, bars });
  }
  return out;
}

export function chartSvg(results: BenchResults): string {
  const data = groups(results);
  const values = data.flatMap((g) => g.bars.flatMap((b) => [b.min, b.max])).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...values, 1e3)));
  const hi = Math.ceil(Math.log10(Math.max(...values, 1e4)));
  const x = (value: number): number => LABEL_WIDTH + ((Math.log10(Math.max(value, 10 ** lo)) - lo) / (hi - lo)) * PLOT_WIDTH;

  const rows = data.reduce((n, g) => n + g.bars.length, 0);
  const bottom = TOP + rows * ROW + data.length * GROUP_GAP + 6;
  const height = bottom + 50;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="15" font-weight="600">${escapeXml(`${results.package} ${results.version}: records/s per scenario and implementation (median, min–max; log scale)`)}</text>`,
    `<text x="16" y="42" fill="#4b5563">${escapeXml(`${results.machine.cpu}, ${results.machine.cores} cores, Node ${results.machine.node}; ${results.reps} repetition${results.reps === 1 ? '' : 's'}; ${results.date.slice(0, 10)}`)}</text>`,
  );
  for (let e = lo; e <= hi; e++) {
    const gx = x(10 ** e).toFixed(1);
    out.push(`<line x1="${gx}" y1="${TOP}" x2="${gx}" y2="${bottom}" stroke="#e5e7eb"/>`);
    out.push(`<text x="${gx}" y="${bottom + 16}" text-anchor="middle" fill="#4b5563">${short(10 ** e)}</text>`);
  }
  let y = TOP;
  for (const group of data) {
    y += GROUP_GAP - 12;
    out.push(`<text x="16" y="${y}" font-weight="600">${escapeXml(group.title)}</text>`);
    out.push(`<text x="${LABEL_WIDTH + PLOT_WIDTH}" y="${y}" text-anchor="end" fill="#4b5563">${escapeXml(group.unit)}</text>`);
    y += 12;
    for (const bar of group.bars) {
      const mid = y + ROW / 2;
      const x0 = x(10 ** lo);
      const xm = x(bar.median);
      out.push(`<text x="${LABEL_WIDTH - 8}" y="${mid + 4}" text-anchor="end">${escapeXml(bar.label)}</text>`);
      out.push(
        `<rect x="${x0.toFixed(1)}" y="${(y + 4).toFixed(1)}" width="${Math.max(1, xm - x0).toFixed(1)}" height="${ROW - 8}" fill="${COLORS[bar.kind]}" rx="2"/>`,
      );
      if (bar.max > bar.min) {
        const a = x(bar.min).toFixed(1);
        const b = x(bar.max).toFixed(1);
        out.push(`<path d="M${a} ${mid}H${b}M${a} ${mid - 5}V${mid + 5}M${b} ${mid - 5}V${mid + 5}" stroke="#111827" stroke-width="1.2" fill="none"/>`);
      }
      out.push(`<text x="${(Math.max(xm, x(bar.max)) + 8).toFixed(1)}" y="${mid + 4}" fill="#111827">${escapeXml(`${short(bar.median)}/s`)}</text>`);
      y += ROW;
    }
  }
  const legendY = height - 8;
  let lx = 16;
  for (const [kind, text] of [
    ['hopper', 'hopper-streams'],
    ['baseline', 'baseline'],
    ['peer', 'npm peer'],
  ] as const) {
    out.push(`<rect x="${lx}" y="${legendY - 10}" width="12" height="12" fill="${COLORS[kind]}"/>`);
    out.push(`<text x="${lx + 18}" y="${legendY}">${text}</text>`);
    lx += 130;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
