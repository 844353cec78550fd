import { Writable } from 'node:stream';

// The write callbacks of a durable channel's Node writables (docs/durable-design.md §2.3): the
// user's write callback fires once the record is durable under the fsync policy, without
// backpressure before the caps. Used by the Node adapter (streams.ts) only.
//
// Node calls the next `_write` only after the previous callback, so the callback Node holds is
// called at once (as in any hopper) while the user's is kept apart. Node leaves no other way to
// reach it: `_write` gets Node's own `state.onwrite`, and the user's callback stays in
// `state.writecb` (lib/internal/streams/writable.js, `writeOrBuffer()`, lines 567-572 of Node
// 20.20, and `doWrite()` for buffered writes). So, on this one instance, `write()` is overridden to
// hand the user's callback to the `_write` of its record, which passes it to the channel as the
// one to call once the record is durable; Node gets a callback that passes only an error on.
//
// What a write costs is what a burst of them holds until the next commit, so the common cases
// allocate nothing per write:
// - A write without a callback: `null` keeps its place in the FIFO below, and Node gets no callback.
// - A write with one that Node hands to `_write` at once (nothing in flight or buffered, not
//   corked, ended, destroyed or errored: Node's own conditions, read through its public getters):
//   the user's callback goes to `_write` through `direct`, and Node gets `directDone`, one function
//   for every such write (Node counts writes that share a callback in one tick). Node reports an
//   error for such a write only for that write, before any later write reaches `_write` (a failed
//   write errors the writable; one the channel holds keeps `writableLength` above 0): `lastDirect`
//   is its callback.
// - Any other write (corked, behind a write the channel holds, after end or destroy) is queued in
//   a FIFO that `_write` takes from (Node calls `_write` in write order), as an entry called once
//   at most, with a callback of its own for Node. A write Node refuses itself (after end,
//   destroyed) never reaches `_write`: Node's error reaches the user's callback, and `_write`
//   skips its entry.

type Callback = (err?: Error | null) => void;

/** One queued write's callback, held until its record is durable; `ran` once it has been called. */
interface DurableCallback {
  ran: boolean;
  done: Callback;
}

const NONE: unique symbol = Symbol('no direct write');

/** Node would hand a write to `_write` at once: nothing in flight or buffered, and nothing that makes it buffer or refuse. */
function writesAtOnce(stream: Writable): boolean {
  return stream.writableLength === 0 && stream.writableCorked === 0 && !stream.writableEnded && !stream.destroyed && stream.errored == null;
}

function queued(user: Callback): DurableCallback {
  const held: DurableCallback = {
    ran: false,
    done: (err) => {
      if (held.ran) return;
      held.ran = true;
      user(err ?? null);
    },
  };
  return held;
}

/**
 * Overrides `stream.write()` as above. Returns what `_write` calls to take the callback of the
 * write it handles (undefined for a write without one).
 */
export function holdDurableCallbacks(stream: Writable): () => Callback | undefined {
  const queue: Array<DurableCallback | null> = [];
  /** Callbacks taken by `_write`: a write that throws after its `_write` took its entry leaves the FIFO as it is. */
  let taken = 0;
  /** The callback of the write Node is handing to `_write` right now, on the direct path. */
  let direct: Callback | typeof NONE = NONE;
  /** The callback of the last write that took the direct path: Node reports its failure to `directDone`. */
  let lastDirect: Callback | undefined;
  const directDone = (err?: Error | null): void => {
    if (!err) return;
    const user = lastDirect;
    lastDirect = undefined;
    user?.(err);
  };
  const write = Writable.prototype.write;
  stream.write = function (this: Writable, chunk: unknown, encoding?: BufferEncoding | Callback, cb?: Callback): boolean {
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    const user = cb;
    if (user !== undefined && writesAtOnce(this)) {
      direct = user;
      let ok: boolean;
      try {
        ok = write.call(this, chunk, encoding as BufferEncoding, directDone);
      } catch (err) {
        // Refused synchronously (a null chunk), or a consumer's exception out of its _write.
        direct = NONE;
        throw err;
      }
      // (TypeScript does not see that _write, inside write.call(), sets `direct`.)
      if ((direct as Callback | typeof NONE) !== NONE) {
        // Node did not hand it to _write after all (the getters above said it would): it holds
        // `directDone` for it. Queued as any other write, and reported to if Node fails it.
        direct = NONE;
        const held = queued(user);
        queue.push(held);
        lastDirect = held.done;
      }
      return ok;
    }
    const entry = user === undefined ? null : queued(user);
    const before = taken;
    queue.push(entry);
    try {
      if (entry === null) return write.call(this, chunk, encoding as BufferEncoding);
      return write.call(this, chunk, encoding as BufferEncoding, (err?: Error | null) => {
        if (err) entry.done(err);
      });
    } catch (err) {
      // Refused synchronously (a null chunk): no _write comes for it. (An exception out of the
      // _write that took it, a consumer's, leaves the FIFO alone.)
      if (taken === before && queue.length > 0) queue.pop();
      throw err;
    }
  } as Writable['write'];
  return () => {
    if (direct !== NONE) {
      const user = direct;
      direct = NONE;
      lastDirect = user;
      return user;
    }
    for (;;) {
      if (queue.length === 0) return undefined;
      const entry = queue.shift()!;
      taken++;
      if (entry === null) return undefined;
      if (!entry.ran) return entry.done;
    }
  };
}
