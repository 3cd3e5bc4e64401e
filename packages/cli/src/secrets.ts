// `sbx secrets create|ls|rm`: named secrets stored on the server. Values are
// read from the command line or the environment and never printed.
import { SbxClient } from "sbx";
import { UsageError, bool, list, parse, type Command } from "./args.js";
import { subcommand, table } from "./table.js";

const CREATE_USAGE = `usage: sbx secrets create [options] NAME [KEY=VALUE...]

Stores a secret on the server (encrypted at rest). Sandboxes use it through
secrets.fromName(NAME); its values reach only the sandboxes, never output.

options:
  --from-env KEY    take KEY's value from this shell's environment (repeatable;
                    keeps the value out of the command line)
  --overwrite       replace the values of an existing secret of that name
  -h, --help        show this help
`;

const LS_USAGE = `usage: sbx secrets ls [--json]

Lists the stored secrets: names and keys, never values.

options:
  --json        one JSON object per line
  -h, --help    show this help
`;

const RM_USAGE = `usage: sbx secrets rm NAME...

Deletes stored secrets.

options:
  -h, --help    show this help
`;

/** KEY=VALUE arguments and --from-env keys into an env record; errors never echo a value. */
export function secretEntries(command: string, items: string[], fromEnv: string[], env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  items.forEach((item, i) => {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`argument ${i + 2} is not KEY=VALUE`, command);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  });
  for (const key of fromEnv) {
    const value = env[key];
    if (value === undefined) throw new UsageError(`--from-env ${key}: ${key} is not set in the environment`, command);
    out[key] = value;
  }
  if (Object.keys(out).length === 0) throw new UsageError("give at least one KEY=VALUE or --from-env KEY", command);
  return out;
}

const create: Command = {
  summary: "store a secret",
  usage: CREATE_USAGE,
  async run(args) {
    const p = parse("secrets create", CREATE_USAGE, args, {
      "from-env": { type: "string", multiple: true },
      overwrite: { type: "boolean" },
    });
    if (!p) return 0;
    const [name, ...items] = [...p.positionals, ...(p.rest ?? [])];
    if (!name) throw new UsageError("missing NAME", "secrets create");
    const entries = secretEntries("secrets create", items, list(p, "from-env"), process.env);
    const info = await new SbxClient().secrets.create(name, entries, { overwrite: bool(p, "overwrite") });
    process.stdout.write(`${info.name}: ${info.keys.join(", ")}\n`);
    return 0;
  },
};

const ls: Command = {
  summary: "list secrets",
  usage: LS_USAGE,
  async run(args) {
    const p = parse("secrets ls", LS_USAGE, args, { json: { type: "boolean" } });
    if (!p) return 0;
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}`, "secrets ls");
    const secrets = await new SbxClient().secrets.list();
    if (bool(p, "json")) for (const s of secrets) process.stdout.write(`${JSON.stringify(s)}\n`);
    else table([["NAME", "KEYS", "CREATED"], ...secrets.map((s) => [s.name, s.keys.join(",") || "-", s.createdAt])]);
    return 0;
  },
};

const rm: Command = {
  summary: "delete secrets",
  usage: RM_USAGE,
  async run(args) {
    const p = parse("secrets rm", RM_USAGE, args, {});
    if (!p) return 0;
    if (p.positionals.length === 0) throw new UsageError("missing NAME", "secrets rm");
    const client = new SbxClient();
    for (const name of p.positionals) {
      await client.secrets.delete(name);
      process.stdout.write(`${name}\n`);
    }
    return 0;
  },
};

export const secrets: Command = subcommand("secrets", "manage named secrets", { create, ls, rm });
