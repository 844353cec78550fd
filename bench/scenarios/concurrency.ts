/**
 * 6. Concurrency: 8 senders into one hopper against 1 sender, the consumer keeping up.
 * Needs `hopper.sender()`; until it exists, the scenario reports "not available".
 */
import { pipeline } from 'node:stream/promises';
import { createHopperStreams, type HopperStreams } from '../../lib/index.js';
import { formatRatio } from '../lib/format.js';
import { InterleavedOrderCheck, MiB, now, once, perSecond, recordSink, turn } from '../lib/measure.js';
import { eventSchema, makeEvent, type Event } from '../lib/records.js';
import { Unavailable, defineScenario, type RunReport } from '../lib/define-scenario.js';

/** Records a sender sends before letting the event loop turn (and the other senders run). */
const BATCH = 1_000;

/** What the bench needs of a sender: `send()` (throwing when full) or a Writable's `write()`, and maybe an end. */
interface SenderLike {
  send?: (record: Event) => void;
  write?: (record: Event) => boolean;
  end?: () => unknown;
  close?: () => unknown;
  once?: (event: string, listener: () => void) => unknown;
}

function senderFactory(hopper: HopperStreams<Event>): (() => SenderLike) | undefined {
  const sender = (hopper as unknown as { sender?: unknown }).sender;
  return typeof sender === 'function' ? () => (sender as () => SenderLike).call(hopper) : undefined;
}

async function sendAll(sender: SenderLike, first: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const event = makeEvent(first + i);
    if (typeof sender.send === 'function') {
      sender.send(event);
    } else if (!sender.write!(event)) {
      await once(sender as unknown as NodeJS.EventEmitter, 'drain');
    }
    if ((i + 1) % BATCH === 0) await turn();
  }
}

async function endSender(sender: SenderLike): Promise<void> {
  if (typeof sender.end === 'function') await sender.end();
  else if (typeof sender.close === 'function') await sender.close();
}

export default defineScenario({
  id: 6,
  name: 'concurrency',
  title: 'Concurrency: 8 senders vs 1',
  description:
    `Senders from \`hopper.sender()\` each send their share of the events, ${BATCH.toLocaleString('en-US')} at a time between turns of the event loop, ` +
    'all at once, into one hopper (8 MiB budget, event schema) drained by `pipeline(readable, sink)`. ' +
    "Each sender's records must arrive in its own order.",
  grid: { senders: [1, 8], records: [1_000_000] },
  smoke: { records: [4_000] },
  baseline: { senders: 1 },
  metrics: [
    { key: 'recordsPerSec', label: 'records/s', unit: 'records/s', better: 'higher' },
    { key: 'peakRssBytes', label: 'peak RSS', unit: 'bytes', better: 'lower' },
    { key: 'spilled', label: 'spilled', unit: 'count', better: 'lower' },
  ],
  chart: { metric: 'recordsPerSec', unit: 'records/s' },
  timeoutMs: 120_000,
  notes: [],
  label: (settings) => `hopper-streams, ${settings.senders} sender${Number(settings.senders) === 1 ? '' : 's'}`,

  async run(settings, { tmpDir }): Promise<RunReport> {
    const senders = Number(settings.senders);
    const records = Number(settings.records);
    const share = Math.ceil(records / senders);
    const hopper = createHopperStreams<Event>({ dataDir: tmpDir, name: 'bench', schema: eventSchema(), maxMemoryBytes: 8 * MiB });
    const makeSender = senderFactory(hopper);
    if (makeSender === undefined) {
      hopper.destroy();
      throw new Unavailable('hopper.sender() does not exist in this version');
    }
    const check = new InterleavedOrderCheck(records, senders, (seq) => Math.floor((seq - 1) / share));

    const started = now();
    const consumed = pipeline(
      hopper.readable,
      recordSink<Event>((event) => check.see(event.seq)),
    );
    const handles = Array.from({ length: senders }, makeSender);
    await Promise.all(handles.map((sender, k) => sendAll(sender, k * share + 1, Math.max(0, Math.min(share, records - k * share)))));
    const spilled = hopper.stats().spilled;
    for (const sender of handles) await endSender(sender);
    await Promise.all([hopper.close(), consumed]);
    const elapsed = now() - started;

    return {
      metrics: { recordsPerSec: perSecond(records, elapsed), spilled },
      info: { records, senders, batch: BATCH },
      check: check.result(),
    };
  },

  targets({ points }) {
    const eight = points.find((p) => Number(p.settings.senders) === 8);
    const ratio = eight?.ratios.recordsPerSec;
    return [
      {
        scenario: 6,
        target: 'report: 8 senders vs 1 sender, records/s',
        measured: eight?.failure ?? formatRatio(ratio),
        met: undefined,
        report: true,
      },
    ];
  },
});
