// Builds a sandbox's OCI runtime config (bundle/config.json). Pure: no I/O.
// Every name → value mapping is in a table at the top (runc's specconv is the
// model); toOciSpec only combines tables with the per-sandbox input.

import type { ImageConfig } from "../core/ports.js";
import { seccompProfile, type SeccompProfile } from "./seccomp.js";

// ---------------------------------------------------------------- tables

/** Where things live inside the sandbox. */
export const IN_SANDBOX = {
  runDir: "/.sbx",
  /** agent/build, bind-mounted read-only (OciHostInfo.binDir). */
  binDir: "/.sbx/bin",
  agent: "/.sbx/bin/sbx-agent",
  /** `sbx-tcp-probe PORT [HOST]`: exit 0 iff a TCP connect succeeds within 1 s (readiness probes). */
  tcpProbe: "/.sbx/bin/sbx-tcp-probe",
  /** The in-sandbox security probe (test/security/). */
  probe: "/.sbx/bin/sbx-probe",
} as const;

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Environment every sandbox starts from (image env, then the spec's env override it). */
export const DEFAULT_ENV: Readonly<Record<string, string>> = {
  PATH: DEFAULT_PATH,
  HOME: "/root",
};

/** The 11 capabilities (Podman's default set minus NET_RAW, MKNOD, AUDIT_WRITE). */
export const CAPABILITIES = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_NET_BIND_SERVICE",
  "CAP_SETFCAP",
  "CAP_SETGID",
  "CAP_SETPCAP",
  "CAP_SETUID",
  "CAP_SYS_CHROOT",
] as const;

export const NAMESPACES = ["pid", "ipc", "uts", "mount", "user", "cgroup", "network"] as const;

export const RLIMITS = [
  { type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 },
] as const;

