import test from 'ava';
import fc from 'fast-check';
import { AckTracker } from '../lib/segments/acks.js';

test('AckTracker.ack() - acknowledges the oldest delivered records; more than delivered is refused and changes nothing', (t) => {
  const acks = new AckTracker(100);
  for (let rn = 100; rn < 110; rn++) acks.deliver(rn);
  t.is(acks.unacknowledged, 10);
  t.true(acks.ack(4));
  t.is(acks.acked, 104);
  t.false(acks.ack(7));
  t.is(acks.acked, 104);
  t.is(acks.unacknowledged, 6);
  t.true(acks.ack(6));
  t.is(acks.acked, 110);
  t.true(acks.ack(0));
  t.false(acks.ack(1));
});

test('AckTracker.ack() - steps over gaps: lost records are never counted, and never pin the position', (t) => {
  const acks = new AckTracker(0, 0, [{ start: 3, end: 5 }]);
  // Records 0..2 and 5..6 are delivered; 3 and 4 never will be.
  for (const rn of [0, 1, 2, 5, 6]) acks.deliver(rn);
  t.is(acks.delivered, 7);
  t.is(acks.unacknowledged, 5);
  t.true(acks.ack(3));
  // It stopped at the gap: it steps over it.
  t.is(acks.acked, 5);
  t.true(acks.ack(1));
  t.is(acks.acked, 6);
  t.is(acks.unacknowledged, 1);
});

test('AckTracker - a gap at the acknowledged position moves it on; gaps that touch merge', (t) => {
  const acks = new AckTracker(10, 10, [{ start: 10, end: 12 }]);
  t.is(acks.acked, 12);
  acks.addGap(20, 25);
  acks.addGap(25, 30);
  acks.addGap(18, 21);
  t.deepEqual(acks.pendingGaps, [{ start: 18, end: 30 }]);
  acks.deliverTo(18);
  t.is(acks.unacknowledged, 6);
  t.true(acks.ack(6));
  t.is(acks.acked, 30);
  t.deepEqual(acks.pendingGaps, []);
});

test('AckTracker - against a plain model over random deliveries, gaps and acks', (t) => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({ op: fc.constant('deliver'), n: fc.nat(5) }),
          fc.record({ op: fc.constant('gap'), n: fc.integer({ min: 1, max: 4 }) }),
          fc.record({ op: fc.constant('ack'), n: fc.nat(6) }),
        ),
      ),
      (ops) => {
        // The model: one entry per RN: 'gap' or 'delivered' or 'acked'.
        const model: Array<'delivered' | 'gap' | 'acked'> = [];
        const acks = new AckTracker();
        for (const { op, n } of ops) {
          if (op === 'deliver') {
            for (let i = 0; i < n; i++) {
              acks.deliver(model.length);
              model.push('delivered');
            }
          } else if (op === 'gap') {
            acks.addGap(model.length, model.length + n);
            for (let i = 0; i < n; i++) model.push('gap');
          } else {
            const open = model.filter((s) => s === 'delivered').length;
            const ok = acks.ack(n);
            if (ok !== n <= open) return false;
            if (ok) {
              let left = n;
              for (let i = 0; i < model.length && left > 0; i++) {
                if (model[i] === 'delivered') {
                  model[i] = 'acked';
                  left--;
                }
              }
            }
          }
          // acked: the first RN not acknowledged and not a gap.
          let first = 0;
          while (first < model.length && model[first] !== 'delivered') first++;
          const trailingGaps = first === model.length;
          if (!trailingGaps && acks.acked !== first) return false;
          if (trailingGaps && acks.acked > model.length) return false;
          if (acks.unacknowledged !== model.filter((s) => s === 'delivered').length) return false;
        }
        return true;
      },
    ),
  );
  t.pass();
});
