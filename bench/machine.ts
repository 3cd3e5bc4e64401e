// The machine a run was made on, and what else was running on it.
import { readFileSync, readdirSync } from "node:fs";
import * as os from "node:os";
import { versionOf } from "./proc.js";

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryMiB: number;
  kernel: string;
  os: string;
  cgroups: string;
  runc: string | null;
  crun: string | null;
  podman: string | null;
  node: string;
  date: string;
  loadAverage: number[];
  /** Other `sbx serve` processes running during the run (noise). */
  otherSbxServers: number;
}

export function meminfo(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync("/proc/meminfo", "utf8").split("\n")) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?/.exec(line);
    if (m) out[m[1]!] = Number(m[2]) * 1024;
  }
  return out;
}

function osName(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "linux";
  } catch {
    return "linux";
  }
}

function cgroupLayout(): string {
  try {
    readFileSync("/sys/fs/cgroup/cgroup.controllers");
    return "v2";
  } catch {
    let hybrid = "";
    try {
      hybrid = readFileSync("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").trim();
    } catch {
      /* pure v1 */
    }
    return hybrid ? `v1 + v2 (hybrid; v2 has ${hybrid})` : "v1";
  }
}

/** `sbx serve` processes other than the ones in `mine`. */
export function otherSbxServers(mine: number[] = []): number {
  let n = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    if (mine.includes(Number(pid))) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv.some((a) => a.endsWith("cli/dist/main.js")) && argv.includes("serve")) n++;
    } catch {
      /* gone */
    }
  }
  return n;
}

export async function describeMachine(): Promise<Machine> {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length,
    memoryMiB: Math.round(os.totalmem() / (1 << 20)),
    kernel: os.release(),
    os: osName(),
    cgroups: cgroupLayout(),
    runc: await versionOf(["runc", "--version"]),
    crun: await versionOf(["crun", "--version"]),
    podman: await versionOf(["podman", "--version"]),
    node: process.version,
    date: new Date().toISOString(),
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
    otherSbxServers: otherSbxServers(),
  };
}
