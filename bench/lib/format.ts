import type { Spread, Unit } from './define-scenario.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

function fixed(value: number, digits: number): string {
  return value.toFixed(digits);
}

/** Three significant figures, at most. */
function sig(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 100) return fixed(value, 0);
  if (abs >= 10) return fixed(value, 1);
  return fixed(value, 2);
}

export function formatValue(value: number, unit: Unit): string {
  if (!Number.isFinite(value)) return 'n/a';
  switch (unit) {
    case 'records/s':
      if (value >= 1e6) return `${sig(value / 1e6)} M/s`;
      if (value >= 1e3) return `${sig(value / 1e3)} k/s`;
      return `${sig(value)} /s`;
    case 'bytes/s':
      return value >= GiB ? `${sig(value / GiB)} GiB/s` : `${sig(value / MiB)} MiB/s`;
    case 'bytes':
      if (value >= GiB) return `${sig(value / GiB)} GiB`;
      if (value >= MiB) return `${sig(value / MiB)} MiB`;
      if (value >= KiB) return `${sig(value / KiB)} KiB`;
      return `${Math.round(value)} B`;
    case 'us':
      if (value >= 1e6) return `${sig(value / 1e6)} s`;
      if (value >= 1e3) return `${sig(value / 1e3)} ms`;
      return `${sig(value)} µs`;
    case 's':
      return `${sig(value)} s`;
    case 'count':
      return Math.round(value).toLocaleString('en-US');
    case 'ratio':
      return `${sig(value)}×`;
  }
}

/** "1.23 M/s (1.20–1.31)": the median, then the min–max spread in the same unit. */
export function formatSpread(spread: Spread | undefined, unit: Unit): string {
  if (spread === undefined || spread.n === 0) return 'n/a';
  const median = formatValue(spread.median, unit);
  if (spread.n === 1 || spread.min === spread.max) return median;
  return `${median} (${formatValue(spread.min, unit)}–${formatValue(spread.max, unit)})`;
}

export function formatRatio(spread: Spread | undefined): string {
  if (spread === undefined || spread.n === 0) return 'n/a';
  const r = (v: number): string => (v >= 10 ? v.toFixed(1) : v.toFixed(2));
  if (spread.n === 1 || spread.min === spread.max) return `${r(spread.median)}×`;
  return `${r(spread.median)}× (${r(spread.min)}–${r(spread.max)})`;
}

export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 90) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
