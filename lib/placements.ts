/**
 * A run of records that sit in the segment log, in order: hopper's `Disk(n)` placement.
 * Users cannot build one, so an `instanceof` check tells it apart from any record.
 */
export class DiskRun {
  constructor(public count: number) {}
}

const MIN_CAPACITY = 32;
const SHRINK_FROM = 4096;

/**
 * FIFO of placements: a record held in memory (with its estimated size) or a {@link DiskRun}.
 * A ring buffer of (item, size) pairs that doubles when full: push, shift and peek are O(1)
 * and allocate nothing in the steady state.
 */
export class PlacementQueue {
  private items: unknown[] = new Array(MIN_CAPACITY);
  private sizes: number[] = new Array(MIN_CAPACITY).fill(0);
  private head = 0;
  private mask = MIN_CAPACITY - 1;
  length = 0;

  push(item: unknown, size: number): void {
    if (this.length === this.mask + 1) this.grow();
    const slot = (this.head + this.length) & this.mask;
    this.items[slot] = item;
    this.sizes[slot] = size;
    this.length++;
  }

  /** The oldest placement; undefined when empty (records are never undefined). */
  peek(): unknown {
    return this.length === 0 ? undefined : this.items[this.head];
  }

  peekSize(): number {
    return this.sizes[this.head]!;
  }

  /** The newest placement; undefined when empty. */
  last(): unknown {
    return this.length === 0 ? undefined : this.items[(this.head + this.length - 1) & this.mask];
  }

  /** Calls `visit` with each placement, oldest first. */
  forEach(visit: (item: unknown) => void): void {
    for (let i = 0; i < this.length; i++) visit(this.items[(this.head + i) & this.mask]);
  }

  shift(): void {
    this.items[this.head] = undefined;
    this.head = (this.head + 1) & this.mask;
    this.length--;
    // Give back the room a burst took once it has drained, so the queue itself stays bounded.
    if (this.mask >= SHRINK_FROM && this.length <= (this.mask + 1) >>> 3) this.resize((this.mask + 1) >>> 2);
  }

  clear(): void {
    this.items = new Array(MIN_CAPACITY);
    this.sizes = new Array(MIN_CAPACITY).fill(0);
    this.head = 0;
    this.mask = MIN_CAPACITY - 1;
    this.length = 0;
  }

  private grow(): void {
    this.resize((this.mask + 1) * 2);
  }

  private resize(capacity: number): void {
    const items: unknown[] = new Array(capacity);
    const sizes: number[] = new Array(capacity).fill(0);
    for (let i = 0; i < this.length; i++) {
      const slot = (this.head + i) & this.mask;
      items[i] = this.items[slot];
      sizes[i] = this.sizes[slot]!;
    }
    this.items = items;
    this.sizes = sizes;
    this.head = 0;
    this.mask = capacity - 1;
  }
}
