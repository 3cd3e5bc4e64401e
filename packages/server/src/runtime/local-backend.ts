// The local OCI Backend: one runc (or crun) container per sandbox, sbx-agent
// as its PID 1, rootfs = overlay over idmapped image layers, its own user,
// pid, mount, ipc, uts, cgroup and network namespaces.
//
// create: state.json (slot → uid base, address) → the writable disk (a spare
// from the disk pool: the sandbox's dir arrives with it) → idmapped lowers +
// overlay (one helper run) → /etc files + bundle → runtime create (makes the
// namespaces; the netns is owned by the sandbox's userns so sysfs can be
// mounted) → netns named and wired from the host → runtime start → agent
// HELLO. A sandbox without an entrypoint is created and started by one
// `runtime run --detach`, and its network is wired while the agent answers.
// Any failure undoes the steps done, in reverse order.

import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, chmodSync, writeFileSync, rmdirSync, readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Backend, ExecRequest, ExitStatus, RuntimeSandbox, RuntimeSpec, StreamName } from "../core/ports.js";
import { AgentClient } from "./agent-client.js";
import { ProcessWatch, procStartTime } from "./proc-watch.js";
import { EXEC_ID_RE, STDIN_BUFFER_MAX } from "./agent/proto.js";
import { toOciSpec } from "./oci-spec.js";
import { DiskPool } from "./disk-pool.js";
import { defaultTurns, Turns } from "./turns.js";
import { assertHostSpace, DEFAULT_DISK, diskLeftovers, loopBackings, makeDisk, removeDisk, retainOutputs, type DiskOptions } from "./disk.js";
import { parseExit } from "./exit-file.js";
import { mountVolumes } from "./volume-mounts.js";
import { chooseRuntime, OciRuntime, RuntimeError, type ContainerState, type RuntimeName } from "./runc.js";
import {
  SANDBOX_ID_RE,
  releaseClaimsOf,
  claimSlot,
  mountRootfs,
  mountsUnder,
  releaseSlot,
  readFileNoFollow,
  readState,
  sandboxPaths,
  sandboxesDir,
  scanStates,
  reclaimLive,
  uidBaseOf,
  unmountAll,
  writeState,
  type SandboxPaths,
  type SandboxState,
} from "./rootfs.js";
import {
  claimAddress,
  releaseAddress,
  DEFAULT_NET,
  ensureHostNetwork,
  hostnameFile,
  hostsFile,
  resolvConf,
  setupSandboxNetwork,
  teardownSandboxNetwork,
  hostVethName,
  netnsPath,
  type NetConfig,
  DnsForwarder,
  hostResolvers,
  type Upstream,
} from "../net/index.js";

export interface LocalBackendOptions {
  dataDir: string;
  /** Directory holding sbx-agent and sbx-idmap. */
  agentDir: string;
  runtime?: RuntimeName;
  /** The API's port (reserved for the DNS forwarder / tunnels; unused so far). */
  serverPort?: number;
  log?: (m: string) => void;
  net?: NetConfig;
  /** How long create waits for the agent's HELLO. */
  agentStartTimeoutMs?: number;
  /** DEVELOPMENT ONLY: mount image layers without idmapping (see rootfs.ts). */
  unsafeNoIdmap?: boolean;
  /**
   * Each sandbox's writable disk (disk.ts): its size, how much output is kept
   * after destroy, the host's reserve. Default DEFAULT_DISK. `false`: no disk
   * image, the upper layer and run dir go straight to the host's disk
   * (UNLIMITED: development only; logged).
   */
  disk?: Partial<DiskOptions> | false;
  /**
   * TESTS ONLY: SIGKILL this server process when create reaches the named
   * step (one of CREATE_STEPS), to prove a restarted server rolls it back.
   */
  faultInjection?: { killAtStep?: string };
  /** Where the gateway's DNS forwarder sends queries; default: the host's resolv.conf. */
  dnsUpstreams?: Upstream[];
  /** Formatted spare disks kept ready (disk-pool.ts); default 2, 0 for none. */
  diskPoolSize?: number;
  /** How many creates, and how many destroys, run at once (turns.ts); default defaultTurns(). */
  concurrency?: number;
  /**
   * How often waitExit looks at a sandbox's PID 1 between wake-ups, ms
   * (default EXIT_POLL_MS). Tests set it long, to see that the wake-up of a
   * dropped agent connection alone suffices.
   */
  exitPollMs?: number;
}

/**
 * waitExit's fallback look at PID 1. PID 1 is the agent, and its connection
 * drops as it dies, which wakes waitExit at once; the look only covers a
 * sandbox whose agent was not connected. It was 100 ms, which with 500 idle
 * sandboxes cost the server ~15 % of a core in reads of /proc.
 */
const EXIT_POLL_MS = 1000;
/** How many sandboxes adoptAll reattaches at once. */
const ADOPT_WIDTH = 8;
/** When waitExit looks after a drop: the socket closes a moment before the kernel marks the process dead. */
const EXIT_LOOKS_AFTER_DROP_MS = [0, 5, 20, 50, 100, 250, 500, 1000];

