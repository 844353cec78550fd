#!/usr/bin/env node
import fs from 'node:fs';
import { once } from 'node:events';
import { parseCommand, UsageError, USAGE, type BufferCommand, type Command } from './args.js';
import { runBuffer } from './buffer.js';
import { OUTPUT_BATCH_BYTES } from './output.js';
import { standardInput } from './stdin.js';
import { createCodec, type RecordCodec } from '../codec.js';
import { stringifyRecord } from './json-lines.js';

// The `hopper-streams` command: parses the arguments, runs buffer, cat or verify, and exits
// with its status: 0 done, 1 a run-time failure, 2 bad flags, 128+n after signal n.
// cat and verify load their module when run: a buffer's start-up does not wait on it.

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
 * JSON. `json`: every record as JSON, strings as JSON strings.
 */
async function cat(files: string[], json: boolean): Promise<number> {
  const { formatReport, readSegment } = await import('./verify.js');
  let code = 0;
  for (const file of files) {
    const reading = readSegment(file);
    let batch = '';
    for (;;) {
      const step = reading.next();
      if (step.done) {
        if (!step.value.ok) {
          await write(batch);
          batch = '';
          process.stderr.write(`hopper-streams: ${formatReport(step.value)}\n`);
          code = 1;
        }
        break;
      }
      const record = step.value;
      batch += `${!json && typeof record === 'string' ? record : stringifyRecord(record, true)}\n`;
      if (batch.length >= OUTPUT_BATCH_BYTES) {
        await write(batch);
        batch = '';
      }
    }
    await write(batch);
  }
  return code;
}

/** `verify DIR|FILE...`: one line per file; status 1 when any is bad. */
async function verify(paths: string[]): Promise<number> {
  const { formatReport, segmentFiles, verifySegment } = await import('./verify.js');
  let code = 0;
  for (const target of paths) {
    const files = segmentFiles(target);
    if (files.length === 0) await write(`${target}: no .avro files\n`);
    for (const file of files) {
      const report = verifySegment(file);
      if (!report.ok) code = 1;
      await write(`${formatReport(report)}\n`);
    }
  }
  return code;
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
        return exit(await cat(command.files, command.json), true);
      case 'verify':
        return exit(await verify(command.paths), true);
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
