// Acknowledgement bookkeeping of a durable channel (docs/durable-design.md §3.2), in record
// numbers (RNs): `acked` (every RN below it is done), `delivered` (every RN below it was handed to
// the consumer or will never be), and the gaps: RN ranges that will never be delivered (records
// lost to `onCorrupt: 'skip'`, ranges recovery found missing). Lost records never pin a segment:
// acknowledging steps over them. No I/O.

/** A range [start, end) of RNs that will never be delivered. */
export interface Gap {
  start: number;
  end: number;
}

export class AckTracker {
  private acked_: number;
  private delivered_: number;
  /** Sorted, disjoint, each at or above `acked` (those below are dropped). */
  private readonly gaps: Gap[] = [];

  constructor(acked = 0, delivered = acked, gaps: readonly Gap[] = []) {
    this.acked_ = acked;
    this.delivered_ = Math.max(acked, delivered);
    for (const gap of gaps) this.addGap(gap.start, gap.end);
    this.stepOverGaps();
  }

  /** Every record with RN below this is acknowledged. */
  get acked(): number {
    return this.acked_;
  }

  /** Every record with RN below this was delivered (or lies in a gap). */
  get delivered(): number {
    return this.delivered_;
  }

  /** Gaps at or above `acked`, oldest first (a copy). */
  get pendingGaps(): Gap[] {
    return this.gaps.map((gap) => ({ ...gap }));
  }

  /** `rn`, or the end of the gap it lies in: the next RN that can be delivered from `rn` on. */
  skipGap(rn: number): number {
    for (const gap of this.gaps) {
      if (gap.start > rn) break;
      if (rn < gap.end) rn = gap.end;
    }
    return rn;
  }

  /** Delivered records not acknowledged: `delivered − acked` less the gap records between. */
  get unacknowledged(): number {
    return this.delivered_ - this.acked_ - this.gapRecords(this.acked_, this.delivered_);
  }

  /** Records of [start, end) that will never be delivered. Records in a gap are never delivered. */
  addGap(start: number, end: number): void {
    start = Math.max(start, this.acked_);
    if (end <= start) return;
    let at = this.gaps.findIndex((gap) => gap.end >= start);
    if (at < 0) at = this.gaps.length;
    // Merge with every gap that touches or overlaps [start, end).
    let merged: Gap = { start, end };
    let count = 0;
    while (at + count < this.gaps.length && this.gaps[at + count]!.start <= merged.end) {
      const gap = this.gaps[at + count]!;
      merged = { start: Math.min(merged.start, gap.start), end: Math.max(merged.end, gap.end) };
      count++;
    }
    this.gaps.splice(at, count, merged);
    if (this.delivered_ >= merged.start && this.delivered_ < merged.end) this.delivered_ = merged.end;
    this.stepOverGaps();
  }

  /** The record with RN `rn` was delivered (RNs are delivered in order): `delivered` goes past it. */
  deliver(rn: number): void {
    if (rn + 1 > this.delivered_) this.delivered_ = rn + 1;
  }

  /** Every record below `rn` is delivered (or never will be). */
  deliverTo(rn: number): void {
    if (rn > this.delivered_) this.delivered_ = rn;
  }

  /**
   * Acknowledges the oldest `count` delivered, unacknowledged records, stepping over gaps (and over
   * a gap where it stops). False when `count` is more than {@link unacknowledged}: nothing changes.
   */
  ack(count: number): boolean {
    // No gap (the common case, and `ack: 'delivered'` calls this once per record delivered).
    if (this.gaps.length === 0) {
      if (count > this.delivered_ - this.acked_) return false;
      this.acked_ += count;
      return true;
    }
    if (count > this.unacknowledged) return false;
    let left = count;
    let at = this.acked_;
    while (left > 0) {
      const gap = this.gaps[0];
      if (gap !== undefined && gap.start <= at) {
        at = Math.max(at, gap.end);
        this.gaps.shift();
        continue;
      }
      const run = gap === undefined ? left : Math.min(left, gap.start - at);
      at += run;
      left -= run;
    }
    this.acked_ = at;
    this.stepOverGaps();
    return true;
  }

  private stepOverGaps(): void {
    while (this.gaps.length > 0 && this.gaps[0]!.start <= this.acked_) {
      this.acked_ = Math.max(this.acked_, this.gaps.shift()!.end);
    }
    if (this.delivered_ < this.acked_) this.delivered_ = this.acked_;
  }

  private gapRecords(from: number, to: number): number {
    let n = 0;
    for (const gap of this.gaps) {
      if (gap.start >= to) break;
      n += Math.max(0, Math.min(gap.end, to) - Math.max(gap.start, from));
    }
    return n;
  }
}
