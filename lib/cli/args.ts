import { parseArgs } from 'node:util';
import { ON_FULL_POLICIES, SEGMENT_CODECS, nameProblem, type OnFull, type SegmentCodec } from '../options.js';
import { BLOCK_TARGET_BYTES } from '../segments/block-builder.js';

// The command line of hopper-streams, as data: flags parsed with node:util parseArgs, sizes
// read as mbuffer and pv read them (k, M, G, T in powers of 1024, with or without B or iB).
// No I/O here: the entry (index.ts) reads files and runs.

/** A flag or argument the command line cannot use; the CLI prints its message and exits 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const ON_INVALID_POLICIES = ['error', 'skip'] as const;
export type OnInvalid = (typeof ON_INVALID_POLICIES)[number];

/** `hopper-streams [buffer]`: stdin through a hopper to stdout. */
export interface BufferCommand {
  command: 'buffer';
  memory: number;
  dir: string | undefined;
  name: string | undefined;
  segmentSize: number;
  maxDisk: number;
  maxSegments: number;
  onFull: OnFull;
  codec: SegmentCodec;
  lines: boolean;
  /** What ends a record with --lines: a newline, or NUL with `-0`. */
  separator: '\n' | '\0';
  /** The input's size in bytes, if known (`-s`): the progress line shows percent and ETA. */
  size: number | undefined;
  schemaFile: string | undefined;
  onInvalid: OnInvalid;
  /** true: `--progress`; false: `--no-progress`; undefined: on when stderr is a terminal. */
  progress: boolean | undefined;
  /** Each flag given, by its long name, as the user typed it (`-m` or `--memory`): messages name it so. */
  typed: Partial<Record<BufferFlag, string>>;
}

export type Command =
  | { command: 'help' }
  | { command: 'version' }
  | BufferCommand
  | { command: 'cat'; files: string[]; json: boolean; all: boolean }
  | { command: 'verify'; paths: string[] }
  | { command: 'status'; dir: string; name: string; json: boolean };

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
/** Every unit in powers of 1024, as mbuffer and pv read `k`, `M`, `G`, `T` (case ignored). */
const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: KiB,
  kb: KiB,
  kib: KiB,
  m: MiB,
  mb: MiB,
  mib: MiB,
  g: GiB,
  gb: GiB,
  gib: GiB,
  t: TiB,
  tb: TiB,
  tib: TiB,
};

/**
 * The CLI's defaults. They differ from the library's (16 MiB memory, no disk cap) on purpose:
 * a pipe buffer is a process of its own whose memory does nothing else, and it often runs
 * unattended on a shared temp directory, where an uncapped spill could fill the disk.
 */
export const DEFAULTS = {
  memory: 64 * MiB,
  /**
   * The smallest --segment-size: one block (a segment is sealed past this size, and a block is
   * written whole), so a smaller size would only make a file per block.
   */
  minSegmentSize: BLOCK_TARGET_BYTES,
  segmentSize: 64 * MiB,
  maxDisk: 10 * GiB,
  maxSegments: Infinity,
} as const;

