import test from 'ava';
import { checkCrashRounds, ROUND_IDS, type RoundLog } from './helpers/crash-checker.js';

// The checker of the kill -9 test (test/durable-crash.ts) on logs written by hand: it passes a
// correct history and names each kind of broken one. A checker that passes everything would make
// the crash test prove nothing.

const id = (round: number, i: number): number => round * ROUND_IDS + i;
const lines = (...text: string[]): string => `${text.join('\n')}\n`;
const range = (tag: string, round: number, from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `${tag} ${id(round, from + i)}`);

/** Round 1 writes 0..9 (callbacks of 0..7 fired), delivers 0..5, acknowledges 0..2 and flushes that. */
const round1 = lines('R {}', ...range('W', 1, 0, 8), ...range('D', 1, 0, 6), `A ${id(1, 0)} ${id(1, 1)} ${id(1, 2)}`, `F ${id(1, 2)}`, `A ${id(1, 3)}`);

function history(round2: string, final = lines('R {}', 'E 0')): RoundLog[] {
  return [
    { round: 1, final: false, text: round1 },
    { round: 2, final: false, text: round2 },
    { round: 3, final: true, text: final },
  ];
}

/** A correct round 2: redelivers 3 (acknowledged, not flushed) and 4..7, then 8 (written, callback not fired), then its own. */
const goodRound2 = lines('R {}', ...range('D', 1, 3, 9), ...range('W', 2, 0, 3), ...range('D', 2, 0, 3));
const goodFinal = lines('R {}', ...range('D', 1, 4, 9), ...range('D', 2, 0, 3), 'E 8');

test('checkCrashRounds() - a correct history passes, with its duplicates counted', (t) => {
  const verdict = checkCrashRounds(history(goodRound2, goodFinal));
  t.deepEqual(verdict.violations, []);
  t.is(verdict.duplicates, 3 + 8, "round 1's 3..5 came again in round 2; round 1's 4..8 and round 2's 0..2 in the final round");
  t.is(verdict.written, 11);
  t.is(verdict.roundsRecovering, 2);
});

test('checkCrashRounds() - a torn last line is ignored', (t) => {
  const verdict = checkCrashRounds(history(`${goodRound2}D 99`, goodFinal));
  t.deepEqual(verdict.violations, []);
});

test('checkCrashRounds() - names a round that skipped ahead of the oldest unacknowledged record', (t) => {
  const round2 = lines('R {}', ...range('D', 1, 5, 8));
  const verdict = checkCrashRounds(history(round2, goodFinal));
  t.true(verdict.violations.some((v) => v.startsWith('round 2: skipped ahead')));
});

test('checkCrashRounds() - names a record lost in the middle of a redelivery', (t) => {
  const round2 = lines('R {}', `D ${id(1, 3)}`, `D ${id(1, 4)}`, `D ${id(1, 6)}`, `D ${id(1, 7)}`);
  const verdict = checkCrashRounds(history(round2, goodFinal));
  t.true(verdict.violations.some((v) => v.includes('unacknowledged records not delivered') && v.includes(String(id(1, 5)))));
});

test('checkCrashRounds() - names a record the final round did not deliver', (t) => {
  const final = lines('R {}', ...range('D', 1, 4, 7), 'E 3');
  const verdict = checkCrashRounds(history(lines('R {}'), final));
  t.true(verdict.violations.some((v) => v.startsWith('round 3:') && v.includes(String(id(1, 7)))));
});

test('checkCrashRounds() - names records out of order', (t) => {
  const round2 = lines('R {}', `D ${id(1, 4)}`, `D ${id(1, 3)}`, ...range('D', 1, 5, 8));
  const verdict = checkCrashRounds(history(round2, goodFinal));
  t.true(verdict.violations.some((v) => v.includes(`delivered ${id(1, 3)} after ${id(1, 4)}`)));
});

test('checkCrashRounds() - names an acknowledged and flushed record that came back', (t) => {
  const round2 = lines('R {}', ...range('D', 1, 2, 8));
  const verdict = checkCrashRounds(history(round2, goodFinal));
  t.true(verdict.violations.some((v) => v.includes(`record ${id(1, 2)} came back`)));
});

test('checkCrashRounds() - names a round that did not open, and a final round that did not end', (t) => {
  const verdict = checkCrashRounds(history('', lines('R {}', ...range('D', 1, 4, 8))));
  t.true(verdict.violations.includes('round 2: the channel did not open'));
  t.true(verdict.violations.includes('round 3: the final round did not read the channel to its end'));
});

test('checkCrashRounds() - names a record that came out other than written, and callbacks out of order', (t) => {
  const round2 = lines('R {}', `BAD ${id(1, 3)} pad "x"`, `W ${id(2, 1)}`);
  const verdict = checkCrashRounds(history(round2, goodFinal));
  t.true(verdict.violations.some((v) => v.includes('other than written')));
  t.true(verdict.violations.some((v) => v.includes('write callback #0')));
});

test('checkCrashRounds() - names a delivery of a record no round wrote yet', (t) => {
  const round2 = lines('R {}', ...range('D', 1, 3, 8), `D ${id(5, 0)}`);
  const verdict = checkCrashRounds(history(round2, goodFinal));
  t.true(verdict.violations.some((v) => v.includes('which no round up to this one wrote')));
});