/**
 * The steps of create, in order, as faultInjection.killAtStep names them; the
 * kill happens right after the step's side effects. Image unpack happens
 * before the backend is called (images/), so it has no step here.
 */
export const CREATE_STEPS = ["state", "disk", "rootfs", "bundle", "runtime-create", "network", "runtime-start", "agent"] as const;

/** Milliseconds per create step, for benchmarks and logs. */
export interface CreateTimings {
  /** Waiting for a turn (turns.ts); not in totalMs. */
  queueMs: number;
  /** Taking a spare disk, or making and mounting one. */
  diskMs: number;
  /** Idmapped lowers + overlay. */
  rootfsMs: number;
  bundleMs: number;
  runtimeCreateMs: number;
  netnsMs: number;
  runtimeStartMs: number;
  agentHelloMs: number;
  totalMs: number;
}

const STDIN_CHUNK = STDIN_BUFFER_MAX / 2;

/** cgroup v1 (hybrid) hosts: names of the hierarchies mounted at /sys/fs/cgroup/<name>; null on pure v2. */
function cgroupV1Hierarchies(): string[] | null {
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) return null;
  const names: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    const sep = f.indexOf("-");
    if (sep < 0) continue;
    const fstype = f[sep + 1];
    const m = /^\/sys\/fs\/cgroup\/([^/]+)$/.exec(f[4] ?? "");
    if (m && (fstype === "cgroup" || fstype === "cgroup2")) names.push(m[1]!);
  }
  return names;
}

function cgroupDirs(sandboxId: string): string[] {
  const rel = join("sbx", sandboxId);
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) return [join("/sys/fs/cgroup", rel)];
  let hier: string[] = [];
  try {
    hier = readdirSync("/sys/fs/cgroup");
  } catch {
    /* none */
  }
  return hier.map((h) => join("/sys/fs/cgroup", h, rel));
}

/**
 * The per-CPU thermal_throttle dirs of this host (none on most VMs): masked
 * in every sandbox, as Docker and Podman do.
 */
function hostMaskedPaths(): string[] {
  const base = "/sys/devices/system/cpu";
  try {
    return readdirSync(base)
      .filter((n) => /^cpu\d+$/.test(n))
      .map((n) => join(base, n, "thermal_throttle"))
      .filter((p) => existsSync(p));
  } catch {
    return [];
  }
}

/**
 * runc 1.1 appends its own defaults after the spec's device rules: mknod of
 * any device ("c *:* m", "b *:* m") and /dev/net/tun ("c 10:200 rwm", dropped
 * in runc 1.2). No such node exists in a sandbox and mknod is refused
 * (no CAP_MKNOD, user namespace), but the cgroup should say so too: under
 * cgroup v1 a write to devices.deny removes them. (cgroup v2 devices are an
 * eBPF program runc owns; nothing to do there.)
 */
const RUNC_EXTRA_DEVICE_RULES = ["c *:* m", "b *:* m", "c 10:200 rwm"];
function tightenDeviceCgroup(sandboxId: string): void {
  const deny = join("/sys/fs/cgroup/devices/sbx", sandboxId, "devices.deny");
  if (!existsSync(deny)) return;
  for (const rule of RUNC_EXTRA_DEVICE_RULES) writeFileSync(deny, rule);
}

function oomKills(sandboxId: string): number {
  const v2 = join("/sys/fs/cgroup/sbx", sandboxId, "memory.events");
  const v1 = join("/sys/fs/cgroup/memory/sbx", sandboxId, "memory.oom_control");
  for (const f of [v2, v1]) {
    try {
      const m = /(?:^|\n)oom_kill (\d+)/.exec(readFileSync(f, "utf8"));
      if (m) return Number(m[1]);
    } catch {
      /* next */
    }
  }
  return 0;
}

class LocalSandbox implements RuntimeSandbox {
  private listeners: ((execId: string, st: ExitStatus) => void)[] = [];
  private delivered = new WeakMap<(execId: string, st: ExitStatus) => void, Set<string>>();
  private exitPromise: Promise<{ code: number; oom: boolean }> | null = null;
  private killed = false;
  private destroyed = false;
  /** Its PID 1, watched by an open /proc file (asked by waitExit when the agent's connection drops, and once a second). */
  private readonly watch: ProcessWatch;
  timings?: CreateTimings;

  constructor(
    readonly sandboxId: string,
    private readonly paths: SandboxPaths,
    private readonly state: SandboxState,
    private readonly pid: number,
    startTime: string | null,
    private readonly agent: AgentClient | null,
    private readonly backend: LocalBackend,
  ) {
    this.watch = new ProcessWatch(pid, startTime);
    agent?.onExit((id, st) => this.emit(id, st));
  }

  get uidBase(): number {
    return this.state.uidBase;
  }
  get hostPid(): number {
    return this.pid;
  }
  get address(): string | undefined {
    return this.state.address;
  }

  /** Image builds (core/builds.ts) capture the upper dir as a layer after kill(). */
  layerCapture(): { upperDir: string; uidBase: number } {
    return { upperDir: this.paths.upper, uidBase: this.state.uidBase };
  }