export const USAGE = `Usage: hopper-streams [buffer] [options]     stdin -> hopper -> stdout
       hopper-streams cat [--json] FILE.avro... print segment records, one per line
       hopper-streams cat [--json] [--all] DIR  a durable channel's records, in delivery order
       hopper-streams verify DIR|FILE...        check segment files
       hopper-streams status --dir DIR [--name NAME] [--json]
                                                the backlog of a durable channel

Reads stdin as fast as it comes and writes stdout at the consumer's pace. What the consumer
has not taken yet waits in memory up to --memory, then in Avro segment files on disk.

Options of buffer:
  -m, --memory SIZE        memory budget for held records (default 64MiB; 0: all to disk)
      --dir PATH           where the channel directory is made (default: a temp directory,
                           removed at exit)
      --name NAME          channel directory name under --dir (default hopper)
      --segment-size SIZE  seal a segment file past this size (default 64MiB; at least 64KiB)
      --max-disk SIZE      cap on segment bytes, or "unlimited" (default 10GiB)
      --max-segments N     cap on segment files, or "unlimited" (default unlimited)
      --on-full POLICY     at the disk cap: ${ON_FULL_POLICIES.join('|')} (default block)
      --codec CODEC        segment block codec: ${SEGMENT_CODECS.join('|')} (default null)
  -l, --lines              records are newline-delimited lines (NDJSON stays intact)
  -0, --null               records end with NUL instead of newline (implies --lines)
      --schema FILE.avsc   with --lines: each line is JSON, validated against the Avro
                           schema and stored Avro-encoded
      --on-invalid POLICY  with --schema, for a line that does not fit: error|skip
                           (default error)
  -s, --size SIZE          the input's size, if known: the progress line shows percent
                           and ETA
      --progress           progress line on stderr even when it is not a terminal
  -q, --quiet              no progress line, even on a terminal (also --no-progress)
  -h, --help               show this help
  -V, --version            show the version

Options of cat: --json prints every record as JSON (strings too); without it, a string
record (a --lines line) prints as the text it is, other records as JSON. Given a durable
channel's directory, cat prints the records its next open would deliver, oldest
unacknowledged first; --all also prints acknowledged records still on disk.

Options of status: --dir is the channel's dataDir, --name its name (default hopper); --json
prints the status as one JSON object. status reads only: it takes no lock and writes nothing.

SIZE is bytes, or a number with k, M, G or T, with or without B or iB, in powers of 1024 as
mbuffer and pv read them: 4k, 512KiB, 64M, 64MB and 1.5GiB are all binary (64M = 67108864).
In JSON (cat's output, --schema lines), bytes are {"$base64": "..."}.

Exit status: 0 done; 1 a run-time failure (full disk cap with --on-full error, invalid line
with --on-invalid error, I/O error, corrupt segment; verify: a bad file); 2 bad flags;
130/143/129 on SIGINT/SIGTERM/SIGHUP (a second signal discards what is held);
141 when stdout's reader went away.`;

/** What a size flag takes, said when a value is refused. */
export interface SizeRule {
  /** The smallest value; below it, `tooSmall` says why and what would work. */
  min: number;
  tooSmall?: string;
  allowUnlimited?: boolean;
}

/**
 * Reads a size: plain bytes (`1048576`) or a number with a unit in powers of 1024 (`4k`,
 * `64M`, `64MB`, `512KiB`, `1.5GiB`); `unlimited` when `allowUnlimited`. Throws UsageError
 * naming the flag as the user typed it.
 */
export function parseSize(text: string, flag: string, rule: SizeRule): number {
  const { min, allowUnlimited = false } = rule;
  if (allowUnlimited && /^(unlimited|infinity)$/i.test(text)) return Infinity;
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? UNITS[match[2]!.toLowerCase()] : undefined;
  let problem: string | undefined;
  let value = NaN;
  if (/^\s*-\s*[\d.]/.test(text)) {
    problem = 'a size cannot be negative';
  } else if (!match) {
    problem = 'it is not a size';
  } else if (unit === undefined) {
    problem = `unknown unit "${match[2]}" (use k, M, G or T, with or without B or iB)`;
  } else {
    value = Math.floor(Number(match[1]) * unit);
    if (unit === 1 && match[1]!.includes('.')) problem = 'bytes must be a whole number';
    else if (!Number.isSafeInteger(value)) problem = 'it is too large';
    else if (value < min) problem = rule.tooSmall ?? `the smallest is ${formatSize(min)}`;
  }
  if (problem !== undefined) {
    const range = allowUnlimited ? ', or unlimited' : '';
    throw new UsageError(`${flag} expects a size like 64M, 512KiB or 1048576${range}, got ${JSON.stringify(text)}: ${problem}`);
  }
  return value;
}

