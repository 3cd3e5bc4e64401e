// `sbx serve`: runs the server in the foreground until SIGINT or SIGTERM.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { UsageError, list, parse, str, type Command } from "./args.js";

const USAGE = `usage: sbx serve [options]

Runs the sbx server in the foreground; stops on SIGINT or SIGTERM (running
sandboxes keep running and are adopted by the next server).

options:
  --data-dir DIR               state directory (default: /var/lib/sbx as root,
                               else ~/.local/share/sbx)
  --listen HOST:PORT           address to listen on (default: 127.0.0.1:7423)
  --registry-mirror HOST=URL   pull images of registry HOST from URL (repeatable)
  --insecure-registry HOST     allow plain http to registry HOST (repeatable)
  --runtime runc|crun          OCI runtime (default: crun on cgroup v2, else runc)
  --client-config PATH         where the URL and admin token are written for
                               clients (default: $SBX_CONFIG or ~/.config/sbx/config.json)
  --capacity-cpu CORES         cores sandboxes may reserve in all (default: 32 per host core)
  --capacity-memory MIB        memory sandboxes may reserve in all (default: 4x the host's)
  --queue-size N               creates that may wait for capacity (default: 100)
  --dns-upstream IP[:PORT]     resolver the sandboxes' DNS forwarder asks
                               (repeatable; default: the host's resolv.conf)
  --warm-pool N                sandboxes kept started per app and shape, ready
                               to be claimed by a create (default: 0, none)
  -h, --help                   show this help
`;

export interface ServeOptions {
  dataDir: string;
  listen: { host: string; port: number };
  registryMirrors: Record<string, string>;
  insecureRegistries: string[];
  runtime?: "runc" | "crun";
  clientConfigPath: string;
  capacity?: { cpu?: number; memoryMiB?: number; queueLimit?: number };
  warmPoolSize?: number;
  dnsUpstreams?: string[];
}

function positiveNumber(p: Parameters<typeof str>[0], flag: string, integer: boolean): number | undefined {
  const raw = str(p, flag);
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!(n > 0) || !Number.isFinite(n) || (integer && !Number.isInteger(n))) {
    throw new UsageError(`--${flag} expects a positive ${integer ? "integer" : "number"} (got ${JSON.stringify(raw)})`, "serve");
  }
  return n;
}

export function defaultDataDir(): string {
  return process.getuid?.() === 0 ? "/var/lib/sbx" : join(homedir(), ".local", "share", "sbx");
}

export function defaultClientConfigPath(): string {
  return process.env.SBX_CONFIG || join(homedir(), ".config", "sbx", "config.json");
}

/** "127.0.0.1:7423", "[::1]:7423", "localhost:0". */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen expects HOST:PORT, e.g. 127.0.0.1:7423 (got ${JSON.stringify(value)})`, "serve");
  return { host: (m[1] ?? m[2])!, port };
}

function parseMirror(value: string): [string, string] {
  const eq = value.indexOf("=");
  const host = value.slice(0, eq);
  const url = value.slice(eq + 1);
  let ok = eq > 0 && /^[A-Za-z0-9.-]+(:\d+)?$/.test(host);
  if (ok) {
    try {
      ok = ["http:", "https:"].includes(new URL(url).protocol);
    } catch {
      ok = false;
    }
  }
  if (!ok) throw new UsageError(`--registry-mirror expects HOST=URL, e.g. docker.io=http://127.0.0.1:5000 (got ${JSON.stringify(value)})`, "serve");
  return [host, url.replace(/\/+$/, "")];
}

