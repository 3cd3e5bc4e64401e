// Starts the real sbx server as a child process (the built CLI), on a free
// loopback port with its own data dir, for integration tests.
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { SbxClient } from "sbx";

export const REPO = resolve(import.meta.dirname, "../..");
const CLI = join(REPO, "packages/cli/dist/main.js");

function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => mp.startsWith(dir + "/"));
}

export interface TestServer {
  url: string;
  token: string;
  dataDir: string;
  client(): SbxClient;
  /** The server process's pid (for RSS and fd checks); undefined when it is not running. */
  pid(): number | undefined;
  /** SIGKILL the server process (sandboxes keep running). */
  kill(): Promise<void>;
  /** Start a new server process on the same data dir and port (with extra env, e.g. a fault to inject). */
  restart(extraEnv?: Record<string, string>): Promise<void>;
  /** Resolves when the server process has exited by itself (a fault it injected). */
  exited(): Promise<void>;
  /** Closes the test's ends of the server's stdout and stderr: its log reader goes away. */
  closeLogPipes(): void;
  /** Sends `signal` and resolves with how the server exited: its exit code, or the signal that ended it. */
  signal(signal: NodeJS.Signals): Promise<number | string>;
  /** Terminate every sandbox, stop the server, remove the data dir. */
  stop(): Promise<void>;
  log(): string;
}

export interface TestServerOptions {
  mirrors?: Record<string, string>;
  extraArgs?: string[];
  env?: Record<string, string>;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), "sbx-it-"));
  let child: ChildProcess | null = null;
  let output = "";
  let port = 0;
  let env: Record<string, string> = opts.env ?? {};

  const launch = async (): Promise<string> => {
    const args = [
      CLI,
      "serve",
      "--data-dir",
      dataDir,
      "--listen",
      `127.0.0.1:${port}`,
      "--client-config",
      join(dataDir, "client-config.json"),
      ...Object.entries(opts.mirrors ?? {}).flatMap(([host, url]) => ["--registry-mirror", `${host}=${url}`]),
      ...(opts.extraArgs ?? []),
    ];
    const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
    child = proc;
    proc.stdout!.setEncoding("utf8");
    proc.stderr!.setEncoding("utf8");
    proc.stderr!.on("data", (d: string) => (output += d));
    return new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start within 120 s:\n${output}`)), 120_000);
      proc.stdout!.on("data", (d: string) => {
        output += d;
        const m = /sbx listening on (http:\/\/\S+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolveUrl(m[1]!);
        }
      });
      proc.on("exit", (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`server exited (${code ?? sig}) before listening:\n${output}`));
      });
    });
  };

  const url = await launch();
  port = Number(new URL(url).port);
  const token = (await readFile(join(dataDir, "admin-token"), "utf8")).trim();
  const clients: SbxClient[] = [];

  const waitExit = async (p: ChildProcess | null, signal: NodeJS.Signals) => {
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await done;
  };

  return {
    url,
    token,
    dataDir,
    client() {
      const c = new SbxClient({ serverUrl: url, token });
      clients.push(c);
      return c;
    },
    pid() {
      const p = child as ChildProcess | null;
      return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
    },
    async kill() {
      await waitExit(child, "SIGKILL");
    },
    async restart(extraEnv?: Record<string, string>) {
      env = extraEnv ?? {};
      await launch();
    },
    closeLogPipes() {
      child?.stdout?.destroy();
      child?.stderr?.destroy();
    },
    async signal(sig: NodeJS.Signals) {
      const p = child;
      if (!p) throw new Error("no server process");
      if (p.exitCode !== null || p.signalCode !== null) return p.exitCode ?? p.signalCode!;
      const done = new Promise<number | string>((r) => p.once("exit", (code, s) => r(code ?? s!)));
      p.kill(sig);
      return done;
    },
    async exited() {
      const p = child;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      await new Promise((r) => p.once("exit", r));
    },
    async stop() {
      // Terminate whatever tests left running, through the API, then stop.
      try {
        const c = new SbxClient({ serverUrl: url, token });
        for await (const sb of c.sandboxes.list({})) await sb.terminate().catch(() => undefined);
        c.close();
      } catch {
        /* the server may already be gone */
      }
      for (const c of clients) c.close();
      // terminate answers once a sandbox is finished; its destroy (unmounts,
      // disk image, netns) may still be running: let it end before the server
      // stops, or its mounts and loop devices outlive the data dir.
      for (let i = 0; i < 150 && mountsUnder(join(dataDir, "sandboxes")).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      await waitExit(child, "SIGTERM");
      await rm(dataDir, { recursive: true, force: true }).catch(() => undefined);
    },
    log: () => output,
  };
}
