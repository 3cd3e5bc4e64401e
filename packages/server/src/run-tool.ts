// Running a host tool (runc, ip, nft, mount, mkfs, sbx-idmap): argv, never a
// shell string; stdout is the result, a failure carries the exit code and the
// tail of stderr in the caller's own error class.
//
// Who forks is a ToolRunner. By default the server forks itself (node's
// spawn), which on this project's machine blocks the event loop 7–17 ms per
// process, growing with the server's memory. A server started by compose()
// hands its tools to the host spawner (host-spawner.ts) instead.
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";

export interface ToolRun {
  cwd?: string;
  /** Written to the tool's stdin, which is then closed. */
  input?: string;
  /** Append the tool's stdout and stderr to this file instead of capturing them. */
  outputFile?: string;
}

export interface ToolResult {
  /** The exit code, or null when a signal ended the tool. */
  code: number | null;
  signal: string | null;
  stdout: string;
  /** The last few KiB of stderr. */
  stderr: string;
}

export interface ToolRunner {
  run(cmd: string, args: string[], opts: ToolRun): Promise<ToolResult>;
}

/** Captured output is capped; errors keep the tail of stderr. */
export const STDOUT_CAP = 1 << 20;
export const STDERR_TAIL = 4000;

/** node's own spawn: a fork of the server. */
export const directRunner: ToolRunner = {
  run(cmd, args, opts) {
    return new Promise((resolve, reject) => {
      const fd = opts.outputFile === undefined ? undefined : openSync(opts.outputFile, "a", 0o600);
      let child;
      try {
        child = spawn(cmd, args, {
          stdio: [opts.input === undefined ? "ignore" : "pipe", fd ?? "pipe", fd ?? "pipe"],
          ...(opts.cwd ? { cwd: opts.cwd } : {}),
        });
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
      let out = "";
      let err = "";
      child.stdout?.setEncoding("utf8").on("data", (d: string) => {
        if (out.length < STDOUT_CAP) out += d;
      });
      child.stderr?.setEncoding("utf8").on("data", (d: string) => (err = (err + d).slice(-STDERR_TAIL)));
      child.on("error", reject);
      child.on("close", (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
      if (opts.input !== undefined) child.stdin!.end(opts.input);
    });
  },
};

let runner: ToolRunner = directRunner;

/** Every later tool goes through `r` (the host spawner, or back to directRunner). */
export function setToolRunner(r: ToolRunner): void {
  runner = r;
}

export function toolRunner(): ToolRunner {
  return runner;
}

export type ToolError = (message: string, stderrTail: string) => Error;

/** Runs a tool that must succeed; resolves with its stdout. */
export async function runTool(cmd: string, args: string[], opts: ToolRun, toError: ToolError): Promise<string> {
  let r: ToolResult;
  try {
    r = await runner.run(cmd, args, opts);
  } catch (e) {
    throw toError(`${cmd}: ${(e as Error).message}`, "");
  }
  if (r.code === 0) return r.stdout;
  const err = r.stderr.trim();
  throw toError(`${cmd} ${args.join(" ")} failed (${r.code ?? r.signal}): ${err}`, err);
}
