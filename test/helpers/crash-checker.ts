// The rules a durable channel must keep across kill -9, checked from the logs of the rounds of
// test/durable-crash.ts (one child process per round, test/helpers/durable-child.ts). Each round
// logs, one line per event, appended with writeSync (a kill -9 keeps what the kernel has; only a
// last line without its newline is torn, and ignored):
//   R <stats json>   the channel opened
//   W <id>           the write callback of record <id> fired (without an error)
//   D <id>           record <id> was delivered to the consumer
//   BAD <id> <why>   a delivered record was not what was written (its pad)
//   A <id> <id> ...  these records are about to be acknowledged (logged before ack())
//   F <id>           flush() resolved after acknowledging every delivered record up to <id>
//   E <count>        the final round read the channel to its end (<count> records)
// Record ids of round r are r * ROUND_IDS + i, i = 0, 1, 2, ... in write order.

export const ROUND_IDS = 10_000_000;

/** The pad of record `id`, derived from it: a record that comes out with another pad is not what was written. */
export function padFor(id: number): string {
  return `${id.toString(36)}:`.repeat(1 + (id % 17));
}

export interface RoundLog {
  round: number;
  /** The last round: no producer, no kill; it drains, acknowledges everything and closes. */
  final: boolean;
  text: string;
}

export interface CrashVerdict {
  violations: string[];
  /** Records delivered again after a crash (allowed: at-least-once), counted. */
  duplicates: number;
  /** Records whose write callback fired, over all rounds. */
  written: number;
  delivered: number;
  /** Rounds that delivered at least one record left by an earlier round. */
  roundsRecovering: number;
}

interface Parsed {
  ready: boolean;
  written: number[];
  delivered: number[];
  bad: string[];
  acked: number[];
  flushedUpTo: number;
  end: number | undefined;
}

function parse(text: string): Parsed {
  const lines = text.split('\n');
  lines.pop(); // the part after the last newline: empty, or a line torn by the kill
  const parsed: Parsed = { ready: false, written: [], delivered: [], bad: [], acked: [], flushedUpTo: -1, end: undefined };
  for (const line of lines) {
    const [tag, ...rest] = line.split(' ');
    switch (tag) {
      case 'R':
        parsed.ready = true;
        break;
      case 'W':
        parsed.written.push(Number(rest[0]));
        break;
      case 'D':
        parsed.delivered.push(Number(rest[0]));
        break;
      case 'BAD':
        parsed.bad.push(rest.join(' '));
        break;
      case 'A':
        for (const id of rest) parsed.acked.push(Number(id));
        break;
      case 'F':
        parsed.flushedUpTo = Math.max(parsed.flushedUpTo, Number(rest[0]));
        break;
      case 'E':
        parsed.end = Number(rest[0]);
        break;
      default:
        break; // other lines are notes for a failure message
    }
  }
  return parsed;
}

/** Checks the rounds, oldest first, against the promises of a durable channel with `ack: 'manual'`. */
export function checkCrashRounds(rounds: readonly RoundLog[]): CrashVerdict {
  const violations: string[] = [];
  const confirmed = new Set<number>();
  const acknowledged = new Set<number>();
  const everDelivered = new Set<number>();
  let flushedUpTo = -1;
  let duplicates = 0;
  let delivered = 0;
  let roundsRecovering = 0;

  for (const { round, final, text } of rounds) {
    const at = `round ${round}`;
    const log = parse(text);
    const base = round * ROUND_IDS;
    if (!log.ready) {
      violations.push(`${at}: the channel did not open`);
      continue;
    }
    for (const bad of log.bad) violations.push(`${at}: a record came out other than written: ${bad}`);
    // Callbacks fire in write order, none skipped.
    log.written.forEach((id, i) => {
      if (id !== base + i && violations.length < 50) violations.push(`${at}: write callback #${i} was for id ${id}, expected ${base + i}`);
    });
    // Delivery order within a round: strictly increasing (recovered records first, then new ones).
    for (let i = 1; i < log.delivered.length; i++) {
      if (log.delivered[i]! <= log.delivered[i - 1]!) {
        violations.push(`${at}: delivered ${log.delivered[i]} after ${log.delivered[i - 1]}`);
        break;
      }
    }
    // What earlier rounds promised: confirmed and not acknowledged.
    const unacknowledged = [...confirmed].filter((id) => !acknowledged.has(id)).sort((a, b) => a - b);
    const deliveredHere = new Set(log.delivered);
    const old = log.delivered.filter((id) => id < base);
    if (old.length > 0) roundsRecovering++;
    if (unacknowledged.length > 0 && log.delivered.length > 0) {
      const first = log.delivered[0]!;
      if (first > unacknowledged[0]!) violations.push(`${at}: skipped ahead: first delivery ${first}, oldest unacknowledged ${unacknowledged[0]}`);
      const last = log.delivered.at(-1)!;
      const missing = unacknowledged.filter((id) => (final || id <= last) && !deliveredHere.has(id));
      if (missing.length > 0) {
        violations.push(`${at}: ${missing.length} unacknowledged records not delivered, first ${missing.slice(0, 5).join(', ')} (delivered ${first}..${last})`);
      }
    } else if (final && unacknowledged.length > 0) {
      violations.push(`${at}: the final round delivered nothing; ${unacknowledged.length} unacknowledged records, first ${unacknowledged[0]}`);
    }
    for (const id of old) {
      if (id <= flushedUpTo) {
        violations.push(`${at}: record ${id} came back, though acknowledged and flushed (up to ${flushedUpTo}) in an earlier round`);
        break;
      }
    }
    for (const id of log.delivered) {
      const from = Math.floor(id / ROUND_IDS);
      if (from > round || from < 0 || !Number.isSafeInteger(id)) {
        violations.push(`${at}: delivered ${id}, which no round up to this one wrote`);
        break;
      }
    }
    for (const id of old) if (everDelivered.has(id)) duplicates++;
    if (final && log.end === undefined) violations.push(`${at}: the final round did not read the channel to its end`);

    for (const id of log.written) confirmed.add(id);
    for (const id of log.acked) acknowledged.add(id);
    for (const id of log.delivered) everDelivered.add(id);
    delivered += log.delivered.length;
    flushedUpTo = Math.max(flushedUpTo, log.flushedUpTo);
  }
  return { violations, duplicates, written: confirmed.size, delivered, roundsRecovering };
}
