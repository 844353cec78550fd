#!/usr/bin/env node
import fs from 'node:fs';
import { once } from 'node:events';
import { parseCommand, UsageError, USAGE, type BufferCommand, type Command } from './args.js';
import { runBuffer } from './buffer.js';
import { OUTPUT_BATCH_BYTES } from './output.js';
import { standardInput } from './stdin.js';
import { createCodec, type RecordCodec } from '../codec.js';
import { stringifyRecord } from './json-lines.js';

// The `hopper-streams` command: parses the arguments, runs buffer, cat, verify or status, and exits
// with its status: 0 done, 1 a run-time failure, 2 bad flags, 128+n after signal n.
// cat, verify and status load their module when run: a buffer's start-up does not wait on it.

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The --schema file as a codec; a file that cannot be read or is not an Avro schema is a usage error. */
function loadSchema(file: string): RecordCodec {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--schema ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--schema ${file}: not JSON (${(err as Error).message})`);
  }
  try {
    return createCodec(schema as object);
  } catch (err) {
    throw new UsageError(`--schema ${file}: ${(err as Error).message.replace(/^Expected `schema` to be /, 'not ')}`);
  }
}

/** Writes text to stdout, waiting while stdout asks for a pause. */
async function write(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

/**
 * `cat FILE...`: the records of each file, one per line; a bad file is reported on stderr (status
 * 1). A string record (a `--lines` line) prints as the text it is, so the output of a `--lines`
 * segment is its lines as they were written (`| jq` reads NDJSON lines); other records print as
 * JSON. `json`: every record as JSON, strings as JSON strings. A durable channel's directory
 * prints the records its next open would deliver (`all`: acknowledged ones still on disk too),
 * up to a torn tail.
 */
async function cat(files: string[], json: boolean, all: boolean): Promise<number> {
  const { formatReport, readSegment } = await import('./verify.js');
  const { durableChannelAt, durableReading } = await import('./durable-view.js');
  let code = 0;
  for (const target of files) {
    const look = durableChannelAt(target);
    const readings = look === undefined ? [{ file: target, skip: 0, limit: undefined, tornAt: undefined }] : durableReading(look, all);
    for (const { file, skip, limit, tornAt } of readings) {
      const reading = readSegment(file);
      let batch = '';
      let index = 0;
      for (;;) {
        const step = reading.next();
        if (step.done) {
          if (!step.value.ok && (tornAt === undefined || step.value.offset < tornAt)) {
            await write(batch);
            batch = '';
            process.stderr.write(`hopper-streams: ${formatReport(step.value)}\n`);
            code = 1;
          }
          break;
        }
        if (limit !== undefined && index >= limit) break;
        const record = step.value;
        if (index++ < skip) continue;
        batch += `${!json && typeof record === 'string' ? record : stringifyRecord(record, true)}\n`;
        if (batch.length >= OUTPUT_BATCH_BYTES) {
          await write(batch);
          batch = '';
        }
      }
      await write(batch);
    }
  }
  return code;
}

/** `verify DIR|FILE...`: one line per file; status 1 when any is bad. A durable channel's directory gets its ledger judged, and a torn tail is not damage. */
async function verify(paths: string[]): Promise<number> {
  const { formatReport, segmentFiles, verifySegment } = await import('./verify.js');
  const { durableChannelAt, formatLedgerLine, judgeSegment } = await import('./durable-view.js');
  let code = 0;
  for (const target of paths) {
    const look = durableChannelAt(target);
    if (look !== undefined) await write(`${formatLedgerLine(look)}\n`);
    const files = segmentFiles(target);
    if (files.length === 0) await write(`${target}: no .avro files\n`);
    for (const file of files) {
      const report = verifySegment(file);
      const judged = look === undefined ? undefined : judgeSegment(look, report);
      if (judged === undefined) {
        if (!report.ok) code = 1;
        await write(`${formatReport(report)}\n`);
      } else {
        if (judged.bad) code = 1;
        await write(`${judged.line}\n`);
      }
    }
  }
  return code;
}

/** `status --dir D --name N`: the backlog of a durable channel; 1 when there is no channel or it cannot be read. */
async function status(dir: string, name: string, json: boolean): Promise<number> {
  const { StatusError, channelStatus, formatStatus } = await import('./status.js');
  try {
    const found = channelStatus(dir, name);
    await write(json ? `${JSON.stringify(found)}\n` : `${formatStatus(found)}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof StatusError)) throw err;
    process.stderr.write(`hopper-streams: ${err.message}\n`);
    return 1;
  }
}

async function buffer(command: BufferCommand): Promise<{ code: number; flushed: boolean }> {
  const codec = command.schemaFile === undefined ? undefined : loadSchema(command.schemaFile);
  return runBuffer(command, codec, { stdin: standardInput(), stdout: process.stdout, stderr: process.stderr });
}

/**
 * Exits once stderr has taken what was written to it, and stdout too when `waitForStdout`
 * (not when output is being discarded: its reader may be stuck or gone).
 */
function exit(code: number, waitForStdout: boolean): void {
  const done = (): never => process.exit(code);
  process.stderr.write('', () => {
    if (waitForStdout) process.stdout.write('', done);
    else done();
  });
}

async function main(argv: string[]): Promise<void> {
  // A closed stderr must not crash the process: failures are reported by status.
  process.stderr.on('error', () => {});
  let command: Command;
  try {
    command = parseCommand(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`hopper-streams: ${err.message} (see hopper-streams --help)\n`);
    return exit(2, false);
  }
  // Output whose reader went away: stop, with SIGPIPE's status (buffer handles it itself).
  if (command.command !== 'buffer') process.stdout.on('error', () => exit(141, false));
  try {
    switch (command.command) {
      case 'help':
        await write(`${USAGE}\n`);
        return exit(0, true);
      case 'version':
        await write(`${version()}\n`);
        return exit(0, true);
      case 'cat':
        return exit(await cat(command.files, command.json, command.all), true);
      case 'verify':
        return exit(await verify(command.paths), true);
      case 'status':
        return exit(await status(command.dir, command.name, command.json), true);
      case 'buffer': {
        const { code, flushed } = await buffer(command);
        return exit(code, flushed);
      }
    }
  } catch (err) {
    const message = err instanceof UsageError ? `${err.message} (see hopper-streams --help)` : (err as Error).message;
    process.stderr.write(`hopper-streams: ${message}\n`);
    return exit(err instanceof UsageError ? 2 : 1, false);
  }
}

void main(process.argv.slice(2));