/** A size as the user would type it: `64KiB`, `1 byte`. */
function formatSize(bytes: number): string {
  for (const [unit, size] of [
    ['TiB', TiB],
    ['GiB', GiB],
    ['MiB', MiB],
    ['KiB', KiB],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return bytes === 1 ? '1 byte' : `${bytes} bytes`;
}

function parseCount(text: string, flag: string, min: number, allowUnlimited: boolean): number {
  if (allowUnlimited && /^(unlimited|infinity)$/i.test(text)) return Infinity;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    const range = allowUnlimited ? ', or unlimited' : '';
    throw new UsageError(`${flag} expects a whole number from ${min} up${range}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseChoice<T extends string>(text: string | undefined, flag: string, choices: readonly T[], fallback: T): T {
  if (text === undefined) return fallback;
  if (!(choices as readonly string[]).includes(text)) {
    throw new UsageError(`${flag} expects one of ${choices.join(', ')}, got ${JSON.stringify(text)}`);
  }
  return text as T;
}

// Short flags as pv and mbuffer users type them: -m (mbuffer's memory), -s, -l, -0, -q, -V (pv's
// size, line mode, NUL, quiet, version).
const BUFFER_OPTIONS = {
  memory: { type: 'string', short: 'm' },
  dir: { type: 'string' },
  name: { type: 'string' },
  'segment-size': { type: 'string' },
  'max-disk': { type: 'string' },
  'max-segments': { type: 'string' },
  'on-full': { type: 'string' },
  codec: { type: 'string' },
  lines: { type: 'boolean', short: 'l' },
  null: { type: 'boolean', short: '0' },
  schema: { type: 'string' },
  'on-invalid': { type: 'string' },
  size: { type: 'string', short: 's' },
  progress: { type: 'boolean' },
  'no-progress': { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

/** A flag of buffer, by its long name. */
export type BufferFlag = keyof typeof BUFFER_OPTIONS;

/** What each flag that takes a value wants, said when the value is missing. */
const WANTS: Record<string, string> = {
  memory: 'a size like 64M (0 sends every record to disk)',
  dir: 'a directory path',
  name: 'a directory name',
  'segment-size': 'a size like 64M',
  'max-disk': 'a size like 10G, or unlimited',
  'max-segments': 'a whole number, or unlimited',
  'on-full': `one of ${ON_FULL_POLICIES.join(', ')}`,
  codec: `one of ${SEGMENT_CODECS.join(', ')}`,
  schema: 'an Avro schema file (.avsc)',
  'on-invalid': `one of ${ON_INVALID_POLICIES.join(', ')}`,
  size: 'a size like 64M',
};

const FILE_OPTIONS = { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' }, all: { type: 'boolean' } } as const;
const STATUS_OPTIONS = { help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' }, dir: { type: 'string' }, name: { type: 'string' } } as const;

type Options = Record<string, { type: 'string' | 'boolean'; short?: string }>;

/**
 * parseArgs takes a value that starts with `-` for an option (`-m -5M`: "-m needs a value"); a
 * flag that takes a value followed by a negative number gets it, inline, so that the value is
 * refused for what it is.
 */
function joinNegativeValues(args: string[], options: Options): string[] {
  const takesValue = new Set<string>();
  for (const [name, option] of Object.entries(options)) {
    if (option.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (option.short !== undefined) takesValue.add(`-${option.short}`);
  }
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    if (arg === '--') return [...joined, ...args.slice(i)];
    if (takesValue.has(arg) && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(arg.startsWith('--') ? `${arg}=${next}` : `${arg}${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  return joined;
}

/** The flag of `options` that `arg` names (`-m`, `--memory`, `--memory=4k`, `-m4k`), by its long name. */
function flagOf(arg: string, options: Options): string | undefined {
  for (const [name, option] of Object.entries(options)) {
    if (arg === `--${name}` || arg.startsWith(`--${name}=`)) return name;
    if (option.short !== undefined && arg.startsWith(`-${option.short}`) && !arg.startsWith('--')) return name;
  }
  return undefined;
}

/** Runs parseArgs, with its errors turned into one-line UsageErrors that name the flag as typed. */
function parsing<T>(args: string[], options: Options, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    const { code, message } = err as { code?: string; message: string };
    const quoted = /'([^']+)'/.exec(message)?.[1];
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown option ${quoted}`);
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unexpected argument ${JSON.stringify(quoted)}`);
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      if (/does not take an argument/.test(message)) throw new UsageError(`${quoted} does not take a value`);
      // "Option '-m, --memory <value>' argument missing" (the flag came last), or "Option '-m'
      // argument is ambiguous ... use '--memory=-XYZ'" (a flag came next): the flag as typed.
      const long = (/--([\w-]+) <value>/.exec(message) ?? /use '--([\w-]+)=/.exec(message))?.[1];
      const typed = /ambiguous/.test(message) ? quoted : args.findLast((arg) => long !== undefined && flagOf(arg, options) === long);
      const wants = long === undefined ? undefined : WANTS[long];
      throw new UsageError(`${typed ?? `--${long}`} needs a value${wants === undefined ? '' : `: ${wants}`}`);
    }
    throw new UsageError(message.split('\n')[0]!);
  }
}

