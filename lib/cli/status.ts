import fs from 'node:fs';
import path from 'node:path';
import { lockStatus, type LockStatus } from '../lock-holder.js';
import type { DurableFileSystem } from '../segments/durable-io.js';
import { readLedgerFile, type LedgerRead } from '../segments/ledger-file.js';
import { listSegments } from '../segments/durable-scan.js';
import { decide, type RecoveryPlan, type TornReport } from '../segments/recovery.js';

// `hopper-streams status --dir D --name N`: the backlog of a durable channel, read-only. It reads
// the ledger file and scans the segments by their framing (the scan recovery uses, shared), then
// says what the next open would deliver and what it would cut off or remove. It takes no lock and
// writes nothing: a live owner may be writing while it looks, so the tail it sees may be moving.

/** The status of a channel directory, as `--json` prints it. */
export interface ChannelStatus {
  channel: string;
  durable: boolean;
  ledger: { status: LedgerRead['status']; reason?: string | undefined; writtenAt?: string | undefined };
  owner: LockStatus;
  /** Records the next open would deliver, the bytes and files that hold them. */
  backlog: { records: number; bytes: number; segments: number; firstFile?: string | undefined; lastFile?: string | undefined };
  /** The oldest unacknowledged record: where the next open starts. */
  oldest?: { record: number; file: string; blockOffset: number; index: number; blockRecords: number } | undefined;
  /** The delivery high-water mark when the ledger was written, and how many of those were not acknowledged. */
  delivered?: { upTo: number; unacknowledged: number } | undefined;
  /** Every record below `syncedBelow` was covered by an fsync, as of the ledger's `writtenAt`. */
  lastFsync?: { before: string; syncedBelow: number } | undefined;
  torn: TornReport[];
  /** Damage (not a torn tail): the reader reports it when it gets there. */
  damage: Array<{ file: string; offset: number; reason: string }>;
  /** Records between the acknowledged position and the files kept that no file holds. */
  missing: number;
  /** Files the next open removes: acknowledged, stale or torn empty. */
  removable: string[];
  /** Non-durable segments (a non-durable channel's, or leftovers of a crash of one). */
  nonDurableSegments: number;
}

/** No channel there, or one that cannot be read: `status` exits 1 with this message. */
export class StatusError extends Error {}

const readOnly = fs as unknown as DurableFileSystem;

/** What a durable channel directory holds, and what its next open would do with it (recovery's plan, not applied). */
export interface ChannelLook {
  channel: string;
  name: string;
  durable: boolean;
  ledger: LedgerRead;
  listing: ReturnType<typeof listSegments>;
  /** Undefined when the directory holds no durable channel. */
  plan: RecoveryPlan | undefined;
}

