// Running host commands: timed, bounded, and killed by pid on timeout.
import { spawn, type SpawnOptions } from "node:child_process";

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From spawn to exit, ms. */
  ms: number;
}

export interface RunOptions {
  timeoutMs?: number;
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** "ignore": the child's stdio is /dev/null (for daemons that inherit it). */
  stdio?: "pipe" | "ignore";
}

/** Runs argv to completion; never throws for a non-zero exit (see check()). */
export function run(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const stdin = opts.input === undefined ? "ignore" : "pipe";
    const spawnOpts: SpawnOptions = { stdio: opts.stdio === "ignore" ? "ignore" : [stdin, "pipe", "pipe"], env: opts.env ?? process.env, cwd: opts.cwd };
    const t0 = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), spawnOpts);
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => (stdout = (stdout + d).slice(-1 << 20)));
    child.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr = (stderr + d).slice(-1 << 16)));
    const timer = setTimeout(() => {
      if (child.pid) process.kill(child.pid, "SIGKILL");
    }, opts.timeoutMs ?? 60_000);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 });
    });
    if (child.stdin) {
      child.stdin.on("error", () => {}); // EPIPE when the child exits without reading: not our failure
      child.stdin.end(opts.input);
    }
  });
}

/** run() that throws unless the exit status is 0. */
export async function check(argv: string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) {
    throw new Error(`${argv.join(" ")} exited ${r.code ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  }
  return r;
}

/** First line of `argv`'s output, or null when it cannot run. */
export async function versionOf(argv: string[]): Promise<string | null> {
  try {
    const r = await run(argv, { timeoutMs: 10_000 });
    return r.code === 0 ? (r.stdout || r.stderr).split("\n")[0]!.trim() : null;
  } catch {
    return null;
  }
}