/** Parses the arguments after `hopper-streams` into a command. Throws UsageError. */
export function parseCommand(argv: string[]): Command {
  const [first, ...rest] = argv;
  if (first === 'cat' || first === 'verify') {
    const { values, positionals } = parsing(rest, FILE_OPTIONS, () => parseArgs({ args: rest, options: FILE_OPTIONS, strict: true, allowPositionals: true }));
    if (values.help) return { command: 'help' };
    if (values.json && first === 'verify') throw new UsageError('--json is an option of cat, not of verify');
    if (values.all && first === 'verify') throw new UsageError('--all is an option of cat, not of verify');
    if (positionals.length === 0) {
      throw new UsageError(first === 'cat' ? 'cat needs at least one segment file' : 'verify needs at least one directory or file');
    }
    return first === 'cat'
      ? { command: 'cat', files: positionals, json: values.json === true, all: values.all === true }
      : { command: 'verify', paths: positionals };
  }
  if (first === 'status') {
    const { values } = parsing(rest, STATUS_OPTIONS, () => parseArgs({ args: rest, options: STATUS_OPTIONS, strict: true, allowPositionals: false }));
    if (values.help) return { command: 'help' };
    if (values.dir === undefined || values.dir === '') throw new UsageError('status needs --dir: the dataDir the channel directory is in');
    const name = values.name ?? 'hopper';
    const problem = nameProblem(name);
    if (problem !== undefined) throw new UsageError(`--name ${JSON.stringify(name)} is not a single directory name: ${problem}`);
    return { command: 'status', dir: values.dir, name, json: values.json === true };
  }
  const args = joinNegativeValues(first === 'buffer' ? rest : argv, BUFFER_OPTIONS);
  const { values, tokens } = parsing(args, BUFFER_OPTIONS, () =>
    parseArgs({ args, options: BUFFER_OPTIONS, strict: true, allowPositionals: false, tokens: true }),
  );
  const typed: Partial<Record<BufferFlag, string>> = {};
  for (const token of tokens) if (token.kind === 'option') typed[token.name as BufferFlag] = token.rawName;
  const flag = (name: BufferFlag): string => typed[name] ?? `--${name}`;
  if (values.help) return { command: 'help' };
  if (values.version) return { command: 'version' };
  const quiet = values['no-progress'] === true || values.quiet === true;
  if (values.progress && quiet) throw new UsageError(`--progress and ${values.quiet ? flag('quiet') : '--no-progress'} contradict each other`);
  const lines = values.lines === true || values.null === true;
  if (values.schema !== undefined && !lines) throw new UsageError('--schema needs --lines (-l): records must be lines of JSON');
  if (values['on-invalid'] !== undefined && values.schema === undefined) {
    throw new UsageError('--on-invalid needs --schema: without one, no line is invalid');
  }
  if (values.dir === '') throw new UsageError('--dir needs a path: a directory to make the channel directory in');
  if (values.name !== undefined) {
    const problem = nameProblem(values.name);
    if (problem !== undefined) throw new UsageError(`--name ${JSON.stringify(values.name)} is not a single directory name: ${problem}`);
  }
  return {
    command: 'buffer',
    memory: values.memory === undefined ? DEFAULTS.memory : parseSize(values.memory, flag('memory'), { min: 0 }),
    dir: values.dir,
    name: values.name,
    segmentSize:
      values['segment-size'] === undefined
        ? DEFAULTS.segmentSize
        : parseSize(values['segment-size'], flag('segment-size'), {
            min: DEFAULTS.minSegmentSize,
            tooSmall: `the smallest is ${formatSize(DEFAULTS.minSegmentSize)}, one block: a segment is sealed past this size, so a smaller one would make a file per block`,
          }),
    maxDisk:
      values['max-disk'] === undefined
        ? DEFAULTS.maxDisk
        : parseSize(values['max-disk'], flag('max-disk'), {
            min: 1,
            allowUnlimited: true,
            tooSmall: 'a cap of 0 leaves no room on disk; give a size above 0, or unlimited for no cap',
          }),
    maxSegments: values['max-segments'] === undefined ? DEFAULTS.maxSegments : parseCount(values['max-segments'], flag('max-segments'), 1, true),
    onFull: parseChoice(values['on-full'], flag('on-full'), ON_FULL_POLICIES, 'block'),
    codec: parseChoice(values.codec, flag('codec'), SEGMENT_CODECS, 'null'),
    lines,
    separator: values.null ? '\0' : '\n',
    size:
      values.size === undefined
        ? undefined
        : parseSize(values.size, flag('size'), {
            min: 1,
            tooSmall: 'an input of 0 bytes has nothing to show progress for; leave the flag out when the size is not known',
          }),
    schemaFile: values.schema,
    onInvalid: parseChoice(values['on-invalid'], flag('on-invalid'), ON_INVALID_POLICIES, 'error'),
    progress: values.progress ? true : quiet ? false : undefined,
    typed,
  };
}
