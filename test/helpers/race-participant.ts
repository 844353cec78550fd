// One contender of the ownership race, for a child process (owner-child.ts) and a worker thread
// (thread-child.ts) alike: on `open`, it tries to open the channel; one that gets it proves it by
// creating a marker file with O_EXCL (two owners at once collide on it) and holds the channel until
// `release`. Each command is answered with one message.
import fs from 'node:fs';
import path from 'node:path';
import { createHopperStreams } from '../../lib/index.js';

export type RaceCommand = { op: 'open'; round?: number; staleLockMs?: number } | { op: 'release' };

export function raceParticipant(dataDir: string, name: string, send: (message: object) => void): (command: RaceCommand) => void {
  const marker = path.join(dataDir, `${name}.owner-marker`);
  let held: ReturnType<typeof createHopperStreams> | undefined;
  return (command) => {
    if (command.op === 'open') {
      try {
        held = createHopperStreams({ dataDir, name, ...(command.staleLockMs ? { staleLockMs: command.staleLockMs } : {}) });
      } catch (err) {
        const e = err as Error & { code?: string };
        send({ round: command.round, owner: false, code: e.code ?? e.name, message: e.message });
        return;
      }
      let collision = false;
      try {
        fs.closeSync(fs.openSync(marker, 'wx'));
      } catch {
        collision = true;
      }
      send({ round: command.round, owner: true, collision });
    } else {
      const hopper = held!;
      held = undefined;
      fs.rmSync(marker, { force: true });
      hopper.destroy();
      send({ released: true });
    }
  };
}
