// `sbx volumes create|ls|rm`: volumes stored on the server.
import { SbxClient } from "sbx";
import { UsageError, bool, parse, type Command } from "./args.js";
import { subcommand, table } from "./table.js";

const CREATE_USAGE = `usage: sbx volumes create NAME

Creates a volume (nothing happens when one of that name exists) and prints
its id. Sandboxes mount it through volumes.fromName(NAME).

options:
  -h, --help    show this help
`;

const LS_USAGE = `usage: sbx volumes ls [--json]

Lists the volumes, named and ephemeral.

options:
  --json        one JSON object per line
  -h, --help    show this help
`;

const RM_USAGE = `usage: sbx volumes rm NAME...

Deletes volumes and their data (refused while a running sandbox mounts one).

options:
  -h, --help    show this help
`;

const create: Command = {
  summary: "create a volume",
  usage: CREATE_USAGE,
  async run(args) {
    const p = parse("volumes create", CREATE_USAGE, args, {});
    if (!p) return 0;
    const [name, extra] = p.positionals;
    if (!name) throw new UsageError("missing NAME", "volumes create");
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`, "volumes create");
    const volume = await new SbxClient().volumes.fromName(name, { createIfMissing: true });
    process.stdout.write(`${volume.volumeId}\n`);
    return 0;
  },
};

const ls: Command = {
  summary: "list volumes",
  usage: LS_USAGE,
  async run(args) {
    const p = parse("volumes ls", LS_USAGE, args, { json: { type: "boolean" } });
    if (!p) return 0;
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}`, "volumes ls");
    const volumes = await new SbxClient().volumes.list();
    if (bool(p, "json")) {
      for (const v of volumes) {
        process.stdout.write(`${JSON.stringify({ volumeId: v.volumeId, name: v.name, ephemeral: v.ephemeral, createdAt: v.createdAt })}\n`);
      }
    } else {
      table([["VOLUME ID", "NAME", "CREATED"], ...volumes.map((v) => [v.volumeId, v.name ?? "(ephemeral)", v.createdAt])]);
    }
    return 0;
  },
};

const rm: Command = {
  summary: "delete volumes",
  usage: RM_USAGE,
  async run(args) {
    const p = parse("volumes rm", RM_USAGE, args, {});
    if (!p) return 0;
    if (p.positionals.length === 0) throw new UsageError("missing NAME", "volumes rm");
    const client = new SbxClient();
    for (const name of p.positionals) {
      await client.volumes.delete(name);
      process.stdout.write(`${name}\n`);
    }
    return 0;
  },
};

export const volumes: Command = subcommand("volumes", "manage volumes", { create, ls, rm });