export function parseServeArgs(args: string[]): ServeOptions | null {
  const p = parse("serve", USAGE, args, {
    "data-dir": { type: "string" },
    listen: { type: "string" },
    "registry-mirror": { type: "string", multiple: true },
    "insecure-registry": { type: "string", multiple: true },
    runtime: { type: "string" },
    "client-config": { type: "string" },
    "capacity-cpu": { type: "string" },
    "capacity-memory": { type: "string" },
    "queue-size": { type: "string" },
    "warm-pool": { type: "string" },
    "dns-upstream": { type: "string", multiple: true },
  });
  if (!p) return null;
  if (p.positionals.length > 0 || p.rest !== undefined) {
    throw new UsageError(`unexpected argument ${JSON.stringify(p.positionals[0] ?? "--")}`, "serve");
  }
  const runtime = str(p, "runtime");
  if (runtime !== undefined && runtime !== "runc" && runtime !== "crun") {
    throw new UsageError(`--runtime must be runc or crun (got ${JSON.stringify(runtime)})`, "serve");
  }
  const insecure = list(p, "insecure-registry");
  for (const host of insecure) {
    if (!/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) throw new UsageError(`--insecure-registry expects a host[:port] (got ${JSON.stringify(host)})`, "serve");
  }
  return {
    dataDir: resolve(str(p, "data-dir") ?? defaultDataDir()),
    listen: parseListen(str(p, "listen") ?? "127.0.0.1:7423"),
    registryMirrors: Object.fromEntries(list(p, "registry-mirror").map(parseMirror)),
    insecureRegistries: insecure,
    ...(runtime ? { runtime } : {}),
    clientConfigPath: resolve(str(p, "client-config") ?? defaultClientConfigPath()),
    ...optional("warmPoolSize", warmPool(p)),
    ...(list(p, "dns-upstream").length > 0 ? { dnsUpstreams: dnsUpstreams(list(p, "dns-upstream")) } : {}),
    capacity: {
      ...optional("cpu", positiveNumber(p, "capacity-cpu", false)),
      ...optional("memoryMiB", positiveNumber(p, "capacity-memory", true)),
      ...optional("queueLimit", positiveNumber(p, "queue-size", true)),
    },
  };
}

function dnsUpstreams(values: string[]): string[] {
  for (const v of values) {
    if (!/^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$/.test(v)) throw new UsageError(`--dns-upstream expects IP[:PORT] (got ${JSON.stringify(v)})`, "serve");
  }
  return values;
}

function warmPool(p: Parameters<typeof str>[0]): number | undefined {
  const raw = str(p, "warm-pool");
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new UsageError(`--warm-pool expects 0 to 64 (got ${JSON.stringify(raw)})`, "serve");
  return n;
}

function optional<K extends string>(key: K, value: number | undefined): { [P in K]?: number } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: number };
}

/**
 * A log pipe whose reader went away (`sbx serve | head`, a log shipper that
 * exited) fails each write with EPIPE; unheard, that error would end the
 * server mid-request and leave its sandboxes and mounts to the next start.
 * The server keeps serving and its log lines are dropped instead.
 */
function keepServingWithoutLogReader(stream: NodeJS.WriteStream): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE" && err.code !== "ERR_STREAM_DESTROYED") throw err;
  });
}

export const serve: Command = {
  summary: "run the sbx server",
  usage: USAGE,
  async run(args) {
    const options = parseServeArgs(args);
    if (!options) return 0;
    keepServingWithoutLogReader(process.stdout);
    keepServingWithoutLogReader(process.stderr);
    // Loaded only here: the other commands need no server code.
    const { startServer } = await import("@sbx/server");
    // Crash tests set this to make the server kill itself at one create step.
    const killAtStep = process.env.SBX_TEST_KILL_AT_STEP;
    const server = await startServer({ ...options, ...(killAtStep ? { faultInjection: { killAtStep } } : {}) });
    process.stdout.write(`sbx listening on ${server.url}\n`);
    if (server.adminToken !== null) {
      process.stderr.write(
        `sbx: a new admin token was written to ${join(options.dataDir, "admin-token")} and ${options.clientConfigPath}\n`,
      );
    }
    const signal = await new Promise<NodeJS.Signals>((resolveSignal) => {
      process.once("SIGINT", () => resolveSignal("SIGINT"));
      process.once("SIGTERM", () => resolveSignal("SIGTERM"));
    });
    process.stderr.write(`sbx: ${signal}: stopping (send it again to force)\n`);
    process.once(signal, () => process.exit(1));
    await server.close();
    return 0;
  },
};