  private emit(execId: string, st: ExitStatus): void {
    for (const l of this.listeners) {
      const seen = this.delivered.get(l)!;
      if (seen.has(execId)) continue;
      seen.add(execId);
      try {
        l(execId, st);
      } catch {
        /* a listener's problem */
      }
    }
  }

  /** Emits exits recorded in files that listeners have not heard of (adopt, reconnect). */
  replayExits(): void {
    let ids: string[] = [];
    try {
      ids = readdirSync(join(this.paths.run, "procs")).filter((n) => EXEC_ID_RE.test(n));
    } catch {
      return;
    }
    for (const id of ids) {
      const st = this.readExit(id);
      if (st) this.emit(id, st);
    }
  }

  private readExit(execId: string): ExitStatus | null {
    const b = readFileNoFollow(this.paths.run, `procs/${execId}/exit`, 64);
    return b ? parseExit(b.toString("utf8")) : null;
  }

  private requireAgent(): AgentClient {
    if (!this.agent || this.destroyed) throw new RuntimeError(`sandbox ${this.sandboxId} is not running`, [], null, "");
    return this.agent;
  }

  async exec(req: ExecRequest): Promise<void> {
    await this.requireAgent().exec({
      id: req.execId,
      argv: req.argv,
      env: req.env,
      ...(req.workdir ? { cwd: req.workdir } : {}),
      timeoutMs: req.timeoutMs,
      stdoutNull: req.stdoutIgnore,
      stderrNull: req.stderrIgnore,
      ...(req.user ? { user: req.user } : {}),
    });
  }

  async writeStdin(execId: string, offset: number, data: Uint8Array): Promise<number> {
    const agent = this.requireAgent();
    let pos = 0;
    let total = offset;
    for (;;) {
      const chunk = data.subarray(pos, pos + STDIN_CHUNK);
      total = await agent.stdin(execId, offset + pos, chunk);
      const end = offset + pos + chunk.length;
      // Less than sent: the agent's buffer is full, the caller retries the rest.
      if (total < end) return total;
      pos = total - offset;
      if (pos >= data.length) return total;
    }
  }

  async closeStdin(execId: string): Promise<void> {
    await this.requireAgent().stdinClose(execId);
  }

  async signal(execId: string, signal: number): Promise<void> {
    await this.requireAgent().signal(execId, signal);
  }

  outputPath(execId: string, stream: StreamName): string {
    if (!EXEC_ID_RE.test(execId)) throw new RuntimeError(`bad exec id ${JSON.stringify(execId)}`, [], null, "");
    if (stream !== "stdout" && stream !== "stderr") throw new RuntimeError(`bad stream ${String(stream)}`, [], null, "");
    return join(this.paths.run, "procs", execId, stream);
  }

  async execStatus(execId: string): Promise<ExitStatus | null> {
    if (!EXEC_ID_RE.test(execId)) return null;
    return this.readExit(execId);
  }

