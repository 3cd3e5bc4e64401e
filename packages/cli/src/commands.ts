// The sandbox subcommands: run, exec, ls, kill, logs. They use the SDK only.
import { once } from "node:events";
import { SbxClient, type ContainerProcess, type Sandbox, type SbxReadableStream } from "sbx";
import { UsageError, bool, commandLine, list, pairs, parse, str, type Command } from "./args.js";

const DEFAULT_APP = "sbx-cli";

/** Writes a stream to the terminal as it arrives, honouring backpressure. */
async function pump(stream: SbxReadableStream<Uint8Array> | SbxReadableStream<string>, out: NodeJS.WriteStream): Promise<void> {
  for await (const chunk of stream as AsyncIterable<Uint8Array | string>) {
    if (!out.write(chunk)) await once(out, "drain");
  }
}

/** Forwards our stdin to the process; EOF closes its stdin. Errors end forwarding quietly. */
function forwardStdin(p: ContainerProcess<Uint8Array>): void {
  const input = process.stdin;
  (async () => {
    for await (const chunk of input) await p.stdin.writeBytes(chunk as Buffer);
    await p.stdin.close();
  })().catch(() => {
    input.destroy();
  });
}

/** Runs argv in the sandbox with the terminal attached; resolves with its exit code. */
async function attach(sb: Sandbox, argv: string[], params: { workdir?: string; env?: Record<string, string>; timeoutMs?: number }): Promise<number> {
  const p = await sb.exec(argv, { ...params, mode: "binary" });
  forwardStdin(p);
  const [code] = await Promise.all([p.wait(), pump(p.stdout, process.stdout), pump(p.stderr, process.stderr)]);
  return code;
}

/** Resolves on the first SIGINT/SIGTERM with 128 + its number. */
function interrupted(): Promise<number> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve(130));
    process.once("SIGTERM", () => resolve(143));
  });
}

function seconds(command: string, flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) <= 0) throw new UsageError(`--${flag} expects a positive whole number of seconds (got ${JSON.stringify(value)})`, command);
  return Number(value) * 1000;
}

const RUN_USAGE = `usage: sbx run [options] -- CMD [ARGS...]

Creates a sandbox, runs CMD in it with this terminal's stdin, stdout and
stderr attached, terminates the sandbox and exits with CMD's exit code.

options:
  --app NAME          app to create the sandbox in (default: ${DEFAULT_APP}; created if missing)
  --image REF         registry image, e.g. python:3.13-slim (default: Debian slim)
  --timeout SECONDS   sandbox lifetime (default: 300)
  -w, --workdir DIR   working directory of CMD
  -e, --env KEY=VAL   environment variable for CMD (repeatable)
  -h, --help          show this help
`;

export const run: Command = {
  summary: "run a command in a new sandbox",
  usage: RUN_USAGE,
  async run(args) {
    const p = parse("run", RUN_USAGE, args, {
      app: { type: "string" },
      image: { type: "string" },
      timeout: { type: "string" },
      workdir: { type: "string", short: "w" },
      env: { type: "string", short: "e", multiple: true },
    });
    if (!p) return 0;
    const argv = commandLine("run", p, 0);
    const timeoutMs = seconds("run", "timeout", str(p, "timeout"));
    const env = pairs("run", "env", list(p, "env"));
    const client = new SbxClient();
    const app = await client.apps.fromName(str(p, "app") ?? DEFAULT_APP, { createIfMissing: true });
    const imageRef = str(p, "image");
    const image = imageRef ? client.images.fromRegistry(imageRef) : undefined;
    const stop = new AbortController();
    const signalled = interrupted().then((code) => {
      stop.abort();
      return code;
    });
    const sb = await Promise.race([client.sandboxes.create(app, image, { timeoutMs, signal: stop.signal }), signalled]);
    if (typeof sb === "number") return sb;
    try {
      if (sb.returncode !== null) {
        const finished = (await sb.events()).find((e) => e.type === "Finished");
        throw new Error(`the sandbox ${sb.sandboxId} failed to start${finished?.reason ? `: ${finished.reason}` : ""}`);
      }
      return await Promise.race([attach(sb, argv, { workdir: str(p, "workdir"), env }), signalled]);
    } finally {
      await sb.terminate().catch((err: unknown) => {
        process.stderr.write(`sbx: could not terminate sandbox ${sb.sandboxId}: ${(err as Error).message}\n`);
      });
    }
  },
};

