import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HopperError, directoryError, lockedError, notOursError } from './errors.js';
import {
  OWNER_FILE,
  describeHolder,
  errorCode,
  heldTokens,
  isStale,
  readHolder,
  readHolderAsync,
  whenFree,
  type LockHolder,
  type Seen,
} from './lock-holder.js';
import { thisThread } from './proc.js';

// A claim on a directory name, and the one-winner takeover of a stale claim under a guard that is
// a claim itself. Whether a holder is stale is lock-holder.ts's to say; lock.ts keeps the
// channel's lock (a claim) alive with a heartbeat.

/** Where the segment log prepares a segment's header before linking it into place (see segments/writer.ts). */
export const SEGMENT_DRAFT = 'segment.draft';
/**
 * The draft of a segment created synchronously while another is being created in the background
 * (the segment log's last resort when the disk falls behind, see segments/writer.ts).
 */
export const SEGMENT_DRAFT_SYNC = 'segment.draft-sync';
/** The draft of a durable channel's ledger file, renamed into the channel directory once written (see segments/ledger-file.ts). */
export const LEDGER_DRAFT = 'ledger.draft';
/** Lock, guard and draft directories take this many steps of guards on guards before giving up. */
const MAX_GUARD_DEPTH = 3;
/** A claim meets a lock being taken over or released this many times before it reports it as held. */
const CLAIM_ATTEMPTS = 8;

const O_NOFOLLOW = fs.constants.O_NOFOLLOW ?? 0;

function isSymlink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}

/** Removes a lock directory this package made: its owner file and segment drafts, nothing else. */
function removeLockDir(dir: string): void {
  for (const name of [OWNER_FILE, SEGMENT_DRAFT, SEGMENT_DRAFT_SYNC, LEDGER_DRAFT]) {
    try {
      fs.unlinkSync(path.join(dir, name));
    } catch {
      // Not there.
    }
  }
  try {
    fs.rmdirSync(dir);
  } catch {
    // Holds something we did not put there: kept.
  }
}

/**
 * An exclusive claim on a directory name (the channel lock, or a guard on removing one).
 *
 * A claim is a directory holding an owner file, prepared under a draft name and renamed into
 * place: rename(2) of a directory fails when the target is a non-empty directory, so exactly one
 * contender's rename succeeds, and a lock is never seen half-written. A lock is removed only under
 * a guard named after its unique token (`<lock>.<token>.remove`, itself a claim): the guard holder
 * re-reads the lock, and moves it away only if it is still that very lock and still stale (or its
 * own, at release). So no one ever removes a lock it did not prove stale at that instant, and
 * no one can slip a fresh lock in between the check and the move (the old lock is still in place).
 */
export class Claim {
  private constructor(
    readonly dir: string,
    readonly holder: LockHolder,
  ) {}

  /** Takes `dir`, taking over a stale claim; throws `ERR_HOPPER_LOCKED` naming the holder. */
  static take(dir: string, staleMs: number, depth = 0): Claim {
    const holder: LockHolder = { ...thisThread(), token: crypto.randomBytes(12).toString('hex'), since: new Date().toISOString() };
    const draft = `${dir}.${holder.token}.draft`;
    try {
      fs.mkdirSync(draft);
    } catch (err) {
      throw directoryError(`cannot write in the channel directory ${path.dirname(dir)}`, err);
    }
    try {
      const fd = fs.openSync(path.join(draft, OWNER_FILE), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | O_NOFOLLOW, 0o644);
      try {
        fs.writeFileSync(fd, JSON.stringify(holder));
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      removeLockDir(draft);
      throw directoryError(`cannot write in the channel directory ${path.dirname(dir)}`, err);
    }
    heldTokens.add(holder.token);
    try {
      let seen: Seen | undefined;
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        try {
          fs.renameSync(draft, dir);
          return new Claim(dir, holder);
        } catch (err) {
          if (errorCode(err) === 'ENOTDIR') throw notOursError(dir, isSymlink(dir) ? 'is a symbolic link' : 'is not a directory');
          if (errorCode(err) !== 'ENOTEMPTY' && errorCode(err) !== 'EEXIST') throw directoryError(`cannot lock ${dir}`, err);
        }
        seen = readHolder(dir);
        if (seen === undefined) continue; // released meanwhile
        if (!isStale(seen, dir, staleMs)) throw lockedError(dir, describeHolder(seen), whenFree(seen, dir, staleMs));
        if (!removeStale(dir, seen === 'unreadable' ? undefined : seen.token, staleMs, depth)) pause(attempt);
      }
      if (seen === undefined) throw lockedError(dir, 'a lock being taken over');
      throw lockedError(dir, describeHolder(seen), whenFree(seen, dir, staleMs));
    } catch (err) {
      heldTokens.delete(holder.token);
      throw err;
    } finally {
      removeLockDir(draft);
    }
  }

