// Flag parsing shared by the subcommands: node:util parseArgs, strict, with
// usage errors (exit 2) kept apart from runtime errors (exit 1).
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

export interface Command {
  /** One line for `sbx --help`. */
  summary: string;
  /** The full text of `sbx <command> --help`. */
  usage: string;
  run(args: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export interface Parsed {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
  /** Everything after the first `--`, when there is one. */
  rest: string[] | undefined;
}

/**
 * Parses flags; returns null when --help was given (the usage was printed).
 * Arguments after `--` are returned in `rest` untouched, so the command's
 * own flags never reach parseArgs.
 */
export function parse(command: string, usage: string, args: string[], options: Options): Parsed | null {
  const dash = args.indexOf("--");
  const own = dash === -1 ? args : args.slice(0, dash);
  const rest = dash === -1 ? undefined : args.slice(dash + 1);
  let parsed;
  try {
    parsed = parseArgs({
      args: own,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message, command);
  }
  if (parsed.values.help) {
    process.stdout.write(usage.endsWith("\n") ? usage : `${usage}\n`);
    return null;
  }
  return { values: parsed.values as Parsed["values"], positionals: parsed.positionals, rest };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === "string" ? v : undefined;
}

export function list(p: Parsed, name: string): string[] {
  const v = p.values[name];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).filter((x): x is string => typeof x === "string");
}

export function bool(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/** The command line after `--` (or, lacking one, the positionals from `from` on). */
export function commandLine(command: string, p: Parsed, from: number): string[] {
  const argv = p.rest ?? p.positionals.slice(from);
  if (p.rest !== undefined && p.positionals.length > from) {
    throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[from])} before --`, command);
  }
  if (argv.length === 0) throw new UsageError("missing the command to run (put it after --)", command);
  return argv;
}

/** KEY=VALUE pairs (--env) into a record. */
export function pairs(command: string, flag: string, items: string[]): Record<string, string> | undefined {
  if (items.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`--${flag} expects KEY=VALUE (got ${JSON.stringify(item)})`, command);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}