const EXEC_USAGE = `usage: sbx exec [options] SANDBOX_ID -- CMD [ARGS...]

Runs CMD in a running sandbox with this terminal attached; exits with its code.

options:
  -w, --workdir DIR   working directory of CMD
  -e, --env KEY=VAL   environment variable for CMD (repeatable)
  --timeout SECONDS   kill CMD after this long (exit code 137)
  -h, --help          show this help
`;

export const exec: Command = {
  summary: "run a command in a running sandbox",
  usage: EXEC_USAGE,
  async run(args) {
    const p = parse("exec", EXEC_USAGE, args, {
      workdir: { type: "string", short: "w" },
      env: { type: "string", short: "e", multiple: true },
      timeout: { type: "string" },
    });
    if (!p) return 0;
    const id = p.positionals[0];
    if (!id) throw new UsageError("missing SANDBOX_ID", "exec");
    const argv = commandLine("exec", p, 1);
    const params = { workdir: str(p, "workdir"), env: pairs("exec", "env", list(p, "env")), timeoutMs: seconds("exec", "timeout", str(p, "timeout")) };
    const sb = await new SbxClient().sandboxes.fromId(id);
    return Promise.race([attach(sb, argv, params), interrupted()]);
  },
};

const LS_USAGE = `usage: sbx ls [options]

Lists running sandboxes.

options:
  --app NAME    only the sandboxes of this app
  --tag K=V     only sandboxes having this tag (repeatable)
  --json        one JSON object per line
  -h, --help    show this help
`;

export const ls: Command = {
  summary: "list running sandboxes",
  usage: LS_USAGE,
  async run(args) {
    const p = parse("ls", LS_USAGE, args, {
      app: { type: "string" },
      tag: { type: "string", multiple: true },
      json: { type: "boolean" },
    });
    if (!p) return 0;
    if (p.positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0])}`, "ls");
    const client = new SbxClient();
    const appName = str(p, "app");
    const appId = appName ? (await client.apps.fromName(appName)).appId : undefined;
    const tags = pairs("ls", "tag", list(p, "tag"));
    const rows: string[][] = [["SANDBOX ID", "APP ID", "NAME", "STATE", "CREATED", "TAGS"]];
    for await (const sb of client.sandboxes.list({ appId, tags })) {
      const info = {
        sandboxId: sb.sandboxId,
        appId: sb.appId,
        name: sb.name,
        state: sb.state,
        createdAt: sb.createdAt,
        tags: sb.tags,
      };
      if (bool(p, "json")) process.stdout.write(`${JSON.stringify(info)}\n`);
      else {
        const tagText = Object.entries(sb.tags).map(([k, v]) => `${k}=${v}`).join(",");
        rows.push([sb.sandboxId, sb.appId, sb.name ?? "-", sb.state, sb.createdAt, tagText || "-"]);
      }
    }
    if (!bool(p, "json")) {
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) process.stdout.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}\n`);
    }
    return 0;
  },
};

const KILL_USAGE = `usage: sbx kill SANDBOX_ID...

Terminates sandboxes (SIGKILL; their exit code becomes 137).

options:
  -h, --help    show this help
`;

export const kill: Command = {
  summary: "terminate sandboxes",
  usage: KILL_USAGE,
  async run(args) {
    const p = parse("kill", KILL_USAGE, args, {});
    if (!p) return 0;
    if (p.positionals.length === 0) throw new UsageError("missing SANDBOX_ID", "kill");
    const client = new SbxClient();
    for (const id of p.positionals) {
      const sb = await client.sandboxes.fromId(id);
      await sb.terminate({ wait: true });
      process.stdout.write(`${id}\n`);
    }
    return 0;
  },
};

const LOGS_USAGE = `usage: sbx logs SANDBOX_ID

Prints the output of the sandbox's entrypoint (stdout and stderr) from the
start, following it until the entrypoint exits.

options:
  -h, --help    show this help
`;

export const logs: Command = {
  summary: "print a sandbox's entrypoint output",
  usage: LOGS_USAGE,
  async run(args) {
    const p = parse("logs", LOGS_USAGE, args, {});
    if (!p) return 0;
    const [id, extra] = p.positionals;
    if (!id) throw new UsageError("missing SANDBOX_ID", "logs");
    if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`, "logs");
    const sb = await new SbxClient().sandboxes.fromId(id);
    await Promise.race([Promise.all([pump(sb.stdout, process.stdout), pump(sb.stderr, process.stderr)]), interrupted()]);
    return 0;
  },
};
