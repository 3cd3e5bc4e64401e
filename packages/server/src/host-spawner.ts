// The host spawner: one small sbx-agent on the host (`--host-spawner`) that
// starts the server's host tools. A fork of the node server copies its page
// tables and blocks the event loop for it: 7 ms at 50 MiB of RSS, 17 ms at
// 200 MiB on this project's machine, for each of the ~8 tools a sandbox's
// create runs. The agent is a few hundred KiB and starts a process with
// CLONE_VM|CLONE_VFORK, off the server's thread.
//
// A tool's stdout and stderr go to files in the spawner's run dir (read and
// removed once it exits), its stdin comes in STDIN frames. The spawner dies
// with the server (PR_SET_PDEATHSIG). If it dies first, runs in flight fail
// and later ones fall back to forking the server (directRunner).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AgentClient } from "./runtime/agent-client.js";
import { STDIN_BUFFER_MAX } from "./runtime/agent/proto.js";
import type { ExitStatus } from "./core/ports.js";
import { directRunner, setToolRunner, STDERR_TAIL, STDOUT_CAP, toolRunner, type ToolResult, type ToolRun, type ToolRunner } from "./run-tool.js";

/** Where spawners keep their run dirs: one per server process, on tmpfs. */
export const SPAWNER_ROOT = "/run/sbx-spawner";

export class SpawnerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SpawnerError";
  }
}

export class HostSpawner implements ToolRunner {
  private next = 0;
  private inflight = 0;
  private dead: Error | null = null;
  private readonly waiters = new Map<string, { resolve: (st: ExitStatus) => void; reject: (e: Error) => void }>();

  private constructor(
    private readonly child: ChildProcess,
    private readonly agent: AgentClient,
    private readonly dir: string,
    private readonly log: (m: string) => void,
  ) {
    agent.setRef(false);
    agent.onExit((id, st) => {
      const w = this.waiters.get(id);
      if (!w) return;
      this.waiters.delete(id);
      w.resolve(st);
    });
    child.once("exit", (code, sig) => this.fail(new SpawnerError(`the host spawner exited (${code ?? sig})`)));
  }

  /** Starts a spawner for this process; rejects when the agent does not answer. */
  static async start(agentPath: string, log: (m: string) => void): Promise<HostSpawner> {
    mkdirSync(SPAWNER_ROOT, { recursive: true, mode: 0o700 });
    removeStaleDirs();
    const dir = join(SPAWNER_ROOT, String(process.pid));
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    const child = spawn(agentPath, ["--host-spawner", String(process.pid), "--run-dir", dir], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    child.unref();
    const alive = () => child.exitCode === null && child.signalCode === null;
    const agent = new AgentClient(join(dir, "agent.sock"), { log, alive });
    try {
      await agent.start({ timeoutMs: 5000, alive });
    } catch (e) {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    return new HostSpawner(child, agent, dir, log);
  }

  async run(cmd: string, args: string[], opts: ToolRun): Promise<ToolResult> {
    if (this.dead) return directRunner.run(cmd, args, opts);
    const id = `t${++this.next}`;
    const argv = opts.outputFile
      ? // The tool's own stdio on the file (runc passes them to its container).
        ["/bin/sh", "-c", 'exec "$0" "$@" >>"$SBX_TOOL_OUTPUT" 2>&1', cmd, ...args]
      : [cmd, ...args];
    const exited = new Promise<ExitStatus>((resolve, reject) => this.waiters.set(id, { resolve, reject }));
    exited.catch(() => undefined); // awaited below; a failure before that is reported by exec()
    if (this.inflight++ === 0) this.agent.setRef(true);
    try {
      await this.agent.exec({
        id,
        argv,
        env: opts.outputFile ? { SBX_TOOL_OUTPUT: opts.outputFile } : {},
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      });
      if (opts.input !== undefined) await this.feed(id, Buffer.from(opts.input));
      else await this.agent.stdinClose(id).catch(() => undefined); // EOF at once, as with stdin "ignore"
      const st = await exited;
      const procDir = join(this.dir, "procs", id);
      const stdout = readCapped(join(procDir, "stdout"), STDOUT_CAP, false);
      const stderr = readCapped(join(procDir, "stderr"), STDERR_TAIL, true);
      rmSync(procDir, { recursive: true, force: true });
      const signaled = st.reason === "signaled";
      return { code: signaled ? null : st.code, signal: signaled ? `signal ${st.code - 128}` : null, stdout, stderr };
    } catch (e) {
      this.waiters.delete(id);
      throw e;
    } finally {
      if (--this.inflight === 0) this.agent.setRef(false);
    }
  }

  /** Hands `data` to the tool's stdin as it reads, then closes it. */
  private async feed(id: string, data: Buffer): Promise<void> {
    let acked = 0;
    for (let tries = 0; acked < data.length; tries++) {
      const n = await this.agent.stdin(id, acked, data.subarray(acked, acked + STDIN_BUFFER_MAX));
      if (n === acked) await new Promise((r) => setTimeout(r, Math.min(50, 1 + tries)));
      acked = n;
    }
    await this.agent.stdinClose(id);
  }

  private fail(e: Error): void {
    if (this.dead) return;
    this.dead = e;
    this.log(`${e.message}; host tools are forked by the server from now on`);
    for (const w of this.waiters.values()) w.reject(e);
    this.waiters.clear();
    this.agent.close();
    if (toolRunner() === this) setToolRunner(directRunner);
  }

  close(): void {
    this.fail(new SpawnerError("the host spawner was stopped"));
    this.child.kill("SIGKILL");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The first `cap` bytes of a file, or its last `cap` when `tail`. */
function readCapped(path: string, cap: number, tail: boolean): string {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch {
    return "";
  }
  if (b.length > cap) b = tail ? b.subarray(b.length - cap) : b.subarray(0, cap);
  return b.toString("utf8");
}

/** Run dirs of spawners whose server is gone (a SIGKILLed server leaves its dir). */
function removeStaleDirs(): void {
  for (const name of readdirSync(SPAWNER_ROOT)) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(join(SPAWNER_ROOT, name), { recursive: true, force: true });
    }
  }
}

let shared: { spawner: Promise<HostSpawner | null>; users: number } | null = null;

/**
 * Routes this process's host tools through a spawner, shared by every
 * server in the process (tests start several). Resolves to a release
 * function; the spawner stops when its last user releases it. Without a
 * working spawner the server keeps forking itself, and says so.
 */
export async function useHostSpawner(agentPath: string, log: (m: string) => void): Promise<() => void> {
  if (!shared) {
    shared = {
      users: 0,
      spawner: HostSpawner.start(agentPath, log).then(
        (s) => {
          setToolRunner(s);
          return s;
        },
        (e: unknown) => {
          log(`host spawner not started (${(e as Error).message}); host tools are forked by the server`);
          return null;
        },
      ),
    };
  }
  const mine = shared;
  mine.users++;
  await mine.spawner;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--mine.users > 0) return;
    if (shared === mine) shared = null;
    void mine.spawner.then((s) => s?.close());
  };
}
