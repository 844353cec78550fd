// Child process for the ownership tests.
//
// "race": waits for commands over IPC and answers them as race-participant.ts says; `exit` ends it.
//
// "churn": on `go`, opens and closes the channel `rounds` times as fast as it can; an open that
// succeeds proves it is the only owner with the marker file, as "race" does. Answers with the count
// of opens and of refusals by code, and the message of every refusal that is not ERR_HOPPER_LOCKED.
//
// "spill": opens a channel with every record going to disk and writes without end, until it is
// killed; prints a line once its first segment exists. With a kill point ("after-create":
// right after a new segment's draft file is created, before its header is written;
// "after-link": right after the segment is linked into place), it SIGKILLs itself there.
import './end-with-parent.js';
import fs from 'node:fs';
import path from 'node:path';
import { createHopperStreams } from '../../lib/index.js';
import { HopperStreams } from '../../lib/streams.js';
import type { SegmentFileSystem } from '../../lib/segments/index.js';
import { raceParticipant } from './race-participant.js';

const [mode, dataDir, name, killAt] = process.argv.slice(2);

type Command = { op: 'open'; round: number; staleLockMs?: number } | { op: 'release' } | { op: 'exit' } | { op: 'go'; rounds: number };

if (mode === 'race') {
  const participant = raceParticipant(dataDir!, name!, (message) => process.send!(message));
  process.on('message', (command: Command) => {
    if (command.op === 'open' || command.op === 'release') participant(command);
    else {
      process.disconnect();
      process.exit(0);
    }
  });
  process.send!({ ready: true });
} else if (mode === 'churn') {
  const marker = path.join(dataDir!, `${name}.owner-marker`);
  process.on('message', (command: Command) => {
    if (command.op === 'exit') {
      process.disconnect();
      process.exit(0);
    }
    if (command.op !== 'go') return;
    let opens = 0;
    let collisions = 0;
    const refusals: Record<string, number> = {};
    const others: string[] = [];
    for (let round = 0; round < command.rounds; round++) {
      let hopper: ReturnType<typeof createHopperStreams>;
      try {
        hopper = createHopperStreams({ dataDir, name });
      } catch (err) {
        const e = err as Error & { code?: string };
        const code = e.code ?? e.name;
        refusals[code] = (refusals[code] ?? 0) + 1;
        if (code !== 'ERR_HOPPER_LOCKED') others.push(e.message);
        continue;
      }
      opens++;
      try {
        fs.closeSync(fs.openSync(marker, 'wx'));
        fs.rmSync(marker);
      } catch {
        collisions++;
      }
      hopper.destroy();
    }
    process.send!({ opens, collisions, refusals, others });
  });
  process.send!({ ready: true });
} else if (mode === 'spill') {
  const kill = (): never => {
    process.kill(process.pid, 'SIGKILL');
    throw new Error('unreachable');
  };
  let segments = 0;
  // Segments are created in the background (open, link) or, as the last resort, synchronously.
  const created = (file: fs.PathLike): void => {
    if (killAt === 'after-create' && String(file).includes('segment.draft') && segments >= 2) kill();
  };
  const linked = (): void => {
    segments++;
    if (segments === 1) process.stdout.write('spilling\n');
    if (killAt === 'after-link' && segments >= 3) kill();
  };
  const fileSystem: SegmentFileSystem = {
    ...fs,
    openSync: ((file: fs.PathLike, flags: fs.OpenMode = 'r', fileMode?: fs.Mode) => {
      const fd = fs.openSync(file, flags, fileMode);
      created(file);
      return fd;
    }) as typeof fs.openSync,
    open: ((file: fs.PathLike, flags: fs.OpenMode, fileMode: fs.Mode | undefined, callback: (err: Error | null, fd: number) => void) => {
      fs.open(file, flags, fileMode, (err, fd) => {
        if (!err) created(file);
        callback(err, fd);
      });
    }) as typeof fs.open,
    linkSync: (from, to) => {
      fs.linkSync(from, to);
      linked();
    },
    link: ((from: fs.PathLike, to: fs.PathLike, callback: (err: Error | null) => void) => {
      fs.link(from, to, (err) => {
        if (!err) linked();
        callback(err);
      });
    }) as typeof fs.link,
  };
  const hopper = new HopperStreams<string>({ dataDir, name, maxMemoryBytes: 0, maxSegmentBytes: 2_000 }, { fileSystem });
  let i = 0;
  const write = (): void => {
    for (let k = 0; k < 20; k++) hopper.send(`record ${i++} ${'x'.repeat(i % 50)}`);
    setImmediate(write);
  };
  write();
}
