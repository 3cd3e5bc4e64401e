#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=16777216 node
// (The server keeps up to 16 MiB of freed heap instead of handing it back to
// the kernel at once: node's HTTP parser copies every piece of a request body
// into a fresh buffer, and re-faulting those pages cost the server ~0.5 s of
// CPU per GiB of stdin on a nested VM. See PERFORMANCE.md.)
// sbx: the command line of the sbx sandbox service.
import { SbxError } from "sbx";
import { UsageError, type Command } from "./args.js";
import { exec, kill, logs, ls, run } from "./commands.js";
import { secrets } from "./secrets.js";
import { serve } from "./serve.js";
import { volumes } from "./volumes.js";
import { workspaces } from "./workspaces.js";
import { images } from "./images-command.js";

const COMMANDS: Record<string, Command> = { serve, run, exec, ls, kill, logs, secrets, volumes, images, workspaces };

const USAGE = `usage: sbx <command> [options]

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(8)}${c.summary}`)
  .join("\n")}

Run \`sbx <command> --help\` for a command's options. Clients find the server
through $SBX_SERVER_URL and $SBX_TOKEN, else the config file written by
\`sbx serve\` ($SBX_CONFIG or ~/.config/sbx/config.json).
`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  if (name === undefined) throw new UsageError("missing command");
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw new UsageError(`unknown command ${JSON.stringify(name)}`);
  return command.run(args);
}

function report(err: unknown): number {
  if (err instanceof UsageError) {
    const help = err.command ? `sbx ${err.command} --help` : "sbx --help";
    process.stderr.write(`sbx: ${err.message}\n(see ${help})\n`);
    return 2;
  }
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof SbxError && err.code === "unavailable") message += " (is `sbx serve` running?)";
  process.stderr.write(`sbx: ${message}\n`);
  return 1;
}

/** Exits once what we wrote to stdout and stderr has been flushed. */
async function exit(code: number): Promise<never> {
  await Promise.all([process.stdout, process.stderr].map((s) => new Promise<void>((resolve) => s.write("", () => resolve()))));
  process.exit(code);
}

main(process.argv.slice(2)).then(exit, (err: unknown) => exit(report(err)));
