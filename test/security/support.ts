// Helpers shared by test/security and test/reliability: run the in-sandbox
// probe, and read a sandbox's host-side facts (its PID 1, state.json, a
// process's /proc status) the way an auditor on the host would.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Sandbox } from "sbx";

export const PROBE = "/.sbx/bin/sbx-probe";

export interface ProbeResult {
  code: number;
  stdout: string;
  stderr: string;
  /** check name → "ok" | "FAIL" */
  checks: Map<string, string>;
  /** "NAME detail" of every failed check */
  failed: string[];
}

/** Runs sbx-probe in the sandbox and parses its `check NAME ok|FAIL detail` lines. */
export async function runProbe(sb: Sandbox, args: string[], timeoutMs = 60_000): Promise<ProbeResult> {
  const p = await sb.exec([PROBE, ...args], { timeoutMs });
  const [stdout, stderr, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
  const checks = new Map<string, string>();
  const failed: string[] = [];
  for (const line of stdout.split("\n")) {
    const m = /^check (\S+) (ok|FAIL) ?(.*)$/.exec(line);
    if (!m) continue;
    checks.set(m[1]!, m[2]!);
    if (m[2] === "FAIL") failed.push(`${m[1]} ${m[3]}`);
  }
  return { code, stdout, stderr, checks, failed };
}

export interface HostSandboxState {
  uidBase: number;
  slot: number;
  address?: string;
}

export function sandboxState(dataDir: string, sandboxId: string): HostSandboxState {
  return JSON.parse(readFileSync(join(dataDir, "sandboxes", sandboxId, "state.json"), "utf8")) as HostSandboxState;
}

/** Host pid of the sandbox's PID 1, from the runtime's own state. */
export function hostPid1(dataDir: string, sandboxId: string, runtime = "runc"): number {
  const out = execFileSync(runtime, ["--root", join(dataDir, "runc"), "state", sandboxId], { encoding: "utf8" });
  const pid = (JSON.parse(out) as { pid: number }).pid;
  if (!(pid > 0)) throw new Error(`no pid for ${sandboxId}: ${out}`);
  return pid;
}

/** /proc/<pid>/status as name → value. */
export function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, "utf8").split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** VmRSS of a process, in KiB. */
export function rssKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? NaN);
}
