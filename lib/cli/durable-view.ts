import fs from 'node:fs';
import path from 'node:path';
import { lockStatus } from '../lock-holder.js';
import { formatReport, type SegmentReport } from './verify.js';
import { StatusError, lookAtChannel, type ChannelLook } from './status.js';

// How `verify` and `cat` read a durable channel's directory: as its next open would. Recovery's
// plan (computed, never applied: these commands write nothing) says which records are
// acknowledged, where delivery starts, and which tail a crash tore; a torn tail is what a crash
// leaves, not damage.

/** The durable channel in directory `target`, or undefined when `target` is a file, or no durable channel, or unreadable as one. */
export function durableChannelAt(target: string): ChannelLook | undefined {
  try {
    if (!fs.lstatSync(target).isDirectory()) return undefined;
    const look = lookAtChannel(path.resolve(target));
    return look.durable ? look : undefined;
  } catch (err) {
    if (err instanceof StatusError || (err as NodeJS.ErrnoException).code !== undefined) return undefined;
    throw err;
  }
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** `DIR/hopper.ledger: ok, acknowledged below record N, next segment S`, and a note when a live process holds the channel. */
export function formatLedgerLine(look: ChannelLook): string {
  const file = path.join(look.channel, 'hopper.ledger');
  const { ledger } = look;
  let line: string;
  if (ledger.status === 'ok') line = `${file}: ok, acknowledged below record ${ledger.state.acked}, next segment ${ledger.state.nextSeq}`;
  else if (ledger.status === 'missing') line = `${file}: missing; the next open delivers every record on disk`;
  else line = `${file}: ${ledger.status} (${ledger.reason}); the next open delivers every record on disk and rewrites it`;
  const owner = lockStatus(path.join(look.channel, 'hopper.lock'));
  if (owner.state === 'held' && owner.verdict !== 'dead') line += ` (open by pid ${owner.pid} on ${owner.hostname}: the last block may still be being written)`;
  return line;
}

/** A durable segment's line for `verify`: a torn tail is reported and is not bad; acknowledged records are said. Undefined: the plain line. */
export function judgeSegment(look: ChannelLook, report: SegmentReport): { line: string; bad: boolean } | undefined {
  const plan = look.plan;
  if (plan === undefined) return undefined;
  const file = path.resolve(report.file);
  const torn = plan.torn.find((t) => t.file === file);
  if (!report.ok) {
    if (torn === undefined || report.offset < torn.offset) return undefined;
    if (torn.offset === 0) return { line: `${report.file}: torn: its header was cut short by a crash; the next open removes it`, bad: false };
    const held = torn.records === undefined ? 'records unknown' : plural(torn.records, 'record');
    return {
      line: `${report.file}: ok, ${plural(report.records, 'record')}, then torn at byte ${torn.offset}: the last block (${held}) was cut short by a crash; the next open cuts it off`,
      bad: false,
    };
  }
  if (plan.unlink.some((gone) => gone.file === file && gone.why === 'acknowledged')) {
    return { line: `${formatReport(report)}, all acknowledged (removed at next open)`, bad: false };
  }
  const segment = plan.segments.find((s) => s.file === file);
  if (segment !== undefined && segment.first < plan.cursor) {
    return { line: `${formatReport(report)}, ${plural(plan.cursor - segment.first, 'record')} of them acknowledged`, bad: false };
  }
  return undefined;
}

/** What `cat DIR` reads of each segment: records to skip (acknowledged), how many the file holds before a torn tail (undefined: read to its end). */
export function durableReading(look: ChannelLook, all: boolean): Array<{ file: string; skip: number; limit: number | undefined; tornAt: number | undefined }> {
  const plan = look.plan;
  if (plan === undefined) return [];
  const acknowledged = new Set(plan.unlink.filter((gone) => gone.why === 'acknowledged').map((gone) => gone.file));
  const readings: Array<{ file: string; skip: number; limit: number | undefined; tornAt: number | undefined }> = [];
  for (const listed of [...look.listing.listed].sort((a, b) => a.seq - b.seq)) {
    if (listed.scan.kind !== 'durable') continue;
    const scan = listed.scan;
    const tornAt = plan.torn.find((t) => t.file === listed.file)?.offset;
    const segment = plan.segments.find((s) => s.file === listed.file);
    const damaged = segment?.damagedAt !== undefined;
    if (acknowledged.has(listed.file)) {
      if (all) readings.push({ file: listed.file, skip: 0, limit: scan.records, tornAt });
      continue;
    }
    if (segment === undefined) continue;
    const skip = all ? 0 : Math.max(0, plan.cursor - segment.first);
    if (skip >= segment.records && !damaged) continue;
    readings.push({ file: listed.file, skip, limit: damaged ? undefined : segment.records, tornAt });
  }
  return readings;
}