  onExecExit(listener: (execId: string, status: ExitStatus) => void): () => void {
    this.listeners.push(listener);
    this.delivered.set(listener, new Set());
    setImmediate(() => this.replayExits());
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
      this.delivered.delete(listener);
    };
  }

  isAlive(): boolean {
    return this.watch.alive();
  }

  waitExit(): Promise<{ code: number; oom: boolean }> {
    if (!this.exitPromise) {
      this.exitPromise = new Promise((resolve) => {
        let done = false;
        let poll: NodeJS.Timeout | undefined;
        const check = () => {
          if (done) return true;
          if (this.isAlive()) return false;
          done = true;
          clearInterval(poll);
          const entry = this.readExit("entry");
          const code = this.killed || !entry ? 137 : entry.code;
          // An OOM kill anywhere in the sandbox (an exec's) does not make a
          // later clean exit an OOM: only an end by SIGKILL after one.
          resolve({ code, oom: code === 137 && !this.killed && oomKills(this.sandboxId) > 0 });
          return true;
        };
        if (check()) return;
        this.agent?.onDrop(() => {
          for (const ms of EXIT_LOOKS_AFTER_DROP_MS) setTimeout(check, ms).unref();
        });
        poll = setInterval(check, this.agent ? this.backend.exitPollMs : 100);
        poll.unref();
      });
    }
    return this.exitPromise;
  }

  async kill(): Promise<void> {
    if (!this.isAlive()) return;
    this.killed = true;
    try {
      await this.backend.rt.kill(this.sandboxId, "KILL", true);
    } catch (e) {
      if (this.isAlive()) {
        // Last resort: PID 1 of the sandbox (its pid namespace dies with it).
        try {
          process.kill(this.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      }
      this.backend.log(`runtime kill ${this.sandboxId}: ${(e as Error).message}`);
    }
    const deadline = Date.now() + 10_000;
    while (this.isAlive()) {
      if (Date.now() > deadline) throw new RuntimeError(`sandbox ${this.sandboxId} did not die`, [], null, "");
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async destroy(): Promise<void> {
    if (this.isAlive()) await this.kill();
    this.destroyed = true;
    this.watch.close();
    this.agent?.close();
    await this.backend.cleanup(this.sandboxId);
  }
}

class LocalBackend implements Backend {
  readonly name: string;
  readonly rt: OciRuntime;
  private readonly net: NetConfig;
  private readonly reservedSlots = new Set<number>();
  private readonly reservedAddrs = new Set<string>();
  private hostNetReady: Promise<void> | null = null;
  private readonly cgroupV1 = cgroupV1Hierarchies();
  private readonly cgroupsDisabled: boolean;
  private readonly maskedExtra = hostMaskedPaths();
  private readonly disk: DiskOptions | null;
  private readonly diskPool: DiskPool | null;
  private readonly createTurns: Turns;
  private readonly destroyTurns: Turns;
  readonly log: (m: string) => void;
  /** How often a sandbox's waitExit looks at its PID 1 between wake-ups (LocalBackendOptions.exitPollMs). */
  readonly exitPollMs: number;

  constructor(private readonly opts: LocalBackendOptions) {
    const rtName = chooseRuntime(opts.runtime);
    // crun 1.8 refuses hybrid (v1 + v2) cgroup layouts; it runs here only
    // without a cgroup manager, i.e. WITHOUT memory, pids and CPU limits.
    this.cgroupsDisabled = rtName === "crun" && this.cgroupV1 !== null;
    this.rt = new OciRuntime(rtName, join(opts.dataDir, "runc"), rtName, this.cgroupsDisabled ? ["--cgroup-manager=disabled"] : []);
    this.name = `local-${rtName}`;
    this.net = opts.net ?? DEFAULT_NET;
    this.log = opts.log ?? (() => undefined);
    this.exitPollMs = opts.exitPollMs ?? EXIT_POLL_MS;
    this.disk = opts.disk === false ? null : { ...DEFAULT_DISK, ...(opts.disk ?? {}) };
    const spares = opts.diskPoolSize ?? 2;
    this.diskPool = this.disk && spares > 0 ? new DiskPool(join(opts.dataDir, "disk-pool"), this.disk.bytes, spares, this.log) : null;
    this.createTurns = new Turns(opts.concurrency ?? defaultTurns());
    this.destroyTurns = new Turns(opts.concurrency ?? defaultTurns());
    reclaimLive(opts.dataDir);
    this.dns = new DnsForwarder(opts.dnsUpstreams ?? hostResolvers(), this.log);
  }

  private readonly dns: DnsForwarder;

  async close(): Promise<void> {
    await this.diskPool?.close();
  }

  /** faultInjection: dies like a SIGKILLed server would, right here. */
  private step(name: (typeof CREATE_STEPS)[number]): void {
    if (this.opts.faultInjection?.killAtStep === name) {
      this.log(`fault injection: SIGKILL at create step "${name}"`);
      process.kill(process.pid, "SIGKILL");
    }
  }

  get agentPath(): string {
    return join(this.opts.agentDir, "sbx-agent");
  }
  get idmapPath(): string {
    return join(this.opts.agentDir, "sbx-idmap");
  }

  init(): void {
    for (const bin of [this.agentPath, join(this.opts.agentDir, "sbx-netwire")]) {
      if (!existsSync(bin)) throw new RuntimeError(`${bin} not found (run make -C agent)`, [], null, "");
    }
    if (!this.opts.unsafeNoIdmap && !existsSync(this.idmapPath)) {
      throw new RuntimeError(`sbx-idmap not found at ${this.idmapPath} (run make -C agent)`, [], null, "");
    }
    if (this.opts.unsafeNoIdmap) this.log("WARNING: unsafeNoIdmap: image layers are mounted without idmapping (development only)");
    if (this.cgroupsDisabled) {
      this.log("WARNING: crun on a cgroup v1/hybrid host runs with --cgroup-manager=disabled: sandboxes get NO memory, pids or CPU limits (use runc here)");
    }
    if (!this.disk) this.log("WARNING: disk: false: sandboxes write to the host's disk without a size limit (development only)");
    if (this.opts.faultInjection?.killAtStep) {
      if (!(CREATE_STEPS as readonly string[]).includes(this.opts.faultInjection.killAtStep)) {
        throw new RuntimeError(`faultInjection.killAtStep must be one of ${CREATE_STEPS.join(", ")}`, [], null, "");
      }
      this.log(`WARNING: fault injection: the server kills itself at create step "${this.opts.faultInjection.killAtStep}" (tests only)`);
    }
    // The sandbox's root (an unprivileged host uid) must be able to traverse
    // to its rootfs and bind sources: runc mounts them from inside the userns.
    mkdirSync(sandboxesDir(this.opts.dataDir), { recursive: true, mode: 0o711 });
    for (const d of [this.opts.dataDir, sandboxesDir(this.opts.dataDir)]) {
      const mode = statSync(d).mode & 0o777;
      if ((mode & 0o001) === 0) {
        chmodSync(d, mode | 0o001);
        this.log(`made ${d} traversable by sandbox uids (mode ${(mode | 0o001).toString(8)})`);
      }
    }
    mkdirSync(this.rt.root, { recursive: true, mode: 0o700 });
  }

  private ensureHostNet(): Promise<void> {
    if (!this.hostNetReady) {
      this.hostNetReady = ensureHostNetwork(this.net)
        .then(() =>
          // Names resolve through the gateway (resolv.conf inside points there).
          this.dns.start(this.net.gateway).catch((e: unknown) => this.log(`dns forwarder not started: ${String(e)}`)),
        )
        .catch((e: unknown) => {
        this.hostNetReady = null;
        throw e;
      });
    }
    return this.hostNetReady;
  }

  async create(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeSandbox> {
    return this.createTurns.run((queueMs) => this.createNow(spec, queueMs, signal), signal);
  }

  private async createNow(spec: RuntimeSpec, queueMs: number, signal?: AbortSignal): Promise<RuntimeSandbox> {
    const t0 = performance.now();
    const id = spec.sandboxId;
    const p = sandboxPaths(this.opts.dataDir, id);
    const prev = readState(p.state);
    if (existsSync(p.dir) && !(prev && prev.destroyed)) {
      throw new RuntimeError(`sandbox dir ${p.dir} already exists`, [], null, "");
    }
    const undo: (() => Promise<void> | void)[] = [];
    const timings: Partial<CreateTimings> = { queueMs };
    let slot = -1;
    let address: string | undefined;
    try {
      // Slot and address: chosen and persisted without yielding.
      const owner = `${p.dir}`;
      slot = claimSlot(owner, this.reservedSlots);
      this.reservedSlots.add(slot);
      const claimedSlot = slot;
      undo.push(() => releaseSlot(claimedSlot, owner));
      if (!spec.blockNetwork) {
        const ip = claimAddress(owner, this.reservedAddrs, this.net);
        address = ip;
        this.reservedAddrs.add(ip);
        undo.push(() => releaseAddress(ip, owner));
      }
      const hostname = id.slice(0, 63);
      const state: SandboxState = {
        version: 1,
        sandboxId: id,
        slot,
        uidBase: uidBaseOf(slot),
        runtime: this.rt.name,
        blockNetwork: spec.blockNetwork,
        ...(address ? { address } : {}),
        hostname,
        layerCount: spec.image.layers.length,
        createdAt: new Date().toISOString(),
      };
      // A spare disk from the pool arrives as the sandbox's whole dir, its
      // state.json written in first; else the dir is made here and its disk below.
      if (this.disk) assertHostSpace(sandboxesDir(this.opts.dataDir), this.disk);
      const td = performance.now();
      const spare = !existsSync(p.dir) && !!this.diskPool?.takeAs(p.dir, (dir) => writeState(join(dir, "state.json"), state));
      if (!spare) {
        mkdirSync(p.dir, { recursive: true, mode: 0o711 });
        writeState(p.state, state);
      }
      timings.diskMs = performance.now() - td;
      undo.push(() => rmSync(p.dir, { recursive: true, force: true }));
      // Removed after unmountAll (registered below) has unmounted the overlay.
      undo.push(() => removeDisk(p));
      this.step("state");

      signal?.throwIfAborted();
      if (!spec.blockNetwork) await this.ensureHostNet();
      if (this.disk && !spare) {
        const tm = performance.now();
        await makeDisk(p, this.disk.bytes, this.log);
        timings.diskMs += performance.now() - tm;
      }
      this.step("disk");

      const tr = performance.now();
      await mountRootfs(p, spec.image.layers, state.uidBase, {
        idmapBin: this.idmapPath,
        ...(this.opts.unsafeNoIdmap ? { unsafeNoIdmap: true } : {}),
      });
      undo.push(() => unmountAll(p.dir));
      timings.rootfsMs = performance.now() - tr;
      const volumes = await mountVolumes(p, spec.mounts ?? [], state.uidBase, this.idmapPath);
      this.step("rootfs");
      signal?.throwIfAborted();

      const tb = performance.now();
      writeFileSync(p.resolvConf, resolvConf(this.net), { mode: 0o644 });
      writeFileSync(p.hosts, hostsFile(hostname, address), { mode: 0o644 });
      writeFileSync(p.hostname, hostnameFile(hostname), { mode: 0o644 });
      let cgroupV1: { parent: string; hierarchies: { name: string; source: string }[] } | undefined;
      if (this.cgroupV1 && !this.cgroupsDisabled) {
        const parent = join(p.bundle, "cgroupfs");
        for (const h of this.cgroupV1) mkdirSync(join(parent, h), { recursive: true, mode: 0o755 });
        cgroupV1 = {
          parent,
          hierarchies: this.cgroupV1.map((name) => ({ name, source: join("/sys/fs/cgroup", name, "sbx", id) })),
        };
      }
      const oci = toOciSpec(
        {
          sandboxId: id,
          hostname,
          ...(spec.command ? { command: spec.command } : {}),
          image: spec.image.config,
          ...(spec.image.user ? { user: spec.image.user } : {}),
          env: spec.env,
          ...(spec.workdir ? { workdir: spec.workdir } : {}),
          memoryLimitBytes: spec.memoryLimitBytes,
          pidsLimit: spec.pidsLimit,
          ...(spec.cpuLimit ? { cpuLimit: spec.cpuLimit } : {}),
          ...(spec.cpu ? { cpu: spec.cpu } : {}),
          ...(spec.memoryReservationBytes ? { memoryReservationBytes: spec.memoryReservationBytes } : {}),
          ...(volumes.length > 0 ? { volumes } : {}),
        },
        {
          rootfsPath: p.rootfs,
          runDir: p.runData,
          agentPath: this.agentPath,
          tcpProbePath: join(this.opts.agentDir, "sbx-tcp-probe"),
          binDir: this.opts.agentDir,
          extraMaskedPaths: this.maskedExtra,
          resolvConfPath: p.resolvConf,
          hostsPath: p.hosts,
          hostnamePath: p.hostname,
          uidBase: state.uidBase,
          cgroupsPath: `/sbx/${id}`,
          ...(cgroupV1 ? { cgroupV1 } : {}),
          ...(this.cgroupsDisabled ? { noCgroups: true } : {}),
          swapAccounting:
            existsSync("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes") ||
            existsSync("/sys/fs/cgroup/cgroup.controllers"),
        },
      );
      writeFileSync(p.config, JSON.stringify(oci, null, 1), { mode: 0o600 });
      timings.bundleMs = performance.now() - tb;
      this.step("bundle");

      // Without an entrypoint the agent runs nothing before the first EXEC,
      // and create does not return before the network is wired: so start it
      // at once (one runtime process, not two) and wire the network while it
      // says HELLO. An entrypoint runs at start, so it gets its network first.
      const startEarly = !spec.command;
      const tc = performance.now();
      const bundleOpts = { bundle: p.bundle, pidFile: p.pidFile, consoleLog: p.consoleLog };
      await (startEarly ? this.rt.run(id, bundleOpts) : this.rt.create(id, bundleOpts));
      undo.push(async () => {
        try {
          await this.rt.delete(id, true);
        } finally {
          await this.removeCgroups(id);
        }
      });
      timings.runtimeCreateMs = performance.now() - tc;
      tightenDeviceCgroup(id);
      this.step("runtime-create");
      const pid = Number(readFileSync(p.pidFile, "utf8").trim());
      const startTime = procStartTime(pid);
      const alive = () => procStartTime(pid) === startTime;
      // Runs before the runtime's delete: even when that fails, the sandbox's
      // PID 1 (and with it everything in its pid namespace) does not outlive
      // a failed create.
      undo.push(() => {
        if (alive()) process.kill(pid, "SIGKILL");
      });
      const agent = new AgentClient(join(p.run, "agent.sock"), { log: this.log, alive });
      undo.push(() => agent.close());
      let th = performance.now();
      const hello = () => agent.start({ timeoutMs: this.opts.agentStartTimeoutMs ?? 10_000, ...(signal ? { signal } : {}), alive });

      const tn = performance.now();
      undo.push(() => teardownSandboxNetwork(id));
      const network = setupSandboxNetwork({ sandboxId: id, pid, blockNetwork: spec.blockNetwork, ...(address ? { address } : {}), wireBin: join(this.opts.agentDir, "sbx-netwire") }, this.net);
      // With startEarly the hello's figure is its own, not the network's it waited behind.
      let helloMs: number | undefined;
      const greeted = startEarly ? hello().then(() => void (helloMs = performance.now() - th)) : null;
      greeted?.catch(() => undefined); // awaited below, after the network
      await network;
      timings.netnsMs = performance.now() - tn;
      this.step("network");
      signal?.throwIfAborted();

      const ts = performance.now();
      if (!startEarly) await this.rt.start(id);
      timings.runtimeStartMs = performance.now() - ts;
      this.step("runtime-start");

      if (!greeted) th = performance.now();
      try {
        await (greeted ?? hello());
      } catch (err) {
        // An entrypoint may finish before the agent's first answer (`true`):
        // that is a sandbox that started and exited, not a failed start.
        if (spec.command && !alive() && readFileNoFollow(p.run, "procs/entry/exit", 64) !== null) {
          agent.close();
          this.log(`sandbox ${id}: its entrypoint exited before the agent's first answer`);
          return new LocalSandbox(id, p, state, pid, startTime, null, this);
        }
        throw err;
      }
      timings.agentHelloMs = helloMs ?? performance.now() - th;
      timings.totalMs = performance.now() - t0;
      this.step("agent");

      const sb = new LocalSandbox(id, p, state, pid, startTime, agent, this);
      agent.setOnReconnect(() => sb.replayExits());
      sb.timings = timings as CreateTimings;
      this.log(
        `sandbox ${id} created in ${timings.totalMs.toFixed(0)} ms (` +
          Object.entries(timings)
            .filter(([k]) => k !== "totalMs")
            .map(([k, v]) => `${k.replace(/Ms$/, "")} ${v!.toFixed(1)}`)
            .join(", ") +
          ")",
      );
      return sb;
    } catch (e) {
      let tail = "";
      try {
        tail = readFileSync(p.consoleLog, "utf8").slice(-1000).trim();
      } catch {
        /* none */
      }
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch (ue) {
          this.log(`undo after failed create of ${id}: ${(ue as Error).message}`);
        }
      }
      if (tail && e instanceof Error && !e.message.includes(tail.slice(-200))) e.message += ` (console: ${tail})`;
      throw e;
    } finally {
      if (slot >= 0) this.reservedSlots.delete(slot);
      if (address) this.reservedAddrs.delete(address);
    }
  }

  async adopt(sandboxId: string): Promise<RuntimeSandbox | null> {
    return this.adoptAs(sandboxId, () => this.rt.state(sandboxId));
  }

  /**
   * adopt() for every sandbox a restarted server had: one `runtime list`
   * instead of one `runtime state` each (a runc start-up, ~25 ms here), and
   * the agents reached ADOPT_WIDTH at a time. A restart with 200 running
   * sandboxes spent most of its start-up on those one by one.
   */
  async adoptAll(sandboxIds: readonly string[]): Promise<Map<string, RuntimeSandbox | null>> {
    const listed = await this.rt.list().then(
      (all) => new Map(all.map((c) => [c.id, c])),
      (e: unknown) => {
        this.log(`adopt: ${this.rt.name} list: ${(e as Error).message}; asking for each sandbox instead`);
        return null;
      },
    );
    const out = new Map<string, RuntimeSandbox | null>();
    let next = 0;
    const worker = async () => {
      while (next < sandboxIds.length) {
        const id = sandboxIds[next++]!;
        const known = listed ? async () => listed.get(id) ?? null : () => this.rt.state(id);
        out.set(
          id,
          await this.adoptAs(id, known).catch((e: unknown) => {
            this.log(`sandbox ${id}: adopt failed: ${String(e)}`);
            return null;
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(ADOPT_WIDTH, sandboxIds.length) }, worker));
    return out;
  }

  /** adopt(), with the runtime's view of the container from `runtimeState`. */
  private async adoptAs(sandboxId: string, runtimeState: () => Promise<ContainerState | null>): Promise<RuntimeSandbox | null> {
    let p: SandboxPaths;
    try {
      p = sandboxPaths(this.opts.dataDir, sandboxId);
    } catch {
      return null;
    }
    const state = readState(p.state);
    if (!state || state.destroyed) return null;
    const rs = await runtimeState().catch(() => null);
    if (!rs || rs.pid <= 0) return null;
    const startTime = procStartTime(rs.pid);
    if (rs.status !== "running" || !startTime) {
      // PID 1 is gone: a sandbox without an agent whose waitExit resolves at once.
      return new LocalSandbox(sandboxId, p, state, rs.pid, startTime ?? "gone", null, this);
    }
    const alive = () => procStartTime(rs.pid) === startTime;
    const agent = new AgentClient(join(p.run, "agent.sock"), { log: this.log, alive });
    const sb = new LocalSandbox(sandboxId, p, state, rs.pid, startTime, agent, this);
    agent.setOnReconnect(() => sb.replayExits());
    try {
      await agent.start({ timeoutMs: 5_000, alive });
    } catch (e) {
      this.log(`adopt ${sandboxId}: agent unreachable: ${(e as Error).message}`);
      agent.close();
      return new LocalSandbox(sandboxId, p, state, rs.pid, startTime, null, this);
    }
    return sb;
  }

  /**
   * A cgroup stays busy until its last process is gone, and a killed fork
   * bomb's thousand processes take a moment to go on a loaded host: retry a
   * busy one for up to 5 s rather than leave it behind.
   */
  private async removeCgroups(id: string): Promise<void> {
    for (const d of cgroupDirs(id)) {
      for (let tries = 0; ; tries++) {
        try {
          rmdirSync(d);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EBUSY" || tries >= 250) break; // absent, or still busy after 5 s
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }

  async cleanup(sandboxId: string): Promise<void> {
    await this.destroyTurns.run(async (queueMs) => {
      const t0 = performance.now();
      await this.cleanupNow(sandboxId);
      this.log(`sandbox ${sandboxId} cleaned up in ${(performance.now() - t0).toFixed(0)} ms (queue ${queueMs.toFixed(1)})`);
    });
  }

  private async cleanupNow(sandboxId: string): Promise<void> {
    const p = sandboxPaths(this.opts.dataDir, sandboxId);
    // Independent of each other: in parallel. The overlay goes first so the
    // disk under it is quiet when its outputs are copied out.
    await Promise.all([
      this.rt
        .delete(sandboxId, true)
        .catch((e: unknown) => this.log(`delete ${sandboxId}: ${(e as Error).message}`))
        .then(() => this.removeCgroups(sandboxId)),
      teardownSandboxNetwork(sandboxId),
      unmountAll(p.rootfs).then(() => unmountAll(p.lower)),
    ]);
    await retainOutputs(p, this.disk?.retainBytes ?? DEFAULT_DISK.retainBytes, this.log).catch((e: unknown) =>
      this.log(`keeping the outputs of ${sandboxId}: ${(e as Error).message}`),
    );
    await removeDisk(p, { shutdownBin: join(this.opts.agentDir, "sbx-fs-shutdown") }).catch((e: unknown) =>
      this.log(`removing the disk of ${sandboxId}: ${(e as Error).message}`),
    );
    // Throws if anything is still mounted, so nothing below is removed through a mount.
    await unmountAll(p.dir);
    // upper/ and work/ at the top: sandboxes made before writable disks.
    for (const d of [p.disk, join(p.dir, "upper"), join(p.dir, "work"), p.rootfs, p.lower, p.bundle]) {
      await rm(d, { recursive: true, force: true });
    }
    const state = readState(p.state);
    if (state && !state.destroyed) {
      writeState(p.state, { ...state, destroyed: true });
      releaseSlot(state.slot, p.dir);
      if (state.address) releaseAddress(state.address, p.dir);
    }
  }

  /**
   * Removes what sandboxes of this data dir left behind when they are not in
   * `knownRunning` (the ids the caller adopted and keeps): a create cut short
   * by a crash, a destroy that did not finish. Runtime containers (killed),
   * cgroups, netns + veth, mounts, the disk and its loop device, slot and
   * address claims; the directory of a sandbox that never ran a process is
   * removed entirely, the others keep run/ and state.json (destroyed), as a
   * normal destroy does. Call at start-up, after adopting and before serving:
   * a create in flight would be taken for an orphan. Returns the ids cleaned.
   */
  async cleanupOrphans(knownRunning: Iterable<string>): Promise<string[]> {
    const keep = new Set(knownRunning);
    const ids = new Set<string>();
    try {
      for (const n of readdirSync(sandboxesDir(this.opts.dataDir))) if (SANDBOX_ID_RE.test(n)) ids.add(n);
    } catch {
      /* no sandboxes yet */
    }
    const containers = await this.rt.list().catch((e: unknown) => {
      this.log(`orphan scan: ${this.rt.name} list: ${(e as Error).message}`);
      return [];
    });
    for (const c of containers) if (SANDBOX_ID_RE.test(c.id)) ids.add(c.id);
    const inRuntime = new Set(containers.map((c) => c.id));
    // The host's mounts and loop devices, looked at once for all: per sandbox,
    // with hundreds running and thousands of past ones kept, a start-up read
    // the whole mount table and every loop device thousands of times. Nothing
    // else changes them meanwhile (see above); a cleanup only removes its own.
    const leftoverMounts = mountsUnder(sandboxesDir(this.opts.dataDir));
    const loops = loopBackings();
    const cleaned: string[] = [];
    for (const id of ids) {
      if (keep.has(id)) continue;
      const p = sandboxPaths(this.opts.dataDir, id);
      if (!existsSync(p.dir)) {
        // Known to the runtime only: its dir went first.
        await this.rt.delete(id, true).catch((e: unknown) => this.log(`orphan ${id}: delete: ${(e as Error).message}`));
        await this.removeCgroups(id);
        await teardownSandboxNetwork(id).catch((e: unknown) => this.log(`orphan ${id}: network: ${(e as Error).message}`));
        cleaned.push(id);
        continue;
      }
      const state = readState(p.state);
      if (state?.destroyed && !inRuntime.has(id) && !this.hasLeftovers(p, id, leftoverMounts, loops)) continue;
      try {
        await this.cleanup(id);
      } catch (e) {
        this.log(`orphan ${id}: cleanup: ${(e as Error).message}`);
        continue;
      }
      // Claims a state.json never recorded (a crash between claim and write).
      releaseClaimsOf(p.dir);
      let procs: string[] = [];
      try {
        procs = readdirSync(join(p.run, "procs"));
      } catch {
        /* none */
      }
      // cleanup() threw if anything under the dir stayed mounted.
      if (procs.length === 0) rmSync(p.dir, { recursive: true, force: true });
      cleaned.push(id);
    }
    if (cleaned.length) this.log(`cleaned up after ${cleaned.length} sandbox(es) not running: ${cleaned.join(", ")}`);
    return cleaned;
  }

  /** `mounts`: the mount points under the sandboxes dir; `loops`: loopBackings(); both taken once per scan. */
  private hasLeftovers(p: SandboxPaths, id: string, mounts: readonly string[], loops: ReadonlyMap<string, string[]>): boolean {
    let runIsLink = false;
    try {
      runIsLink = lstatSync(p.run).isSymbolicLink();
    } catch {
      /* missing */
    }
    return (
      runIsLink ||
      existsSync(`${p.run}.tmp`) ||
      mounts.some((m) => m === p.dir || m.startsWith(`${p.dir}/`)) ||
      diskLeftovers(p, loops).length > 0 ||
      existsSync(netnsPath(id)) ||
      existsSync(`/sys/class/net/${hostVethName(id)}`) ||
      cgroupDirs(id).some((d) => existsSync(d)) ||
      [p.rootfs, p.lower, p.bundle, p.disk].some((d) => existsSync(d))
    );
  }
}

export function createLocalBackend(opts: LocalBackendOptions): Backend & { cleanupOrphans(knownRunning: Iterable<string>): Promise<string[]> } {
  const b = new LocalBackend(opts);
  b.init();
  return b;
}

export type { LocalSandbox };
