import type { ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { parseCommand, parseSize, type BufferCommand } from '../lib/cli/args.js';
import { createHopperStreams } from '../lib/index.js';
import { ON_FULL_POLICIES, SEGMENT_CODECS } from '../lib/options.js';
import { spawnChild } from './helpers/children.js';
import { SAFETY_NET_MS, within } from './helpers/wait.js';
import { diskSettled, point, sleep, tempDataDir } from './helpers/index.js';

// These run the built binary (npm test builds first; alone: `npm run build && npx ava test/cli.ts`),
// each with TMPDIR set to a directory of the test's own, which must be empty once the CLI has exited.
// They run one at a time (test.serial): each spawns processes, and a busy machine must not make
// them race each other. They wait on events and counts, never on the clock; every child is ended
// in t.teardown.

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = path.join(root, 'dist', 'cli', 'index.js');
const helper = (name: string): string => fileURLToPath(new URL(`helpers/${name}`, import.meta.url));
const fixture = (name: string): string => path.join('fixtures', 'segments', name);
const sha256 = (bytes: Buffer): string => crypto.createHash('sha256').update(bytes).digest('hex');
const MiB = 1024 * 1024;

test.before(() => {
  if (!fs.existsSync(cli)) throw new Error('dist/cli/index.js is missing: run `npm run build` (npm test does)');
});

/** Every file and directory left under `dir`. */
function leftovers(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

async function collectRun(child: ChildProcess, readStdout: Promise<unknown> | undefined): Promise<Run> {
  const out: Buffer[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
  });
  await readStdout;
  child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
  const [code, signal] = (await within(once(child, 'close'), 'the CLI exiting')) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout: Buffer.concat(out), stderr };
}

/**
 * Runs the CLI with `input` on stdin (written in the given pieces, a pause between them).
 * stdout is not read until the input has been written (or `readAfter` resolves): the CLI holds
 * what stdout does not take.
 */
