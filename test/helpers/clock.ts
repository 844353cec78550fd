import type { RetryClock } from '../../lib/segments/index.js';
import { within } from './wait.js';

/**
 * A clock the test moves by hand, for the segment log's retries: nothing fires until the test
 * says so, and time passes only as the test advances it. No test sleeps to wait out a retry.
 */
export class ManualClock implements RetryClock {
  private time = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { at: number; run: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(run: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, run });
    return id;
  }

  clearTimeout(timer: unknown): void {
    this.timers.delete(timer as number);
  }

  /** Timers armed and not fired yet. */
  get pending(): number {
    return this.timers.size;
  }

  /** The delay of the timer that fires next, from now; undefined when none is armed. */
  get nextDelay(): number | undefined {
    const next = this.earliest();
    return next === undefined ? undefined : next[1].at - this.time;
  }

  /** Moves time on to the earliest timer and runs it; false when no timer is armed. */
  runNext(): boolean {
    const next = this.earliest();
    if (next === undefined) return false;
    const [id, timer] = next;
    this.timers.delete(id);
    this.time = Math.max(this.time, timer.at);
    timer.run();
    return true;
  }

  /**
   * Runs timers, one per turn of the event loop (so that what a retry sets going can happen in
   * between), until `promise` settles; `beforeEach` runs before each timer fires. Resolves as
   * `promise` does; the safety net of `within` catches a hang.
   */
  async runUntil<T>(promise: Promise<T>, what: string, beforeEach: () => void = () => {}): Promise<T> {
    let settled = false;
    const watched = promise.finally(() => {
      settled = true;
    });
    const driving = (async () => {
      while (!settled) {
        await new Promise((resolve) => setImmediate(resolve));
        if (settled) break;
        beforeEach();
        this.runNext();
      }
    })();
    try {
      return await within(watched, what);
    } finally {
      settled = true;
      await driving;
    }
  }

  private earliest(): [number, { at: number; run: () => void }] | undefined {
    let found: [number, { at: number; run: () => void }] | undefined;
    for (const entry of this.timers) if (found === undefined || entry[1].at < found[1].at) found = entry;
    return found;
  }
}
