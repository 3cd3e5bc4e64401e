// `sbx workspaces create|ls|token` (admin token): tenants of one server.
import { SbxClient } from "sbx";
import { UsageError, parse, type Command } from "./args.js";
import { subcommand, table } from "./table.js";

const CREATE_USAGE = `usage: sbx workspaces create NAME

Creates a workspace and prints its first token (shown once: keep it).
Clients using that token see only that workspace's apps, sandboxes,
secrets, volumes and images. Needs the admin token.

options:
  -h, --help    show this help
`;

const LS_USAGE = `usage: sbx workspaces ls

Lists the workspaces. Needs the admin token.

options:
  -h, --help    show this help
`;

const TOKEN_USAGE = `usage: sbx workspaces token WORKSPACE TOKEN_NAME

Creates another token for a workspace and prints it (shown once).
Needs the admin token.

options:
  -h, --help    show this help
`;

function positionals(cmd: string, usage: string, args: string[], want: string[]): string[] | null {
  const p = parse(cmd, usage, args, {});
  if (!p) return null;
  if (p.positionals.length < want.length) throw new UsageError(`missing ${want[p.positionals.length]}`, cmd);
  if (p.positionals.length > want.length) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[want.length])}`, cmd);
  return p.positionals;
}

const create: Command = {
  summary: "create a workspace and its first token",
  usage: CREATE_USAGE,
  async run(args) {
    const p = positionals("workspaces create", CREATE_USAGE, args, ["NAME"]);
    if (!p) return 0;
    const { token } = await new SbxClient().workspaces.create(p[0]!);
    process.stdout.write(`${token}\n`);
    return 0;
  },
};

const ls: Command = {
  summary: "list workspaces",
  usage: LS_USAGE,
  async run(args) {
    if (!positionals("workspaces ls", LS_USAGE, args, [])) return 0;
    const list = await new SbxClient().workspaces.list();
    table([["WORKSPACE ID", "NAME", "CREATED"], ...list.map((w) => [w.workspaceId, w.name, w.createdAt])]);
    return 0;
  },
};

const token: Command = {
  summary: "create another token for a workspace",
  usage: TOKEN_USAGE,
  async run(args) {
    const p = positionals("workspaces token", TOKEN_USAGE, args, ["WORKSPACE", "TOKEN_NAME"]);
    if (!p) return 0;
    process.stdout.write(`${await new SbxClient().workspaces.createToken(p[0]!, p[1]!)}\n`);
    return 0;
  },
};

export const workspaces: Command = subcommand("workspaces", "manage workspaces (admin)", { create, ls, token });
