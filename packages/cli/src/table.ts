// Helpers of the resource subcommands: aligned tables and `sbx X <verb>` dispatch.
import { UsageError, type Command } from "./args.js";

/** Prints rows as columns padded to their widest cell (the last column unpadded). */
export function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}\n`);
}

/** A command made of verbs: `sbx NAME VERB [args]`. */
export function subcommand(name: string, summary: string, verbs: Record<string, Command>): Command {
  const usage = `usage: sbx ${name} <${Object.keys(verbs).join("|")}> [options]

${Object.entries(verbs)
  .map(([verb, c]) => `  ${verb.padEnd(8)}${c.summary}`)
  .join("\n")}

Run \`sbx ${name} <verb> --help\` for a verb's options.
`;
  return {
    summary,
    usage,
    async run(args) {
      const [verb, ...rest] = args;
      if (verb === "--help" || verb === "-h" || verb === "help") {
        process.stdout.write(usage);
        return 0;
      }
      if (verb === undefined) throw new UsageError(`missing what to do (${Object.keys(verbs).join(", ")})`, name);
      const command = Object.hasOwn(verbs, verb) ? verbs[verb] : undefined;
      if (!command) throw new UsageError(`unknown verb ${JSON.stringify(verb)} (${Object.keys(verbs).join(", ")})`, name);
      return command.run(rest);
    },
  };
}