/** Size of the per-sandbox id range mapped into the user namespace. */
export const ID_RANGE = 65536;

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** Kernel filesystems mounted in every sandbox, in order. */
export const BASE_MOUNTS: readonly OciMount[] = [
  { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
  { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
  // no gid= option: under a user namespace the host's tty gid may not be mapped.
  { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
  { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=64m"] },
  { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
  { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
  // Under cgroup v1 + userns runc builds a tmpfs here; without "ro" it is writable.
  { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
  { destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", "size=512m"] },
];

export const CGROUP_BIND_OPTIONS = ["rbind", "ro", "nosuid", "nodev", "noexec"] as const;

export const MASKED_PATHS = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/interrupts",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
] as const;

export const READONLY_PATHS = [
  "/proc/bus",
  "/proc/fs",
  "/proc/irq",
  "/proc/sys",
  "/proc/sysrq-trigger",
] as const;

export interface OciDeviceRule {
  allow: boolean;
  type?: "a" | "c" | "b";
  major?: number;
  minor?: number;
  access: string;
}

/** Device cgroup: deny all, then the standard character devices. */
export const DEVICE_RULES: readonly OciDeviceRule[] = [
  { allow: false, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 3, access: "rwm" }, // null
  { allow: true, type: "c", major: 1, minor: 5, access: "rwm" }, // zero
  { allow: true, type: "c", major: 1, minor: 7, access: "rwm" }, // full
  { allow: true, type: "c", major: 1, minor: 8, access: "rwm" }, // random
  { allow: true, type: "c", major: 1, minor: 9, access: "rwm" }, // urandom
  { allow: true, type: "c", major: 5, minor: 0, access: "rwm" }, // tty
  { allow: true, type: "c", major: 5, minor: 2, access: "rwm" }, // ptmx
  { allow: true, type: "c", major: 136, access: "rwm" }, // pts/*
];

export const CPU_PERIOD_US = 100_000;

// ---------------------------------------------------------------- input

/** Per-sandbox, from the RuntimeSpec. */
export interface OciSpecInput {
  sandboxId: string;
  hostname: string;
  /** Entrypoint argv, run by the agent as exec "entry"; none = the agent idles. */
  command?: string[];
  image: ImageConfig;
  /** The image's USER, resolved: the agent runs the entrypoint and execs as it (--user). */
  user?: { uid: number; gid: number; home?: string };
  env: Record<string, string>;
  workdir?: string;
  memoryLimitBytes: number;
  pidsLimit: number;
  cpuLimit?: number;
  /** Relative CPU weight in cores (cgroup cpu shares = cores × 1024). */
  cpu?: number;
  memoryReservationBytes?: number;
  /** Volumes: host sources (already idmapped for this sandbox) → container paths. */
  volumes?: { source: string; destination: string; readOnly: boolean }[];
}

/** Host-side facts: paths, id range, what the host supports. */
export interface OciHostInfo {
  rootfsPath: string;
  runDir: string;
  agentPath: string;
  /** Host path of sbx-tcp-probe, bound read-only beside the agent. */
  tcpProbePath: string;
  resolvConfPath: string;
  hostsPath: string;
  hostnamePath: string;
  uidBase: number;
  /**
   * Network namespace to join. Undefined = the runtime makes a new one, owned by
   * the sandbox's user namespace (needed for sysfs to mount; the server wires it
   * afterwards from the host).
   */
  netnsPath?: string;
  /**
   * Directory holding sbx-agent and the probes, bind-mounted read-only at
   * IN_SANDBOX.binDir. Without it `agentPath` and `tcpProbePath` are bound one by one.
   */
  binDir?: string;
  /**
   * Host paths masked besides MASKED_PATHS: the per-CPU
   * /sys/devices/system/cpu/cpu<N>/thermal_throttle dirs that exist on this
   * host (hostMaskedPaths() in local-backend.ts lists them).
   */
  extraMaskedPaths?: string[];
  /** e.g. "/sbx/<id>" (cgroupfs driver, relative to each hierarchy's root). */
  cgroupsPath: string;
  /** memory.memsw.* exists (cgroup v1 swap accounting). */
  swapAccounting: boolean;
  /**
   * cgroup v1 hosts: mount /sys/fs/cgroup as read-only binds instead of the
   * runtime's own cgroup mount. runc 1.1 (v1 + userns) puts the hierarchies
   * on a tmpfs it leaves writable even with "ro"; here the parent is a ro bind
   * of an empty host dir (`parent`, holding one empty dir per hierarchy) and
   * each hierarchy a ro bind of the sandbox's own cgroup dir.
   */
  cgroupV1?: { parent: string; hierarchies: { name: string; source: string }[] };
  /**
   * The runtime runs without a cgroup manager (crun on a hybrid host): no
   * cgroup limits, and /sys/fs/cgroup is an empty read-only tmpfs.
   */
  noCgroups?: boolean;
}

// ---------------------------------------------------------------- build

function mergeEnv(...layers: (Record<string, string> | string[])[]): string[] {
  const out = new Map<string, string>();
  for (const layer of layers) {
    const entries: [string, string][] = Array.isArray(layer)
      ? layer.flatMap((kv): [string, string][] => {
          const i = kv.indexOf("=");
          return i > 0 ? [[kv.slice(0, i), kv.slice(i + 1)]] : [];
        })
      : Object.entries(layer);
    for (const [k, v] of entries) {
      out.delete(k); // keep insertion order = last writer's position
      out.set(k, v);
    }
  }
  return [...out].map(([k, v]) => `${k}=${v}`);
}

export interface OciSpec {
  ociVersion: string;
  process: Record<string, unknown>;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: Record<string, unknown> & { seccomp: SeccompProfile };
  [k: string]: unknown;
}

export function toOciSpec(input: OciSpecInput, host: OciHostInfo): OciSpec {
  const args = [IN_SANDBOX.agent, "--run-dir", IN_SANDBOX.runDir];
  if (input.user) args.push("--user", `${input.user.uid}:${input.user.gid}`);
  if (input.command && input.command.length > 0) args.push("--", ...input.command);

  const caps = [...CAPABILITIES];
  const memory: Record<string, number> = { limit: input.memoryLimitBytes };
  if (host.swapAccounting) memory.swap = input.memoryLimitBytes;
  const resources: Record<string, unknown> = {
    devices: DEVICE_RULES.map((d) => ({ ...d })),
    memory,
    pids: { limit: input.pidsLimit },
  };
  const cpu: Record<string, number> = {};
  if (input.cpuLimit !== undefined && input.cpuLimit > 0) {
    cpu.quota = Math.max(1000, Math.round(input.cpuLimit * CPU_PERIOD_US));
    cpu.period = CPU_PERIOD_US;
  }
  if (input.cpu !== undefined && input.cpu > 0) cpu.shares = Math.max(2, Math.round(input.cpu * 1024));
  if (Object.keys(cpu).length > 0) resources.cpu = cpu;
  if (input.memoryReservationBytes !== undefined) memory.reservation = Math.min(input.memoryReservationBytes, input.memoryLimitBytes);

  const base = BASE_MOUNTS.map((m) => ({ ...m, options: [...m.options] }));
  const cgroupAt = base.findIndex((m) => m.type === "cgroup");
  if (host.noCgroups && cgroupAt >= 0) {
    base.splice(cgroupAt, 1, {
      destination: "/sys/fs/cgroup",
      type: "tmpfs",
      source: "tmpfs",
      options: ["nosuid", "noexec", "nodev", "ro", "size=4k", "mode=555"],
    });
  } else if (host.cgroupV1 && cgroupAt >= 0) {
    base.splice(
      cgroupAt,
      1,
      { destination: "/sys/fs/cgroup", type: "bind", source: host.cgroupV1.parent, options: [...CGROUP_BIND_OPTIONS] },
      ...host.cgroupV1.hierarchies.map((h) => ({
        destination: `/sys/fs/cgroup/${h.name}`,
        type: "bind",
        source: h.source,
        options: [...CGROUP_BIND_OPTIONS],
      })),
    );
  }
  const mounts: OciMount[] = [
    ...base,
    { destination: IN_SANDBOX.runDir, type: "bind", source: host.runDir, options: ["rbind", "rw", "nosuid", "nodev"] },
    ...(host.binDir
      ? [{ destination: IN_SANDBOX.binDir, type: "bind", source: host.binDir, options: ["rbind", "ro", "nosuid", "nodev"] }]
      : [
          { destination: IN_SANDBOX.agent, type: "bind", source: host.agentPath, options: ["bind", "ro", "nosuid", "nodev"] },
          { destination: IN_SANDBOX.tcpProbe, type: "bind", source: host.tcpProbePath, options: ["bind", "ro", "nosuid", "nodev"] },
        ]),
    { destination: "/etc/resolv.conf", type: "bind", source: host.resolvConfPath, options: ["bind", "ro", "nosuid", "nodev", "noexec"] },
    { destination: "/etc/hosts", type: "bind", source: host.hostsPath, options: ["bind", "ro", "nosuid", "nodev", "noexec"] },
    { destination: "/etc/hostname", type: "bind", source: host.hostnamePath, options: ["bind", "ro", "nosuid", "nodev", "noexec"] },
    ...(input.volumes ?? []).map((v) => ({
      destination: v.destination,
      type: "bind",
      source: v.source,
      options: ["rbind", v.readOnly ? "ro" : "rw", "nosuid", "nodev"],
    })),
  ];

  const namespaces = NAMESPACES.map((type) =>
    type === "network" && host.netnsPath ? { type, path: host.netnsPath } : { type },
  );

  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: mergeEnv(DEFAULT_ENV, input.user?.home ? { HOME: input.user.home } : {}, input.image.env, input.env),
      cwd: input.workdir || input.image.workdir || "/",
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: RLIMITS.map((r) => ({ ...r })),
      noNewPrivileges: true,
    },
    root: { path: host.rootfsPath, readonly: false },
    hostname: input.hostname,
    mounts,
    linux: {
      uidMappings: [{ containerID: 0, hostID: host.uidBase, size: ID_RANGE }],
      gidMappings: [{ containerID: 0, hostID: host.uidBase, size: ID_RANGE }],
      namespaces,
      resources,
      cgroupsPath: host.cgroupsPath,
      maskedPaths: [...MASKED_PATHS, ...(host.extraMaskedPaths ?? [])],
      readonlyPaths: [...READONLY_PATHS],
      seccomp: seccompProfile(),
    },
  };
}
