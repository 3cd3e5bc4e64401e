// Typed driver for an OCI runtime CLI (runc or crun). One method per
// subcommand; argv is built in one place (`argv`), never a shell string. The
// runtime keeps its state under its own --root. Containers are started
// detached (`create` + `start`) with stdio on files, so no runtime process
// stays attached to the server and a sandbox survives the server's death.

import { spawn } from "node:child_process";
import { existsSync, openSync, closeSync, readFileSync, statfsSync } from "node:fs";

export type RuntimeName = "runc" | "crun";

export class RuntimeError extends Error {
  constructor(
    message: string,
    readonly argv: string[],
    readonly exitStatus: number | null,
    readonly stderrTail: string,
  ) {
    super(message);
    this.name = "RuntimeError";
  }
}

export interface ContainerState {
  id: string;
  pid: number;
  status: "creating" | "created" | "running" | "stopped" | "paused" | string;
  bundle: string;
}

const CGROUP2_SUPER_MAGIC = 0x63677270;

/** crun on a pure cgroup v2 host, runc otherwise (crun refuses hybrid layouts). */
export function chooseRuntime(forced?: RuntimeName): RuntimeName {
  if (forced) return forced;
  try {
    if (existsSync("/sys/fs/cgroup/cgroup.controllers") && statfsSync("/sys/fs/cgroup").type === CGROUP2_SUPER_MAGIC) {
      return "crun";
    }
  } catch {
    /* fall through */
  }
  return "runc";
}

const STDERR_TAIL = 2000;

interface RunResult {
  stdout: string;
  stderr: string;
}

export class OciRuntime {
  constructor(
    readonly name: RuntimeName,
    /** --root: this server's own state directory for the runtime. */
    readonly root: string,
    readonly binary: string = name,
    /** Global options before the subcommand, e.g. crun's --cgroup-manager=disabled. */
    readonly globalArgs: readonly string[] = [],
  ) {}

  /** The single place argv is assembled. */
  private argv(sub: string, args: string[]): string[] {
    return [...this.globalArgs, "--root", this.root, sub, ...args];
  }

  private run(sub: string, args: string[], stdio?: { out: number; err: number }): Promise<RunResult> {
    const argv = this.argv(sub, args);
    return new Promise((resolve, reject) => {
      // For `create`, the container's stdio are files (inherited by the
      // container's PID 1). We capture the runtime's own errors via --log.
      const child = spawn(this.binary, argv, {
        stdio: stdio ? ["ignore", stdio.out, stdio.err] : ["ignore", "pipe", "pipe"],
        detached: false,
      });
      let out = "";
      let err = "";
      child.stdout?.setEncoding("utf8").on("data", (d: string) => {
        if (out.length < 1 << 20) out += d;
      });
      child.stderr?.setEncoding("utf8").on("data", (d: string) => {
        err = (err + d).slice(-STDERR_TAIL * 2);
      });
      child.on("error", (e) =>
        reject(new RuntimeError(`${this.name} ${sub}: ${e.message}`, [this.binary, ...argv], null, "")),
      );
      child.on("close", (code, sig) => {
        if (code === 0) return resolve({ stdout: out, stderr: err });
        const tail = err.slice(-STDERR_TAIL).trim();
        reject(
          new RuntimeError(
            `${this.name} ${sub} failed (${code ?? sig}): ${tail}`,
            [this.binary, ...argv],
            code,
            tail,
          ),
        );
      });
    });
  }

  /**
   * `create --bundle B --pid-file P --log L id`, with the container's stdout
   * and stderr on `consoleLog` (appended). runc's own messages go to L and
   * are folded into the error on failure.
   */
  async create(id: string, opts: { bundle: string; pidFile: string; consoleLog: string; runtimeLog: string }): Promise<void> {
    const fd = openSync(opts.consoleLog, "a", 0o600);
    try {
      await this.run(
        "create",
        ["--bundle", opts.bundle, "--pid-file", opts.pidFile, id],
        { out: fd, err: fd },
      ).catch((e: unknown) => {
        if (e instanceof RuntimeError) {
          let tail = "";
          try {
            tail = readFileSync(opts.consoleLog, "utf8").slice(-STDERR_TAIL).trim();
          } catch {
            /* none */
          }
          throw new RuntimeError(`${this.name} create failed (${e.exitStatus}): ${tail}`, e.argv, e.exitStatus, tail);
        }
        throw e;
      });
    } finally {
      closeSync(fd);
    }
  }

  async start(id: string): Promise<void> {
    await this.run("start", [id]);
  }

  /** null when the runtime does not know the container. */
  async state(id: string): Promise<ContainerState | null> {
    try {
      const { stdout } = await this.run("state", [id]);
      const s = JSON.parse(stdout) as Partial<ContainerState>;
      if (typeof s.id !== "string" || typeof s.status !== "string") return null;
      return { id: s.id, pid: typeof s.pid === "number" ? s.pid : 0, status: s.status, bundle: String(s.bundle ?? "") };
    } catch (e) {
      if (e instanceof RuntimeError && /does not exist|not exist|No such file/i.test(e.stderrTail)) return null;
      throw e;
    }
  }

  async kill(id: string, signal: string | number = "KILL", all = true): Promise<void> {
    const args = all ? ["--all", id, String(signal)] : [id, String(signal)];
    await this.run("kill", args);
  }

  async delete(id: string, force = true): Promise<void> {
    try {
      await this.run("delete", force ? ["--force", id] : [id]);
    } catch (e) {
      if (e instanceof RuntimeError && /does not exist|not exist|No such file/i.test(e.stderrTail)) return;
      throw e;
    }
  }

  async list(): Promise<ContainerState[]> {
    const { stdout } = await this.run("list", ["--format", "json"]);
    const v = JSON.parse(stdout || "null") as ContainerState[] | null;
    return Array.isArray(v) ? v : [];
  }
}