  /** True while `dir` is still this claim (not taken over by someone who found it stale). */
  held(): boolean {
    const seen = readHolder(this.dir);
    return seen !== undefined && seen !== 'unreadable' && seen.token === this.holder.token;
  }

  /** {@link held} off the event loop. */
  async heldAsync(): Promise<boolean> {
    const seen = await readHolderAsync(this.dir);
    return seen !== undefined && seen !== 'unreadable' && seen.token === this.holder.token;
  }

  /** The heartbeat: the owner file's mtime. */
  touch(): void {
    const now = new Date();
    fs.utimesSync(path.join(this.dir, OWNER_FILE), now, now);
  }

  /** {@link touch} off the event loop. */
  async touchAsync(): Promise<void> {
    const now = new Date();
    await fs.promises.utimes(path.join(this.dir, OWNER_FILE), now, now);
  }

  /** Removes the claim if it is still ours (under its guard, as a takeover would). Never throws. */
  release(staleMs: number): void {
    heldTokens.delete(this.holder.token);
    try {
      removeGuarded(this.dir, this.holder.token, staleMs, 0, () => true);
    } catch {
      // Taken over meanwhile: it is someone else's now.
    }
  }
}

/** Takes over the stale claim `dir` whose token is `token`; false when someone else is at it. */
function removeStale(dir: string, token: string | undefined, staleMs: number, depth: number): boolean {
  if (depth >= MAX_GUARD_DEPTH) return false;
  try {
    return removeGuarded(dir, token ?? 'unreadable', staleMs, depth, (seen) => seen !== undefined && isStale(seen, dir, staleMs));
  } catch (err) {
    if (HopperError.is(err, 'ERR_HOPPER_LOCKED')) return false;
    throw err;
  }
}

/**
 * Under the guard `<dir>.<token>.remove`, moves `dir` aside and removes it, if it still is the
 * claim `token` and `mayRemove` agrees at that instant. Throws `ERR_HOPPER_LOCKED` when another
 * live holder has the guard.
 */
function removeGuarded(dir: string, token: string, staleMs: number, depth: number, mayRemove: (seen: Seen | undefined) => boolean): boolean {
  const guard = Claim.take(`${dir}.${token}.remove`, staleMs, depth + 1);
  try {
    const seen = readHolder(dir);
    const same = seen === 'unreadable' ? token === 'unreadable' : seen !== undefined && seen.token === token;
    if (!same || !mayRemove(seen)) return false;
    const grave = `${dir}.${token}.stale`;
    fs.renameSync(dir, grave);
    removeLockDir(grave);
    return true;
  } finally {
    heldTokens.delete(guard.holder.token);
    removeLockDir(guard.dir);
  }
}

const LEFTOVER_CLAIM = /\.(draft|remove|stale)$/;

/**
 * Removes what a holder killed in the middle of a claim, a takeover or a release left beside the
 * lock `lockName` in `dir`: draft, guard and moved-aside lock directories whose holder is stale.
 * Never throws.
 */
export function removeLeftoverClaims(dir: string, lockName: string, staleMs: number): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(`${lockName}.`) || !LEFTOVER_CLAIM.test(name)) continue;
    const leftover = path.join(dir, name);
    try {
      const seen = readHolder(leftover);
      if (seen !== undefined && isStale(seen, leftover, staleMs)) removeLockDir(leftover);
    } catch {
      // Not a directory of ours (a symlink, a file): left alone.
    }
  }
}

/** Sleeps a moment inside a synchronous open, while another holder finishes a takeover. */
function pause(attempt: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1 + attempt * 2);
}