async function runCli(
  t: Teardown,
  args: string[],
  options: { input?: Buffer | string | Array<Buffer | string>; tmpdir: string; readAfter?: Promise<unknown>; cwd?: string },
): Promise<Run> {
  const child = spawnChild(t, process.execPath, [cli, ...args], {
    cwd: options.cwd ?? root,
    env: { ...process.env, TMPDIR: options.tmpdir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin!.on('error', () => {}); // EPIPE once the CLI stops reading: part of some tests
  const pieces = options.input === undefined ? [] : Array.isArray(options.input) ? options.input : [options.input];
  const writing = (async () => {
    for (const [i, piece] of pieces.entries()) {
      if (i > 0) await sleep(100);
      if (!child.stdin!.write(piece)) await Promise.race([once(child.stdin!, 'drain'), once(child.stdin!, 'close')]);
    }
    child.stdin!.end();
  })();
  return collectRun(child, options.readAfter === undefined ? writing : Promise.race([writing, options.readAfter]));
}

interface Teardown {
  teardown: (fn: () => void | Promise<void>) => void;
}

function withTmpdir(t: Teardown): string {
  const dir = tempDataDir();
  t.teardown(dir.remove);
  return dir.dataDir;
}

/** The progress lines printed on a stderr that is not a terminal, their sizes in bytes. */
function progressLines(stderr: string): Array<{ in: number; out: number; mem: number; budget: number; disk: number }> {
  const lines: Array<{ in: number; out: number; mem: number; budget: number; disk: number }> = [];
  for (const match of stderr.matchAll(/^in (\S+) .*? \| out (\S+) .*? \| mem (\S+)\/(\S+) \| disk (\S+) /gm)) {
    const [, input, output, mem, budget, disk] = match as unknown as [string, string, string, string, string, string];
    lines.push({
      in: parseSize(input, 'in', { min: 0 }),
      out: parseSize(output, 'out', { min: 0 }),
      mem: parseSize(mem, 'mem', { min: 0 }),
      budget: parseSize(budget, 'budget', { min: 0 }),
      disk: parseSize(disk, 'disk', { min: 0 }),
    });
  }
  return lines;
}

test.serial(
  'buffer - a producer that finishes long before a slow consumer: every byte arrives in order, the rest waits on disk, memory stays within --memory',
  async (t) => {
    const tmpdir = withTmpdir(t);
    const doneFile = path.join(tmpdir, '..', `${path.basename(tmpdir)}.producer-done`);
    const goFile = path.join(tmpdir, '..', `${path.basename(tmpdir)}.consumer-go`);
    t.teardown(() => {
      fs.rmSync(doneFile, { force: true });
      fs.rmSync(goFile, { force: true });
    });
    const size = 8 * MiB;
    const tsx = ['--import', 'tsx/esm'];
    const producer = spawnChild(t, process.execPath, [...tsx, helper('generate.ts'), String(size), doneFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    const hopper = spawnChild(t, process.execPath, [cli, '--memory', '1MiB', '--progress'], {
      env: { ...process.env, TMPDIR: tmpdir },
      stdio: [producer.stdout!, 'pipe', 'pipe'],
    });
    // The consumer reads nothing until the go file exists: the test writes it once the producer
    // has exited and a progress line shows that the hopper holds all of the input.
    const consumer = spawnChild(t, process.execPath, [...tsx, helper('slow-consumer.ts'), goFile], { stdio: [hopper.stdout!, 'pipe', 'inherit'] });
    // The children have their own copies of the pipes between them: the test must not read them.
    producer.stdout!.destroy();
    hopper.stdout!.destroy();
    const producerExit = once(producer, 'exit');
    let stderr = '';
    const heldAll = new Promise<void>((resolve) => {
      hopper.stderr!.on('data', (chunk: Buffer) => {
        stderr += String(chunk);
        if (progressLines(stderr).some((line) => line.in === size)) resolve();
      });
    });
    let report = '';
    consumer.stdout!.on('data', (chunk: Buffer) => {
      report += String(chunk);
    });
    const [[producerCode]] = await within(Promise.all([producerExit, heldAll]), 'the producer exiting and a progress line showing all input held');
    fs.writeFileSync(goFile, '');
    const [[hopperCode], [consumerCode]] = await within(
      Promise.all([once(hopper, 'exit'), once(consumer, 'close'), once(hopper.stderr!, 'close')]),
      'the hopper and the consumer exiting',
    );
    t.deepEqual([producerCode, hopperCode, consumerCode], [0, 0, 0], stderr);
    const produced = JSON.parse(fs.readFileSync(doneFile, 'utf8')) as { sha256: string; bytes: number };
    const consumed = JSON.parse(report) as { sha256: string; bytes: number };
    t.is(consumed.bytes, size);
    t.is(consumed.sha256, produced.sha256);
    // While the consumer waited, everything was held: within the budget in memory, the rest on disk,
    // and not in an output queue.
    const lines = progressLines(stderr);
    t.true(
      lines.every((line) => line.mem <= MiB && line.budget === MiB),
      stderr,
    );
    const held = lines.find((line) => line.in === size); // printed before the consumer started reading
    t.truthy(held, stderr);
    t.true(held!.disk >= 6 * MiB, `disk ${held!.disk}`);
    t.true(held!.out < MiB, `out ${held!.out}`);
    // One segment, or two when the first one's creation (in the background) took longer than the
    // producer took to fill maxPendingDiskBytes: the last resort then starts the next segment.
    const summary = /^hopper-streams: done in .*: in 8\.0MiB \(.*memory peak (\S+) of 1\.0MiB; disk peak (\S+) in [12] segments?/m.exec(stderr);
    t.truthy(summary, stderr);
    t.true(parseSize(summary![1]!, 'peak', { min: 0 }) <= MiB);
    t.deepEqual(leftovers(tmpdir), [], 'the temp directory is removed');
  },
);

test.serial(
  'buffer --lines - lines split across reads, multi-byte characters, CRLF and empty lines come out as they went in; a last line without newline gets one',
  async (t) => {
    const tmpdir = withTmpdir(t);
    const text = Buffer.from('plain line\n{"json": [1, 2]}\n\ncafé ✓ 漢字\r\n\tindented\nno newline at the end');
    const cut = text.indexOf('é') + 1; // inside the two bytes of é
    const { code, stdout, stderr } = await runCli(t, ['--lines', '--memory', '0'], { tmpdir, input: [text.subarray(0, cut), text.subarray(cut)] });
    t.is(code, 0, stderr);
    t.is(stdout.toString(), `${text.toString()}\n`);
    t.is(stderr, '');
    t.deepEqual(leftovers(tmpdir), []);
  },
);

test.serial('buffer --lines - 50,000 NDJSON lines through a 64 KiB budget arrive intact and in order', async (t) => {
  const tmpdir = withTmpdir(t);
  const input = Array.from({ length: 50_000 }, (_, i) => `${JSON.stringify(point(i))}\n`).join('');
  const { code, stdout, stderr } = await runCli(t, ['--lines', '--memory', '64KiB', '--progress'], { tmpdir, input });
  t.is(code, 0, stderr);
  t.true(stdout.toString() === input, 'output equals input');
  t.regex(stderr, /^hopper-streams: done in .*: in \S+ 50000 rec .* out \S+ 50000 rec .*, [1-9]\d* rec spilled$/m);
  t.deepEqual(leftovers(tmpdir), []);
});

/**
 * Runs the CLI with a regular file as its stdin (`< file`), `skip` bytes of it already read
 * through the same open file, as a shell script that read a header first would leave it.
 * stdout is not read until `readAfter()` resolves, if given: the CLI holds what stdout does not take.
 */
async function runCliOnFile(
  t: Teardown,
  args: string[],
  options: { file: string; skip?: number; tmpdir: string; flags?: string; readAfter?: () => Promise<unknown> },
): Promise<Run> {
  const fd = fs.openSync(options.file, options.flags ?? 'r');
  try {
    if (options.skip !== undefined) fs.readSync(fd, Buffer.alloc(options.skip), 0, options.skip, null);
    const child = spawnChild(t, process.execPath, [cli, ...args], { cwd: root, env: { ...process.env, TMPDIR: options.tmpdir }, stdio: [fd, 'pipe', 'pipe'] });
    return await collectRun(child, options.readAfter?.());
  } finally {
    fs.closeSync(fd);
  }
}

test.serial(
  'buffer - a regular file on stdin arrives byte-exact from where the shell left its offset, through a budget it overflows, its short last piece too',
  async (t) => {
    const tmpdir = withTmpdir(t);
    const file = path.join(withTmpdir(t), 'input.bin');
    const input = crypto.randomBytes(3 * MiB + 1000);
    fs.writeFileSync(file, input);
    // stdout is read once 2 MiB of the input wait on disk.
    const readAfter = (): Promise<void> => waitForDisk(tmpdir, 2 * MiB);
    const { code, stdout, stderr } = await runCliOnFile(t, ['--memory', '256KiB', '--progress'], { file, skip: 777, tmpdir, readAfter });
    t.is(code, 0, stderr);
    t.is(stdout.length, input.length - 777);
    t.true(stdout.equals(input.subarray(777)), 'output equals the input after the offset');
    t.regex(stderr, /^hopper-streams: done in .*: in 3\.0MiB .*; memory peak \S+ of 256KiB; disk peak \S*MiB in [1-9]/m);
    t.deepEqual(leftovers(tmpdir), []);
  },
);

test.serial('buffer --lines - a regular file on stdin: lines cut across its pieces come out whole and in order', async (t) => {
  const tmpdir = withTmpdir(t);
  const file = path.join(withTmpdir(t), 'input.ndjson');
  const input = Array.from({ length: 20_000 }, (_, i) => `${JSON.stringify(point(i))}\n`).join('');
  fs.writeFileSync(file, input);
  const { code, stdout, stderr } = await runCliOnFile(t, ['--lines', '--memory', '64KiB'], { file, tmpdir });
  t.is(code, 0, stderr);
  t.true(stdout.toString() === input, 'output equals input');
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('buffer - a regular file on stdin that cannot be read (opened write-only) fails with one line: exit 1', async (t) => {
  const tmpdir = withTmpdir(t);
  const file = path.join(withTmpdir(t), 'write-only.bin');
  fs.writeFileSync(file, 'some bytes');
  const { code, stdout, stderr } = await runCliOnFile(t, [], { file, tmpdir, flags: 'a' });
  t.is(code, 1);
  t.is(stdout.length, 0);
  t.regex(stderr, /^hopper-streams: reading stdin failed: EBADF\b.*\n$/);
  t.is(fs.readFileSync(file, 'utf8'), 'some bytes', 'the file is untouched');
  t.deepEqual(leftovers(tmpdir), []);
});

const eventSchema = path.join(root, 'fixtures', 'schemas', 'event.avsc');
const KINDS = ['PAGE_VIEW', 'CLICK', 'API_CALL', 'ERROR'];

function event(i: number): Record<string, unknown> {
  return {
    seq: i + 1,
    timestamp: 1_700_000_000_000 + i,
    userId: `u${i % 97}`,
    sessionId: `s${i % 13}`,
    kind: KINDS[i % 4],
    path: `/items/${i}`,
    status: i % 10 === 0 ? 404 : 200,
    durationMs: i / 8,
    bytes: 512 + i,
    tags: i % 3 === 0 ? ['a', 'b'] : [],
    referrer: i % 5 === 0 ? null : `https://example.com/${i}`,
  };
}

test.serial(
  'buffer --lines --schema - lines are validated and stored Avro-encoded; they come back as JSON of the schema, defaults filled in, undeclared fields dropped',
  async (t) => {
    const tmpdir = withTmpdir(t);
    const events = Array.from({ length: 3000 }, (_, i) => event(i));
    const lines = events.map((e, i) => {
      const line: Record<string, unknown> = { ...e };
      if (i % 7 === 0) {
        delete line.tags; // both have defaults in event.avsc
        delete line.referrer;
      }
      if (i % 11 === 0) line.extra = 'not in the schema';
      return JSON.stringify(line);
    });
    const { code, stdout, stderr } = await runCli(t, ['--lines', '--schema', eventSchema, '--memory', '32KiB', '--progress'], {
      tmpdir,
      input: `${lines.join('\n')}\n`,
    });
    t.is(code, 0, stderr);
    const expected = events.map((e, i) => JSON.stringify(i % 7 === 0 ? { ...e, tags: [], referrer: null } : e));
    const got = stdout.toString().split('\n');
    t.is(got.pop(), '');
    t.deepEqual(got, expected);
    t.regex(stderr, /, [1-9]\d* rec spilled$/m, 'records came back from disk too');
    t.deepEqual(leftovers(tmpdir), []);
  },
);

test.serial('buffer --lines --schema - a bad line fails with its line number and field: exit 1 after the lines before it are delivered', async (t) => {
  const tmpdir = withTmpdir(t);
  const schema = path.join(root, 'fixtures', 'schemas', 'point.avsc');
  const good = [0, 1, 2].map((i) => JSON.stringify(point(i)));
  const input = [...good, '{"seq":3,"label":"p-3","score":"high"}', JSON.stringify(point(4))].join('\n');
  const { code, stdout, stderr } = await runCli(t, ['--lines', '--schema', schema], { tmpdir, input });
  t.is(code, 1);
  t.is(stdout.toString(), `${good.join('\n')}\n`);
  t.is(stderr, 'hopper-streams: line 4: invalid record: field `score` expected "double", got "high" (string)\n');
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('buffer --on-invalid skip - invalid lines are skipped with a message each (the first ten), and counted', async (t) => {
  const tmpdir = withTmpdir(t);
  const schema = path.join(root, 'fixtures', 'schemas', 'point.avsc');
  // Lines 2, 6, 10 ... 58 are invalid: 15 of them.
  const lines = Array.from({ length: 60 }, (_, i) => {
    if (i % 4 !== 1) return JSON.stringify(point(i));
    return i === 1 ? 'not json at all' : `{"seq":${i},"label":${i},"score":1}`;
  });
  const valid = lines.filter((_, i) => i % 4 !== 1);
  const { code, stdout, stderr } = await runCli(t, ['--lines', '--schema', schema, '--on-invalid', 'skip', '--memory', '256'], {
    tmpdir,
    input: lines.join('\n'),
  });
  t.is(code, 0, stderr);
  t.is(stdout.toString(), `${valid.join('\n')}\n`);
  const messages = stderr.trimEnd().split('\n');
  t.is(messages.length, 12);
  t.regex(messages[0]!, /^hopper-streams: skipped line 2: not JSON \(/);
  t.is(messages[1], 'hopper-streams: skipped line 6: invalid record: field `label` expected "string", got 5 (number)');
  t.is(messages[10], 'hopper-streams: further invalid lines are skipped without a message');
  t.is(messages[11], 'hopper-streams: 15 invalid lines skipped');
});

test.serial('buffer --lines --schema - bytes and fixed fields travel as {"$base64": ...}, from memory and from disk alike', async (t) => {
  const tmpdir = withTmpdir(t);
  const schemaFile = path.join(tmpdir, '..', `${path.basename(tmpdir)}.avsc`);
  t.teardown(() => fs.rmSync(schemaFile, { force: true }));
  fs.writeFileSync(
    schemaFile,
    JSON.stringify({
      type: 'record',
      name: 'Blob',
      fields: [
        { name: 'id', type: 'int' },
        { name: 'data', type: 'bytes' },
        { name: 'tag', type: { type: 'fixed', name: 'Tag', size: 2 } },
      ],
    }),
  );
  const lines = Array.from({ length: 200 }, (_, id) =>
    JSON.stringify({
      id,
      data: { $base64: crypto.randomBytes(id % 40).toString('base64') },
      tag: { $base64: Buffer.from([id, 255 - id]).toString('base64') },
    }),
  );
  const { code, stdout, stderr } = await runCli(t, ['--lines', '--schema', schemaFile, '--memory', '2KiB'], { tmpdir, input: `${lines.join('\n')}\n` });
  t.is(code, 0, stderr);
  t.is(stdout.toString(), `${lines.join('\n')}\n`);
  const short = await runCli(t, ['--lines', '--schema', schemaFile], { tmpdir, input: '{"id":1,"data":{"$base64":""},"tag":{"$base64":"AAAA"}}\n' });
  t.is(short.code, 1);
  t.regex(short.stderr, /^hopper-streams: line 1: invalid record: field `tag` expected fixed Tag/);
});

test.serial(
  'buffer --on-full error - a write that meets the disk cap stops the input: what was accepted is delivered, then exit 1 with one line',
  async (t) => {
    const tmpdir = withTmpdir(t);
    // Far more input than memory, disk and pipes hold; stdout is read only once the CLI has said
    // that the cap stopped its input (the rest of the input waits in the pipe until it exits).
    const input = crypto.randomBytes(3 * MiB);
    const child = spawnChild(t, process.execPath, [cli, '--memory', '64KiB', '--max-disk', '256KiB', '--on-full', 'error'], {
      env: { ...process.env, TMPDIR: tmpdir },
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(input);
    const said = watchStderr(child).until((text) => text.endsWith('\n'), 'the CLI saying that the disk cap stopped its input');
    const { code, stdout, stderr } = await collectRun(child, said);
    t.is(code, 1);
    t.true(stdout.length > 256 * 1024 && stdout.length < input.length, `${stdout.length} bytes delivered`);
    t.true(stdout.equals(input.subarray(0, stdout.length)), 'what was delivered is the input, in order, up to the refused record');
    t.is(
      stderr,
      `hopper-streams: stopped at input byte ${stdout.length}: hopper is full: neither memory (--memory 64KiB) nor the disk cap (--max-disk 256KiB) has room for it; the record was not accepted\n`,
    );
    t.deepEqual(leftovers(tmpdir), []);
  },
);

test.serial('buffer --on-full error - a refusal at --max-segments names the flags that set the limits', async (t) => {
  const tmpdir = withTmpdir(t);
  const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${'x'.repeat(100)}`);
  const child = spawnChild(t, process.execPath, [cli, '-l', '-m', '0', '--segment-size', '64k', '--max-segments', '2', '--on-full', 'error'], {
    env: { ...process.env, TMPDIR: tmpdir },
  });
  child.stdin!.on('error', () => {});
  child.stdin!.end(`${lines.join('\n')}\n`);
  const said = watchStderr(child).until((text) => text.endsWith('\n'), 'the CLI saying that --max-segments stopped its input');
  const segments = await collectRun(child, said);
  t.is(segments.code, 1);
  t.regex(
    segments.stderr,
    /^hopper-streams: stopped at line \d+: hopper is full: neither memory \(-m 0B\) nor the disk cap \(--max-segments 2\) has room for it; the record was not accepted\n$/,
  );
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('buffer --on-full block - at the disk cap the input waits for the consumer, and nothing is lost', async (t) => {
  const tmpdir = withTmpdir(t);
  const input = crypto.randomBytes(2 * MiB);
  const child = spawnChild(t, process.execPath, [cli, '--memory', '64KiB', '--max-disk', '256KiB', '--progress'], { env: { ...process.env, TMPDIR: tmpdir } });
  child.stdin!.end(input);
  // The consumer starts once the disk is near its cap: from then on the input waits for it.
  const { code, stdout, stderr } = await collectRun(child, waitForDisk(tmpdir, 192 * 1024));
  t.is(code, 0, stderr);
  t.is(sha256(stdout), sha256(input));
  const summary = /disk peak (\S+) in/.exec(stderr);
  t.true(parseSize(summary![1]!, 'disk', { min: 0 }) <= 256 * 1024, stderr);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial(
  'buffer --on-full drop-newest - lines that find no room are dropped, never silently: the rest arrive in order and the drops are counted',
  async (t) => {
    const tmpdir = withTmpdir(t);
    const lines = Array.from({ length: 40_000 }, (_, i) => `line ${i} ${'x'.repeat(40)}`);
    const { code, stdout, stderr } = await runCli(t, ['--lines', '--memory', '4KiB', '--max-disk', '64KiB', '--on-full', 'drop-newest'], {
      tmpdir,
      input: `${lines.join('\n')}\n`,
    });
    t.is(code, 0, stderr);
    const out = stdout.toString().trimEnd().split('\n');
    const dropped = Number(/^hopper-streams: (\d+) records dropped \(--on-full drop-newest\)\n$/.exec(stderr)?.[1]);
    t.true(dropped > 0, stderr);
    t.is(out.length + dropped, lines.length);
    const seqs = out.map((line) => Number(line.split(' ')[1]));
    t.true(
      seqs.every((seq, i) => i === 0 || seq > seqs[i - 1]!),
      'what arrives is in order',
    );
    t.true(out.every((line) => lines[Number(line.split(' ')[1])] === line));
  },
);

test.serial('buffer - every --on-full policy and --codec from the library is accepted and passed through', async (t) => {
  const tmpdir = withTmpdir(t);
  const input = crypto.randomBytes(200_000);
  const runs = [...ON_FULL_POLICIES.map((policy) => ['--on-full', policy]), ...SEGMENT_CODECS.map((codec) => ['--codec', codec])];
  for (const args of runs) {
    const { code, stdout, stderr } = await runCli(t, [...args, '--memory', '16KiB', '--segment-size', '64KiB'], { tmpdir, input });
    t.is(code, 0, `${args.join(' ')}: ${stderr}`);
    t.true(stdout.equals(input), args.join(' '));
  }
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('buffer --dir --name - (buffer named or not) the channel directory is made under --dir and removed at exit; --dir itself stays', async (t) => {
  const tmpdir = withTmpdir(t);
  const dir = path.join(tmpdir, 'spool');
  const input = crypto.randomBytes(300_000);
  const { code, stdout } = await runCli(t, ['buffer', '--dir', dir, '--name', 'job-7', '--memory', '0'], { tmpdir, input });
  t.is(code, 0);
  t.true(stdout.equals(input));
  t.deepEqual(leftovers(tmpdir), ['spool']);
});

test.serial('buffer -m -l - sizes as pv and mbuffer users type them (4k, 64MB, 4M: powers of 1024) and the short flags', async (t) => {
  const tmpdir = withTmpdir(t);
  const input = Array.from({ length: 2000 }, (_, i) => `line ${i}\n`).join('');
  for (const [args, budget] of [
    [['-m', '4k', '-l'], '4.0KiB'],
    [['--memory', '64MB', '--lines'], '64MiB'],
    [['-m4M', '-l'], '4.0MiB'],
    [['--memory=4KiB', '-l'], '4.0KiB'],
  ] as const) {
    const { code, stdout, stderr } = await runCli(t, [...args, '--progress'], { tmpdir, input });
    t.is(code, 0, stderr);
    t.is(stdout.toString(), input, args.join(' '));
    t.regex(stderr, new RegExp(`^hopper-streams: done in .*: in \\S+ 2000 rec .* memory peak \\S+ of ${budget.replace('.', '\\.')};`, 'm'), args.join(' '));
  }
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('buffer -0 - NUL-separated records (implies --lines): newlines inside a record stay in it, each record ends with NUL', async (t) => {
  const tmpdir = withTmpdir(t);
  const records = ['first\nwith a newline', 'second', '', 'café ✓', 'last without NUL'];
  const { code, stdout, stderr } = await runCli(t, ['-0', '-m', '0', '--progress'], { tmpdir, input: records.join('\0') });
  t.is(code, 0, stderr);
  t.is(stdout.toString(), `${records.join('\0')}\0`);
  t.regex(stderr, /^hopper-streams: done in .*: in \S+ 5 rec .* out \S+ 5 rec /m);
  const schema = path.join(root, 'fixtures', 'schemas', 'point.avsc');
  const json = [0, 1, 2].map((i) => JSON.stringify(point(i)));
  const typed = await runCli(t, ['--null', '--schema', schema, '-m', '0'], { tmpdir, input: `${json.join('\0')}\0` });
  t.is(typed.code, 0, typed.stderr);
  t.is(typed.stdout.toString(), `${json.join('\0')}\0`);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('buffer --on-invalid skip - the summary counts add up: records in = out + skipped (6 lines in, 2 skipped, 4 out)', async (t) => {
  const tmpdir = withTmpdir(t);
  const schema = path.join(root, 'fixtures', 'schemas', 'point.avsc');
  const lines = [0, 1, 2, 3, 4, 5].map((i) => (i === 1 || i === 4 ? `{"seq":${i}}` : JSON.stringify(point(i))));
  const { code, stdout, stderr } = await runCli(t, ['-l', '--schema', schema, '--on-invalid', 'skip', '--progress'], { tmpdir, input: lines.join('\n') });
  t.is(code, 0, stderr);
  t.is(stdout.toString().split('\n').length, 4 + 1);
  t.regex(stderr, /^hopper-streams: done in .*: in \S+ 6 rec .* out \S+ 4 rec .*; 2 invalid lines skipped$/m);
});

test.serial('buffer --on-full drop-newest - the summary counts add up: records in = out + dropped', async (t) => {
  const tmpdir = withTmpdir(t);
  const lines = Array.from({ length: 40_000 }, (_, i) => `line ${i} ${'x'.repeat(40)}`);
  const { code, stderr } = await runCli(t, ['-l', '-m', '4k', '--max-disk', '64k', '--on-full', 'drop-newest', '--progress'], {
    tmpdir,
    input: `${lines.join('\n')}\n`,
  });
  t.is(code, 0, stderr);
  const summary = /^hopper-streams: done in .*: in \S+ (\d+) rec .* out \S+ (\d+) rec .*; (\d+) records dropped$/m.exec(stderr);
  t.truthy(summary, stderr);
  const [recordsIn, recordsOut, dropped] = summary!.slice(1).map(Number) as [number, number, number];
  t.is(recordsIn, 40_000);
  t.true(dropped > 0);
  t.is(recordsOut + dropped, recordsIn);
});

test.serial('buffer -s - with the input size known, the progress line shows percent in and out and the ETA of the input', async (t) => {
  const tmpdir = withTmpdir(t);
  const input = crypto.randomBytes(MiB);
  const child = spawnChild(t, process.execPath, [cli, '-s', '1M', '--progress', '-m', '0'], { env: { ...process.env, TMPDIR: tmpdir } });
  const stderr = watchStderr(child);
  // Half of the input, then the rest once a progress line has counted that half.
  child.stdin!.write(input.subarray(0, MiB / 2));
  await stderr.until((text) => /^in 512KiB 50% /m.test(text), 'a progress line showing 50% of the input');
  child.stdin!.end(input.subarray(MiB / 2));
  const { code, stdout } = await collectRun(child, undefined);
  t.is(code, 0, stderr.text());
  t.true(stdout.equals(input));
  const line = /^in 512KiB 50% .*$/m.exec(stderr.text())![0];
  t.regex(line, /^in 512KiB 50% \S+\/s ETA (\S+) \| out \S+ \d+% \S+\/s \| mem /);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('bad flags - exit 2 with a one-line message naming the flag, nothing on stdout', async (t) => {
  const tmpdir = withTmpdir(t);
  const cases: Array<[string[], RegExp]> = [
    [
      ['--memory', '64XB'],
      /^hopper-streams: --memory expects a size like 64M, 512KiB or 1048576, got "64XB": unknown unit "XB" \(use k, M, G or T, with or without B or iB\)/,
    ],
    [['-m', 'lots'], /^hopper-streams: -m expects a size .* got "lots": it is not a size/],
    [['-m', '-5M'], /^hopper-streams: -m expects a size like 64M, 512KiB or 1048576, got "-5M": a size cannot be negative/],
    [['--memory', '-1'], /^hopper-streams: --memory expects a size .* got "-1": a size cannot be negative/],
    [['--max-disk=-2G'], /^hopper-streams: --max-disk expects a size .* got "-2G": a size cannot be negative/],
    [['-s', '0'], /^hopper-streams: -s expects a size .* got "0": an input of 0 bytes has nothing to show progress for; leave the flag out/],
    [
      ['--max-disk', '0'],
      /^hopper-streams: --max-disk expects a size .*, or unlimited, got "0": a cap of 0 leaves no room on disk; give a size above 0, or unlimited for no cap/,
    ],
    [['--progress', '-q'], /--progress and -q contradict each other/],
    [['--progress', '--quiet'], /--progress and --quiet contradict each other/],
    [['-x'], /unknown option -x/],
    [['--segment-size', '0'], /^hopper-streams: --segment-size expects a size .* got "0": the smallest is 64KiB, one block/],
    [['--segment-size', '1'], /^hopper-streams: --segment-size expects a size .* got "1": the smallest is 64KiB, one block/],
    [['--segment-size', '65535'], /^hopper-streams: --segment-size .* got "65535": the smallest is 64KiB/],
    [['--max-segments', '0'], /--max-segments expects a whole number from 1 up, or unlimited, got "0"/],
    [['--frobnicate'], /^hopper-streams: unknown option --frobnicate \(see hopper-streams --help\)\n$/],
    [['--memory'], /^hopper-streams: --memory needs a value: a size like 64M/],
    [['-m'], /^hopper-streams: -m needs a value: a size like 64M/],
    [['-m', '--lines'], /^hopper-streams: -m needs a value: a size like 64M/],
    [['--dir', '-l'], /^hopper-streams: --dir needs a value: a directory path/],
    [['--on-full'], /^hopper-streams: --on-full needs a value: one of block, error/],
    [['--lines=yes'], /--lines does not take a value/],
    [['--on-full', 'sometimes'], new RegExp(`--on-full expects one of ${ON_FULL_POLICIES.join(', ')}, got "sometimes"`)],
    [['--on-full=sometimes'], /--on-full expects one of/],
    [['--codec', 'zstd'], /--codec expects one of null, deflate, got "zstd"/],
    [['--schema', 'fixtures/schemas/point.avsc'], /--schema needs --lines/],
    [['--lines', '--on-invalid', 'skip'], /--on-invalid needs --schema/],
    [['--lines', '--schema', 'missing.avsc'], /--schema missing.avsc: cannot read it \(ENOENT\)/],
    [['--lines', '--schema', 'package.json'], /--schema package.json: not a valid Avro schema/],
    [['--name', '../up'], /--name "\.\.\/up" is not a single directory name/],
    [['leftover'], /unexpected argument "leftover"/],
    [['cat'], /cat needs at least one segment file/],
    [['cat', '--json'], /cat needs at least one segment file/],
    [['verify', '--json', 'fixtures/segments'], /--json is an option of cat, not of verify/],
  ];
  for (const [args, expected] of cases) {
    const { code, stdout, stderr } = await runCli(t, args, { tmpdir });
    t.is(code, 2, args.join(' '));
    t.is(stdout.length, 0);
    t.regex(stderr, expected);
    t.is(stderr.split('\n').length, 2, `one line: ${stderr}`);
    // Named as typed: `-m` as -m, `--max-disk=-2G` as --max-disk; and never a library option.
    const flags = args.filter((arg) => arg.startsWith('-')).map((arg) => arg.split('=')[0]!);
    if (args[0]!.startsWith('-'))
      t.true(
        flags.some((flag) => stderr.includes(`${flag} `)),
        `names a flag of ${args.join(' ')}: ${stderr}`,
      );
    t.notRegex(stderr, /dataDir|maxMemoryBytes|maxDiskBytes|maxSegmentBytes|\bbytes\b.*at least 1 bytes/);
  }
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('runtime failures - a locked channel directory exits 1 with one line', async (t) => {
  const tmpdir = withTmpdir(t);
  const holder = createHopperStreams({ dataDir: tmpdir, name: 'busy' });
  t.teardown(() => holder.destroy());
  const { code, stderr } = await runCli(t, ['--dir', tmpdir, '--name', 'busy'], { tmpdir, input: 'x' });
  t.is(code, 1);
  t.regex(stderr, /^hopper-streams: channel directory .*busy is locked by process \d+ .*\n$/);
});

test.serial('runtime failures - --dir that is a file: exit 1 with one line naming --dir and what would work', async (t) => {
  const tmpdir = withTmpdir(t);
  const file = path.join(tmpdir, 'plain-file');
  fs.writeFileSync(file, '');
  const { code, stderr } = await runCli(t, ['--dir', file], { tmpdir, input: 'x' });
  t.is(code, 1);
  t.regex(
    stderr,
    /^hopper-streams: --dir \S*plain-file is a file, not a directory; give --dir a directory this user can write to \(one that does not exist yet is made\), or leave --dir out to use a temp directory\n$/,
  );
  const below = await runCli(t, ['--dir', path.join(file, 'sub')], { tmpdir, input: 'x' });
  t.is(below.code, 1);
  t.regex(below.stderr, /^hopper-streams: --dir \S*plain-file\/sub: a part of the path is a file, not a directory; give --dir a directory/);
  t.deepEqual(fs.readdirSync(tmpdir), ['plain-file']);
});

test.serial('runtime failures - --dir on a file system that takes no directories (/proc) says so, without ENOENT or dataDir', async (t) => {
  const tmpdir = withTmpdir(t);
  t.true(fs.statSync('/proc').isDirectory(), 'this test needs Linux /proc');
  const { code, stdout, stderr } = await runCli(t, ['--dir', '/proc'], { tmpdir, input: 'x' });
  t.is(code, 1);
  t.is(stdout.length, 0);
  t.regex(
    stderr,
    /^hopper-streams: --dir \/proc: cannot make the channel directory "hopper" in it: its file system does not take new directories \(as \/proc and \/sys do not\); give --dir a directory this user can write to .*\n$/,
  );
  t.notRegex(stderr, /ENOENT|dataDir/);
});

test.serial('runtime failures - without --dir, a TMPDIR that does not exist: exit 1 naming TMPDIR and what would work', async (t) => {
  const tmpdir = withTmpdir(t);
  const missing = path.join(tmpdir, 'no-such-dir');
  const { code, stderr } = await runCli(t, [], { tmpdir: missing, input: 'x' });
  t.is(code, 1);
  t.is(
    stderr,
    `hopper-streams: cannot make a temp directory in ${missing} (TMPDIR): it does not exist; set TMPDIR to a directory this user can write to, or give --dir\n`,
  );
  t.false(fs.existsSync(missing));
});

test.serial('runtime failures - --name naming a file in --dir: exit 1 naming --name and what would work', async (t) => {
  const tmpdir = withTmpdir(t);
  fs.writeFileSync(path.join(tmpdir, 'job'), 'not a directory');
  const { code, stderr } = await runCli(t, ['--dir', tmpdir, '--name', 'job'], { tmpdir, input: 'x' });
  t.is(code, 1);
  t.regex(stderr, /^hopper-streams: --name job: \S+\/job exists and is not a directory; give another --name, or remove it\n$/);
  t.is(fs.readFileSync(path.join(tmpdir, 'job'), 'utf8'), 'not a directory');
});

test.serial(
  'runtime failures - a segment damaged on disk while held: the records before it are delivered, then exit 1 with one line naming the file and offset',
  async (t) => {
    const tmpdir = withTmpdir(t);
    const { child, input } = await startHolding(t, tmpdir, ['--memory', '64KiB'], 2 * MiB, 400 * 1024);
    const [segment] = (fs.readdirSync(tmpdir, { recursive: true }) as string[]).filter((name) => name.endsWith('.avro'));
    const fd = fs.openSync(path.join(tmpdir, segment!), 'r+');
    fs.writeSync(fd, Buffer.alloc(1000, 0x55), 0, 1000, 300_000);
    fs.closeSync(fd);
    const { code, stdout, stderr } = await collectRun(child, undefined);
    t.is(code, 1);
    t.true(stdout.length < input.length && stdout.equals(input.subarray(0, stdout.length)));
    t.regex(stderr, /^hopper-streams: corrupt segment \S+000000000001\.avro at byte \d+: .*\n$/);
    t.deepEqual(leftovers(tmpdir), []);
  },
);

test('parseCommand() - the short flags are their long forms: -m, -l, -0, -s, -q, -V', (t) => {
  const { typed, ...short } = parseCommand(['-m', '4M', '-l', '-s', '1G', '-q']) as BufferCommand;
  const { typed: typedLong, ...long } = parseCommand(['--memory', '4MiB', '--lines', '--size', '1GiB', '--no-progress']) as BufferCommand;
  t.deepEqual(short, long);
  t.deepEqual(typed, { memory: '-m', lines: '-l', size: '-s', quiet: '-q' }, 'each flag as typed, for the messages');
  t.deepEqual(typedLong, { memory: '--memory', lines: '--lines', size: '--size', 'no-progress': '--no-progress' });
  t.like(short, { command: 'buffer', memory: 4 * MiB, lines: true, separator: '\n', size: 1024 * MiB, progress: false });
  t.like(parseCommand(['-0']), { lines: true, separator: '\0' }, '-0 implies --lines');
  t.like(parseCommand(['--quiet']), { progress: false });
  t.like(parseCommand([]), { memory: 64 * MiB, size: undefined, progress: undefined, separator: '\n' });
  t.deepEqual(parseCommand(['-V']), { command: 'version' });
});

test('parseSize() - k, M, G, T with or without B or iB, all powers of 1024 as mbuffer and pv read them', (t) => {
  for (const [text, bytes] of [
    ['4k', 4 * 1024],
    ['4K', 4 * 1024],
    ['4KB', 4 * 1024],
    ['4kb', 4 * 1024],
    ['4KiB', 4 * 1024],
    ['4M', 4 * MiB],
    ['64MB', 64 * MiB],
    ['64MiB', 64 * MiB],
    ['1.5G', 1.5 * 1024 * MiB],
    ['2GB', 2 * 1024 * MiB],
    ['1T', 1024 * 1024 * MiB],
    ['1TB', 1024 * 1024 * MiB],
    ['1TiB', 1024 * 1024 * MiB],
    ['512B', 512],
    ['512b', 512],
  ] as const) {
    t.is(parseSize(text, '--memory', { min: 0 }), bytes, text);
  }
  t.throws(() => parseSize('4P', '--memory', { min: 0 }), { message: /--memory expects a size .* got "4P": unknown unit "P"/ });
});

test('parseSize() - plain bytes, KiB/MiB/GiB (powers of 1024) with decimals, and unlimited where allowed', (t) => {
  t.is(parseSize('1048576', '--memory', { min: 0 }), 1048576);
  t.is(parseSize('0', '--memory', { min: 0 }), 0);
  t.is(parseSize('512KiB', '--memory', { min: 0 }), 512 * 1024);
  t.is(parseSize('64MiB', '--memory', { min: 0 }), 64 * MiB);
  t.is(parseSize('1.5GiB', '--memory', { min: 0 }), 1.5 * 1024 * MiB);
  t.is(parseSize('10 gib', '--memory', { min: 0 }), 10 * 1024 * MiB);
  t.is(parseSize('unlimited', '--max-disk', { min: 1, allowUnlimited: true }), Infinity);
  t.throws(() => parseSize('unlimited', '--memory', { min: 0 }), { message: /--memory expects a size .* got "unlimited": it is not a size/ });
  t.throws(() => parseSize('1.5', '--memory', { min: 0 }), { message: /bytes must be a whole number/ });
  t.throws(() => parseSize('2XB', '--memory', { min: 0 }), { message: /unknown unit "XB"/ });
  t.throws(() => parseSize('-1', '--memory', { min: 0 }), { message: /got "-1": a size cannot be negative/ });
  t.throws(() => parseSize('3 parsecs', '--memory', { min: 0 }), { message: /unknown unit "parsecs"/ });
});

test.serial('--help and --version - print to stdout and exit 0', async (t) => {
  const tmpdir = withTmpdir(t);
  const help = await runCli(t, ['--help'], { tmpdir });
  t.is(help.code, 0);
  t.regex(help.stdout.toString(), /^Usage: hopper-streams \[buffer\] \[options\]/);
  t.regex(help.stdout.toString(), new RegExp(`--on-full POLICY +at the disk cap: ${ON_FULL_POLICIES.join('\\|')} `));
  for (const word of ['cat [--json] FILE.avro', 'verify DIR|FILE', '--lines', '--schema', '--on-invalid', '--progress', 'Exit status']) {
    t.true(help.stdout.toString().includes(word), word);
  }
  for (const word of ['-m, --memory SIZE', '-s, --size SIZE', '-l, --lines', '-0, --null', '-q, --quiet', 'in powers of 1024 as\nmbuffer and pv read them']) {
    t.true(help.stdout.toString().includes(word), word);
  }
  const packageVersion = `${(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version}\n`;
  for (const flag of ['--version', '-V']) {
    const version = await runCli(t, [flag], { tmpdir });
    t.is(version.code, 0);
    t.is(version.stdout.toString(), packageVersion, flag);
  }
  const catHelp = await runCli(t, ['cat', '--help'], { tmpdir });
  t.is(catHelp.stdout.toString(), help.stdout.toString());
});

/** Resolves once the segment files under `dir` hold `bytes` (polled; the safety net names what did not happen). */
async function waitForDisk(dir: string, bytes: number): Promise<void> {
  const deadline = Date.now() + SAFETY_NET_MS;
  for (;;) {
    const segments = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((name) => name.endsWith('.avro'));
    const onDisk = segments.reduce((sum, name) => sum + (fs.statSync(path.join(dir, name), { throwIfNoEntry: false })?.size ?? 0), 0);
    if (onDisk >= bytes) return;
    if (Date.now() > deadline) throw new Error(`the CLI did not put ${bytes} bytes on disk within ${SAFETY_NET_MS / 1000} s (only ${onDisk})`);
    await sleep(20);
  }
}

/** Collects a child's stderr; `until()` resolves once the text so far passes `test`. */
function watchStderr(child: ChildProcess): { text: () => string; until: (test: (text: string) => boolean, what: string) => Promise<void> } {
  let stderr = '';
  const waiters = new Set<() => void>();
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
    for (const waiter of waiters) waiter();
  });
  return {
    text: () => stderr,
    until: (test, what) =>
      within(
        new Promise<void>((resolve) => {
          const check = (): void => {
            if (!test(stderr)) return;
            waiters.delete(check);
            resolve();
          };
          waiters.add(check);
          check();
        }),
        what,
      ),
  };
}

/** Starts the CLI on a stdin pipe kept open, writes `bytes`, and waits until `diskBytes` of it are on disk. */
async function startHolding(t: Teardown, tmpdir: string, args: string[], bytes: number, diskBytes: number): Promise<{ child: ChildProcess; input: Buffer }> {
  const child = spawnChild(t, process.execPath, [cli, ...args], { env: { ...process.env, TMPDIR: tmpdir } });
  child.stdin!.on('error', () => {});
  const input = crypto.randomBytes(bytes);
  child.stdin!.write(input);
  await waitForDisk(tmpdir, diskBytes);
  return { child, input };
}

test.serial('SIGINT - stops reading, writes out everything held to a consumer still there, removes the temp directory, exits 130', async (t) => {
  const tmpdir = withTmpdir(t);
  const { child, input } = await startHolding(t, tmpdir, ['--memory', '256KiB'], 4 * MiB, 3 * MiB);
  const stderr = watchStderr(child);
  child.kill('SIGINT');
  await stderr.until((text) => text.includes('\n'), 'the CLI saying it took SIGINT'); // now the consumer reads
  const { code, signal, stdout } = await collectRun(child, undefined);
  t.is(signal, null);
  t.is(code, 130);
  t.true(stdout.length >= 3 * MiB, `${stdout.length} bytes written out`);
  t.true(stdout.equals(input.subarray(0, stdout.length)));
  t.regex(stderr.text(), /^hopper-streams: SIGINT: stopped reading; writing out the \d+ records held \(signal again to discard them\)\n$/);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('SIGTERM twice - the second signal discards what is held: exit 143 at once, temp directory removed', async (t) => {
  const tmpdir = withTmpdir(t);
  const { child } = await startHolding(t, tmpdir, ['--memory', '256KiB'], 4 * MiB, 3 * MiB);
  const stderr = watchStderr(child);
  child.kill('SIGTERM');
  await stderr.until((text) => text.includes('\n'), 'the CLI saying it took SIGTERM');
  child.kill('SIGTERM'); // stdout is still not read: only discarding lets the CLI exit
  const [code] = (await within(once(child, 'close'), 'the CLI exiting after the second SIGTERM')) as [number | null];
  t.is(code, 143);
  t.regex(stderr.text(), /^hopper-streams: SIGTERM: stopped reading/);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('stdout closed - when the reader goes away the CLI discards what is held and exits 141, temp directory removed', async (t) => {
  const tmpdir = withTmpdir(t);
  const { child } = await startHolding(t, tmpdir, ['--memory', '64KiB'], 2 * MiB, MiB);
  child.stdout!.destroy();
  const [code] = (await within(once(child, 'close'), 'the CLI exiting once stdout closed')) as [number | null];
  t.is(code, 141);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('cat - prints the records of a segment as NDJSON', async (t) => {
  const tmpdir = withTmpdir(t);
  const { code, stdout, stderr } = await runCli(t, ['cat', fixture('valid.avro')], { tmpdir });
  t.is(code, 0, stderr);
  t.is(stdout.toString(), Array.from({ length: 86 }, (_, i) => `${JSON.stringify(point(i))}\n`).join(''));
  const deflated = await runCli(t, ['cat', fixture('deflate.avro'), fixture('foreign.avro')], { tmpdir });
  t.is(deflated.stdout.toString().split('\n').length, 50 + 5 + 1);
});

test.serial('cat - a schemaless segment prints its strings as they are, its Buffers as {"$base64": ...} and its JSON values as written', async (t) => {
  const tmpdir = withTmpdir(t);
  const { code, stdout } = await runCli(t, ['cat', fixture('schemaless.avro')], { tmpdir });
  t.is(code, 0);
  t.is(
    stdout.toString(),
    [
      'a line of text',
      `{"$base64":"${Buffer.from([0x00, 0xff, 0x10, 0x80, 0x0a]).toString('base64')}"}`,
      '{"id":7,"tags":["x","y"],"nested":{"ok":true,"none":null}}',
      '42',
      'café ✓',
      '',
    ].join('\n'),
  );
});

test.serial('cat --json - prints every record as JSON, strings as JSON strings', async (t) => {
  const tmpdir = withTmpdir(t);
  const { code, stdout } = await runCli(t, ['cat', '--json', fixture('schemaless.avro')], { tmpdir });
  t.is(code, 0);
  t.is(
    stdout.toString(),
    [
      '"a line of text"',
      `{"$base64":"${Buffer.from([0x00, 0xff, 0x10, 0x80, 0x0a]).toString('base64')}"}`,
      '{"id":7,"tags":["x","y"],"nested":{"ok":true,"none":null}}',
      '42',
      '"café ✓"',
      '',
    ].join('\n'),
  );
});

test.serial('cat - a file stops at its first problem: records before it printed, the problem on stderr, the next file read, exit 1', async (t) => {
  const tmpdir = withTmpdir(t);
  const { code, stdout, stderr } = await runCli(t, ['cat', fixture('bad-count.avro'), fixture('not-avro.avro'), fixture('foreign.avro')], { tmpdir });
  t.is(code, 1);
  t.is(stdout.toString().split('\n').length, 85 + 5 + 1);
  t.is(
    stderr,
    [
      "hopper-streams: fixtures/segments/bad-count.avro: bad at byte 1991: the block's 85 records use 1775 of its 1798 bytes",
      'hopper-streams: fixtures/segments/not-avro.avro: bad at byte 0: not an Avro object container file (the magic bytes "Obj\\x01" are missing)',
      '',
    ].join('\n'),
  );
});

test.serial('verify DIR - one line per file with its record count or its first problem and byte offset; exit 1 when any is bad', async (t) => {
  const tmpdir = withTmpdir(t);
  const { code, stdout } = await runCli(t, ['verify', 'fixtures/segments'], { tmpdir });
  t.is(code, 1);
  t.deepEqual(stdout.toString().split('\n'), [
    "fixtures/segments/bad-count.avro: bad at byte 1991: the block's 85 records use 1775 of its 1798 bytes",
    'fixtures/segments/bad-sync.avro: bad at byte 2014: the sync marker does not match the header',
    'fixtures/segments/deflate.avro: ok, 50 records in 2 blocks (deflate, channel "hopper")',
    "fixtures/segments/flipped-bytes.avro: bad at byte 216: record 1 of the block's 86 does not decode with the file's schema",
    'fixtures/segments/foreign.avro: ok, 5 records in 1 block (null, not a hopper segment)',
    'fixtures/segments/not-avro.avro: bad at byte 0: not an Avro object container file (the magic bytes "Obj\\x01" are missing)',
    'fixtures/segments/schemaless.avro: ok, 5 records in 2 blocks (null, channel "hopper")',
    'fixtures/segments/trailing-garbage.avro: bad at byte 2030: the block record count is -52',
    'fixtures/segments/truncated.avro: bad at byte 212: the block size 1798 runs past the end of the data (1714 bytes left)',
    'fixtures/segments/valid.avro: ok, 86 records in 1 block (null, channel "hopper")',
    '',
  ]);
  const sound = await runCli(t, ['verify', fixture('valid.avro'), fixture('deflate.avro'), fixture('missing.avro')], { tmpdir });
  t.is(sound.code, 1);
  t.regex(sound.stdout.toString(), /^fixtures\/segments\/missing.avro: bad at byte 0: cannot read the file \(ENOENT on open\)$/m);
});

test.serial('cat - the segments of a --lines channel print their lines as written, so NDJSON stays NDJSON', async (t) => {
  const tmpdir = withTmpdir(t);
  const input = `${Array.from({ length: 200 }, (_, i) => JSON.stringify({ seq: i, text: `line "${i}"` })).join('\n')}\n`;
  // What `--lines` holds: each line, a string without its newline, here all on disk.
  const hopper = createHopperStreams<string>({ dataDir: tmpdir, name: 'lines', maxMemoryBytes: 0 });
  t.teardown(() => hopper.destroy());
  for (const line of input.trimEnd().split('\n')) hopper.send(line);
  await diskSettled(hopper); // the last block is handed over when the event loop turns, and written behind
  const files = fs
    .readdirSync(hopper.path)
    .filter((name) => name.endsWith('.avro'))
    .map((name) => path.join(hopper.path, name));
  t.true(files.length > 0);
  const { code, stdout, stderr } = await runCli(t, ['cat', ...files], { tmpdir });
  t.is(code, 0, stderr);
  t.is(stdout.toString(), input);
  t.deepEqual(
    stdout
      .toString()
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown),
    Array.from({ length: 200 }, (_, i) => ({ seq: i, text: `line "${i}"` })),
  );
});

test.serial('verify DIR - checks the segments of a live channel directory; exit 0 when all are sound', async (t) => {
  const tmpdir = withTmpdir(t);
  const hopper = createHopperStreams<string>({ dataDir: tmpdir, name: 'live', maxMemoryBytes: 0, maxSegmentBytes: 4096 });
  t.teardown(() => hopper.destroy());
  for (let i = 0; i < 1000; i++) hopper.send(`record ${i}`);
  await diskSettled(hopper); // the last block is handed over when the event loop turns, and written behind
  const { code, stdout } = await runCli(t, ['verify', hopper.path], { tmpdir });
  t.is(code, 0);
  const lines = stdout.toString().trimEnd().split('\n');
  t.is(lines.length, hopper.stats().segments);
  t.true(
    lines.every((line) => / ok, \d+ records in \d+ blocks? \(null, channel "live"\)$/.test(line)),
    stdout.toString(),
  );
  const records = lines.reduce((sum, line) => sum + Number(/ok, (\d+) record/.exec(line)![1]), 0);
  t.is(records, 1000);
});

test.serial('progress - on a terminal: one line redrawn a few times a second, then the summary', async (t) => {
  const tmpdir = withTmpdir(t);
  const doneFile = path.join(tmpdir, '..', `${path.basename(tmpdir)}.producer-done`);
  const outFile = path.join(tmpdir, '..', `${path.basename(tmpdir)}.out`);
  t.teardown(() => {
    fs.rmSync(doneFile, { force: true });
    fs.rmSync(outFile, { force: true });
  });
  // stderr is the pseudo-terminal, stdout a file. The producer writes 8 chunks of 64 KiB and
  // waits before each until the test has seen a redraw that counts the chunk before it.
  const stepFile = path.join(tmpdir, '..', `${path.basename(tmpdir)}.step`);
  t.teardown(() => fs.rmSync(stepFile, { force: true }));
  const chunks = 8;
  const chunk = 64 * 1024;
  const producer = `${process.execPath} --import tsx/esm ${helper('generate.ts')} ${chunks * chunk} ${doneFile} ${stepFile}`;
  const command = `${producer} | TMPDIR=${tmpdir} ${process.execPath} ${cli} --memory 256KiB > ${outFile}`;
  const script = spawnChild(t, 'script', ['-qfec', command, '/dev/null'], { cwd: root });
  let screen = '';
  let released = 0;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the progress line's escape codes are what is checked
  const draws = (): string[] => [...screen.matchAll(/\r(in [^\r\n]*?)\x1b\[K/g)].map((match) => match[1]!);
  script.stdout!.on('data', (text: Buffer) => {
    screen += String(text);
    const shown = Math.max(0, ...draws().map((line) => parseSize(/^in (\S+)/.exec(line)![1]!, 'in', { min: 0 })));
    if (shown >= (released + 1) * chunk && released < chunks - 1) {
      released = Math.floor(shown / chunk);
      fs.writeFileSync(`${stepFile}.tmp`, String(released));
      fs.renameSync(`${stepFile}.tmp`, stepFile);
    }
  });
  const [code] = (await within(once(script, 'close'), 'the producer and the CLI in the terminal exiting')) as [number | null];
  t.is(code, 0, screen);
  const produced = JSON.parse(fs.readFileSync(doneFile, 'utf8')) as { sha256: string };
  t.is(sha256(fs.readFileSync(outFile)), produced.sha256);
  // Each redraw: carriage return, the line, erase to the end of the line.
  const lines = draws();
  // Chunks 1 to 7 each waited for a redraw showing the one before it.
  t.true(lines.length >= chunks - 1, `${lines.length} redraws: ${JSON.stringify(screen)}`);
  t.true(
    lines.every((line) => line.length < 80 && /^in \S+ \S+\/s \| out \S+ \S+\/s \| mem \S+\/256KiB \| disk \S+ \d+ seg$/.test(line)),
    lines.join('\n'),
  );
  const inputs = lines.map((line) => parseSize(/^in (\S+)/.exec(line)![1]!, 'in', { min: 0 }));
  t.true(
    inputs.every((bytes, i) => i === 0 || bytes >= inputs[i - 1]!),
    'input only grows',
  );
  t.true(new Set(inputs.filter((bytes) => bytes > 0)).size >= chunks - 1, `the line updates with each chunk: ${inputs.join(', ')}`);
  // The summary replaces the line: erased, then printed on a line of its own, last.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the progress line's escape codes are what is checked
  t.regex(screen, /\r\x1b\[Khopper-streams: done in \S+: in 512KiB \(.*\r?\n$/);
  t.deepEqual(leftovers(tmpdir), []);
});

test.serial('progress - silent when stderr is not a terminal, unless --progress', async (t) => {
  const tmpdir = withTmpdir(t);
  const quiet = await runCli(t, ['--memory', '1KiB'], { tmpdir, input: 'some bytes' });
  t.is(quiet.stderr, '');
  const asked = await runCli(t, ['--memory', '1KiB', '--progress'], { tmpdir, input: 'some bytes' });
  t.regex(asked.stderr, /^hopper-streams: done in \S+: in 10B \(/m);
  t.false(asked.stderr.includes('\r'), 'plain lines, no redraws');
});
