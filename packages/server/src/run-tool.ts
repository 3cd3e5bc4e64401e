// Running a host tool (ip, nft, mount, mkfs, sbx-idmap): argv, never a shell
// string; stdout is the result, a failure carries the exit code and the tail
// of stderr in the caller's own error class.
import { spawn } from "node:child_process";

export type ToolError = (message: string, stderrTail: string) => Error;

export function runTool(
  cmd: string,
  args: string[],
  opts: { cwd?: string; input?: string },
  toError: ToolError,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    });
    let out = "";
    let err = "";
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (out += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (err = (err + d).slice(-4000)));
    child.on("error", (e) => reject(toError(`${cmd}: ${e.message}`, "")));
    child.on("close", (code) => {
      if (code === 0) resolve(out);
      else reject(toError(`${cmd} ${args.join(" ")} failed (${code}): ${err.trim()}`, err.trim()));
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
  });
}