/** Reads `channel` (a channel directory) without changing anything. Throws StatusError when it is no channel or cannot be read. */
export function lookAtChannel(channel: string): ChannelLook {
  const name = path.basename(channel);
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(channel);
  } catch (err) {
    throw new StatusError(`${channel}: no channel here (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  if (!stat.isDirectory()) throw new StatusError(`${channel}: not a channel directory (${stat.isSymbolicLink() ? 'a symbolic link' : 'not a directory'})`);
  let ledger: LedgerRead;
  let listing: ReturnType<typeof listSegments>;
  try {
    ledger = readLedgerFile(readOnly, channel, name);
    listing = listSegments(readOnly, channel);
  } catch (err) {
    throw new StatusError(`${channel}: cannot be read (${(err as Error).message})`);
  }
  const durableScans = listing.listed.filter((s) => s.scan.kind === 'durable');
  const durable = ledger.status !== 'missing' || durableScans.length > 0;
  if (!durable) return { channel, name, durable, ledger, listing, plan: undefined };
  if (ledger.status === 'foreign') throw new StatusError(`${channel}: its hopper.ledger is not a hopper-streams ledger file (${ledger.reason})`);
  const first = durableScans[0]?.scan;
  try {
    const plan = decide(channel, ledger, listing.listed, first?.kind === 'durable' ? first.schema : '', listing.highestSeq);
    return { channel, name, durable, ledger, listing, plan };
  } catch (err) {
    throw new StatusError(`${channel}: ${(err as Error).message}`);
  }
}

/** Looks at `<dir>/<name>` without changing anything. Throws StatusError when there is no channel or it cannot be read. */
export function channelStatus(dir: string, name: string): ChannelStatus {
  const channel = path.join(dir, name);
  const { ledger, listing, plan, durable } = lookAtChannel(channel);
  const owner = lockStatus(path.join(channel, 'hopper.lock'));
  const nonDurableSegments = listing.listed.filter((s) => s.scan.kind === 'stale').length;
  const base: ChannelStatus = {
    channel,
    durable,
    ledger: {
      status: ledger.status,
      reason: ledger.status === 'damaged' || ledger.status === 'foreign' ? ledger.reason : undefined,
      writtenAt: ledger.status === 'ok' ? ledger.state.writtenAt : undefined,
    },
    owner,
    backlog: { records: 0, bytes: 0, segments: 0 },
    torn: [],
    damage: [],
    missing: 0,
    removable: [],
    nonDurableSegments,
  };
  if (plan === undefined) return base;
  let records = 0;
  let bytes = 0;
  for (const segment of plan.segments) {
    records += Math.max(0, segment.first + segment.records - Math.max(segment.first, plan.cursor));
    bytes += segment.size;
  }
  const name0 = (file: string): string => path.basename(file);
  const status: ChannelStatus = {
    ...base,
    backlog: {
      records,
      bytes,
      segments: plan.segments.length,
      firstFile: plan.segments[0] && name0(plan.segments[0].file),
      lastFile: plan.segments.at(-1) && name0(plan.segments.at(-1)!.file),
    },
    torn: plan.torn.map((torn) => ({ ...torn, file: name0(torn.file) })),
    damage: plan.damage.map((damage) => ({ ...damage, file: name0(damage.file) })),
    missing: plan.missing,
    removable: plan.unlink.map((gone) => `${name0(gone.file)} (${gone.why})`),
  };
  const holding = plan.segments.find((segment) => segment.first <= plan.cursor && plan.cursor < segment.first + segment.records);
  if (holding) {
    let before = holding.first;
    let start = holding.headerLength;
    for (let i = 0; i < holding.blockCounts.length; i++) {
      const count = holding.blockCounts[i]!;
      if (plan.cursor < before + count) {
        status.oldest = { record: plan.cursor, file: name0(holding.file), blockOffset: start, index: plan.cursor - before, blockRecords: count };
        break;
      }
      before += count;
      start = holding.blockEnds[i]!;
    }
  }
  if (ledger.status === 'ok') {
    status.delivered = { upTo: ledger.state.delivered, unacknowledged: Math.max(0, ledger.state.delivered - ledger.state.acked) };
    status.lastFsync = { before: ledger.state.writtenAt, syncedBelow: ledger.state.synced };
  }
  return status;
}

const MiB = 1024 * 1024;
function size(bytes: number): string {
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

function ownerLine(owner: LockStatus, now: number): string {
  if (owner.state === 'free') return 'none (no process has the channel open)';
  if (owner.state === 'unreadable') return 'a lock without a readable owner file (being taken or released, or damaged)';
  const ago = Math.max(0, Math.round((now - owner.heartbeat) / 1000));
  const verdict = owner.verdict === 'alive' ? 'alive' : owner.verdict === 'dead' ? `gone (${owner.why})` : 'not provable from here';
  return `pid ${owner.pid} on ${owner.hostname}, ${verdict}, heartbeat ${ago} s ago`;
}

/** The report for people, one labelled line each. */
export function formatStatus(status: ChannelStatus, now = Date.now()): string {
  const lines: Array<[string, string]> = [];
  if (!status.durable) {
    lines.push(['channel', `${status.channel} (not durable)`]);
    lines.push(['owner', ownerLine(status.owner, now)]);
    lines.push(['segments', `${plural(status.nonDurableSegments, 'segment')} of a non-durable channel (nothing is kept across a restart)`]);
    return lines.map(([label, text]) => `${label.padEnd(12)} ${text}`).join('\n');
  }
  const ledger = status.ledger;
  const ledgerText = ledger.status === 'ok' ? `ledger ok, written ${ledger.writtenAt}` : `ledger ${ledger.status}${ledger.reason ? ` (${ledger.reason})` : ''}`;
  lines.push(['channel', `${status.channel} (durable), ${ledgerText}`]);
  lines.push(['owner', ownerLine(status.owner, now)]);
  const { backlog } = status;
  const files = backlog.segments === 0 ? '' : ` (${backlog.firstFile}${backlog.segments > 1 ? ` .. ${backlog.lastFile}` : ''})`;
  lines.push(['backlog', `${plural(backlog.records, 'record')}, ${size(backlog.bytes)} in ${plural(backlog.segments, 'segment')}${files}`]);
  const oldest = status.oldest;
  lines.push([
    'oldest',
    oldest
      ? `record ${oldest.record}: ${oldest.file}, block at byte ${oldest.blockOffset}, record ${oldest.index + 1} of ${oldest.blockRecords}; unacknowledged`
      : 'none: every record is acknowledged',
  ]);
  if (status.delivered) {
    lines.push([
      'delivered',
      `up to record ${status.delivered.upTo} when the ledger was written (${status.delivered.unacknowledged} delivered, not acknowledged)`,
    ]);
  }
  if (status.lastFsync) {
    lines.push([
      'last fsync',
      status.lastFsync.syncedBelow === 0
        ? `none recorded (fsync 'never', or nothing synced before ${status.lastFsync.before})`
        : `before ${status.lastFsync.before}: records below ${status.lastFsync.syncedBelow} synced`,
    ]);
  } else {
    lines.push(['last fsync', 'unknown (no readable ledger)']);
  }
  lines.push([
    'torn tail',
    status.torn.length === 0
      ? 'none'
      : status.torn
          .map(
            (torn) =>
              `${torn.file} at byte ${torn.offset}: the last block (${torn.records === undefined ? 'records unknown' : plural(torn.records, 'record')}) was cut short by a crash; the next open cuts it off`,
          )
          .join('; '),
  ]);
  if (status.damage.length > 0) lines.push(['damage', status.damage.map((d) => `${d.file} at byte ${d.offset}: ${d.reason}`).join('; ')]);
  if (status.missing > 0)
    lines.push(['missing', `${plural(status.missing, 'record')} no segment holds (removed from outside, or lost in a power cut with fsync 'never')`]);
  if (status.removable.length > 0) lines.push(['next open', `removes ${status.removable.join(', ')}`]);
  return lines.map(([label, text]) => `${label.padEnd(12)} ${text}`).join('\n');
}
