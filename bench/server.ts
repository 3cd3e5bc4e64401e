// Starts the real sbx server (the built CLI) as a child process on its own
// data dir, for the benchmark: its pid (for VmRSS), its log (per-create
// timing lines), and a stop() that terminates every sandbox, stops the
// server by pid and removes the data dir (unmounting anything left).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SbxClient, type Sandbox } from "sbx";
import { run } from "./proc.js";
import { pool } from "./stats.js";

/** The repository: the benchmark runs compiled from bench/dist (see bench/README.md). */
export const REPO = resolve(import.meta.dirname, "../..");
const CLI = join(REPO, "packages/cli/dist/main.js");

export interface BenchServer {
  url: string;
  pid: number;
  dataDir: string;
  client: SbxClient;
  log(): string;
  /** Resident set size of the server process, bytes. */
  rssBytes(): number;
  /** Mounts left under the data dir after stop() (unmounted by it). */
  leftoverMounts: string[];
  stop(): Promise<void>;
}

/** Thrown when the server exits before listening (e.g. an unknown flag). */
export class ServerStartError extends Error {}

export async function startServer(extraArgs: string[] = [], startTimeoutMs = 120_000): Promise<BenchServer> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const dataDir = await fsp.mkdtemp(join(tmpdir(), "sbx-bench-"));
  const args = [
    CLI,
    "serve",
    "--data-dir",
    dataDir,
    "--listen",
    "127.0.0.1:0",
    "--client-config",
    join(dataDir, "client-config.json"),
    // Admission is not what is measured: room for every sandbox the benchmark makes.
    "--capacity-cpu",
    "100000",
    "--capacity-memory",
    "100000000",
    "--queue-size",
    "1000",
    ...extraArgs,
  ];
  // Run as the sbx bin runs it: its shebang sets this malloc threshold (packages/cli/src/main.ts).
  const env = { ...process.env, MALLOC_TRIM_THRESHOLD_: "16777216" };
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env });
  let output = "";
  const keep = (d: string) => {
    output += d;
    if (output.length > 8 << 20) output = output.slice(-(4 << 20));
  };
  child.stdout!.setEncoding("utf8").on("data", keep);
  child.stderr!.setEncoding("utf8").on("data", keep);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  let url: string;
  try {
    url = await new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new ServerStartError(`server did not listen within ${startTimeoutMs} ms:\n${output}`)), startTimeoutMs);
      const onData = () => {
        const m = /sbx listening on (http:\/\/\S+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolveUrl(m[1]!);
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", (code, sig) => {
        clearTimeout(timer);
        reject(new ServerStartError(`server exited (${code ?? sig}) before listening:\n${output.trim().slice(-2000)}`));
      });
    });
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    await fsp.rm(dataDir, { recursive: true, force: true });
    throw e;
  }
  const token = (await fsp.readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const client = new SbxClient({ serverUrl: url, token });
  const pid = child.pid!;

  const server: BenchServer = {
    url,
    pid,
    dataDir,
    client,
    log: () => output,
    rssBytes() {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      return m ? Number(m[1]) * 1024 : NaN;
    },
    leftoverMounts: [],
    async stop() {
      try {
        const all: Sandbox[] = [];
        for await (const sb of client.sandboxes.list({})) all.push(sb);
        await pool(all.length, 16, (i) => all[i]!.terminate().catch(() => undefined));
      } catch {
        /* the server may be gone */
      }
      client.close();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(t);
      }
      server.leftoverMounts = mountsUnder(dataDir);
      for (const m of server.leftoverMounts.reverse()) await run(["umount", "-l", m], { timeoutMs: 10_000 });
      await fsp.rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
    },
  };
  return server;
}

/** Mount points at or below `dir` (from /proc/self/mountinfo), outermost first. */
export function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)));
}

export interface CreateTiming {
  sandboxId: string;
  totalMs: number;
  steps: Record<string, number>;
}

/** The server's per-create timing lines: "sandbox <id> created in N ms (step x, …)". */
export function createTimings(log: string): CreateTiming[] {
  const out: CreateTiming[] = [];
  for (const m of log.matchAll(/sandbox (\S+) created in (\d+(?:\.\d+)?) ms \(([^)]*)\)/g)) {
    const steps: Record<string, number> = {};
    for (const part of m[3]!.split(",")) {
      const [k, v] = part.trim().split(/\s+/);
      if (k && v !== undefined && !Number.isNaN(Number(v))) steps[k] = Number(v);
    }
    out.push({ sandboxId: m[1]!, totalMs: Number(m[2]), steps });
  }
  return out;
}
