// Issue 5's isolation defaults, proved through the real server: from inside a
// sandbox with the static probe (agent/probe.c, at /.sbx/bin/sbx-probe in
// every sandbox), from the host by reading the sandbox's processes and
// cgroups, and over the network with targets that are all on this machine
// (loopback, the bridge, a dummy interface the test makes, other sandboxes).
//
//   node --import tsx --test test/security/sandbox-isolation.test.ts
//
// Two sandboxes serve every check; the test removes what it makes.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import type { App, SbxClient, Sandbox } from "sbx";
import { REPO, startTestServer, type TestServer } from "../support/server.js";
import { PROBE, hostPid1, procStatus, runProbe, sandboxState } from "./support.js";

let server: TestServer;
let client: SbxClient;
let app: App;
/** Configured limits (memory, cpu) to check from the host. */
let a: Sandbox;
/** Defaults. */
let b: Sandbox;

/**
 * SBX_TEST_RUNTIME=crun runs this file against crun. On this host (cgroup v1
 * hybrid) crun runs only without a cgroup manager, so the cgroup checks are
 * skipped then and every other check must still hold.
 */
const RUNTIME = process.env.SBX_TEST_RUNTIME === "crun" ? "crun" : "runc";
const CGROUPS = RUNTIME === "runc" || existsSync("/sys/fs/cgroup/cgroup.controllers");

const A_MEMORY_MIB = 768;
const A_CPU = 1;

before(async () => {
  server = await startTestServer(RUNTIME === "crun" ? { extraArgs: ["--runtime", "crun"] } : {});
  client = server.client();
  app = await client.apps.fromName("security", { createIfMissing: true });
  [a, b] = await Promise.all([
    client.sandboxes.create(app, undefined, { memoryLimitMiB: A_MEMORY_MIB, cpuLimit: A_CPU }),
    client.sandboxes.create(app),
  ]);
});

after(async () => {
  await a?.terminate().catch(() => undefined);
  await b?.terminate().catch(() => undefined);
  await server?.stop();
});

/** The 11 capabilities of oci-spec.ts as a bit set (CHOWN … SETFCAP). */
const ALLOWED_CAPS = 0x800405fbn;

/** Checks the probe must report (a probe that silently skips one fails here). */
const REQUIRED_CHECKS = [
  "no-new-privs", "seccomp-mode", "caps-CapEff", "caps-CapPrm", "caps-CapBnd", "caps-CapInh", "caps-CapAmb",
  "uid-map", "gid-map", "rlimit-nofile", "allow-fork", "allow-personality-query",
  ...[
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "mount", "umount2", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
    "mount_setattr", "pivot_root", "open_by_handle_at", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "swapon", "swapoff", "reboot", "clock_settime", "clock_adjtime", "settimeofday", "adjtimex",
    "personality-addr-no-randomize", "ptrace", "clone3",
  ].map((n) => `deny-${n}`),
  ...["newuser", "newns", "newnet", "newpid", "newuts", "newipc", "newcgroup"].flatMap((f) => [`deny-clone-${f}`, `deny-unshare-${f}`]),
  ...["mnt", "net", "user", "pid"].map((n) => `deny-setns-${n}`),
  "allow-socket-inet-stream", "deny-socket-af_alg", "deny-socket-af_vsock", "deny-socket-packet-raw", "deny-socket-inet-raw",
  "deny-mknod-chardev",
  "no-write-core_pattern", "no-write-sysrq-trigger", "ro-sys", "ro-sys-fs-cgroup", "cgroup-hierarchies-locked",
  ...["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"].map((p) => `ro-${p}`),
  ...[
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/firmware",
    "/sys/devices/virtual/powercap",
  ].map((p) => `masked-${p}`),
  "devices-standard-only", "pid1-is-agent", "only-sandbox-processes", "no-foreign-sockets", "env-pid1", "env-self",
  "absent-/var/run/docker.sock", "absent-/run/sbx", "setuid-gains-nothing",
];

/** thermal_throttle dirs this host has: the runtime masks them (none on most VMs). */
function hostThermalPaths(): string[] {
  const base = "/sys/devices/system/cpu";
  return readdirSync(base)
    .filter((n) => /^cpu\d+$/.test(n))
    .map((n) => join(base, n, "thermal_throttle"))
    .filter((p) => existsSync(p));
}

test("in-sandbox probe: posture, denied syscalls and socket families, locked /proc /sys and cgroups, masked paths, devices, processes, no host secrets, setuid", async () => {
  const thermal = hostThermalPaths();
  const forbid = [server.dataDir, join(server.dataDir, "admin-token"), join(server.dataDir, "sbx.db"), "/run/sbx/slots"];
  const args = ["all", ...forbid.flatMap((p) => ["--forbid", p]), ...thermal.flatMap((p) => ["--masked", p])];
  for (const sb of [a, b]) {
    const r = await runProbe(sb, args);
    const missing = [...REQUIRED_CHECKS, ...thermal.map((p) => `masked-${p}`), ...forbid.map((p) => `absent-${p}`)].filter(
      (n) => !r.checks.has(n),
    );
    assert.deepEqual(missing, [], `probe did not report: ${missing.join(", ")}\n${r.stdout}${r.stderr}`);
    assert.deepEqual(r.failed, [], `failed checks in ${sb.sandboxId}:\n${r.failed.join("\n")}`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  }
});

test("host side: PID 1 and an exec'd process run in their own namespaces, seccomp mode 2, no_new_privs, 11 caps, mapped uid, configured cgroup limits, no stray fds", async () => {
  const sleeper = await a.exec(["sleep", "300"], { timeoutMs: 60_000 });
  try {
    const st = sandboxState(server.dataDir, a.sandboxId);
    const pid1 = hostPid1(server.dataDir, a.sandboxId, RUNTIME);
    let child = 0;
    for (let i = 0; i < 50 && !child; i++) {
      const kids = readFileSync(`/proc/${pid1}/task/${pid1}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
      child = kids.find((k) => readFileSync(`/proc/${k}/cmdline`, "utf8") === "sleep\u0000300\u0000") ?? 0;
      if (!child) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(child > 0, "did not find the exec'd sleep under PID 1");

    for (const [what, pid] of [["PID 1", pid1], ["exec'd process", child]] as const) {
      for (const ns of ["mnt", "pid", "net", "user", "uts", "ipc", "cgroup"]) {
        assert.notEqual(readlinkSync(`/proc/${pid}/ns/${ns}`), readlinkSync(`/proc/self/ns/${ns}`), `${what} shares the host's ${ns} namespace`);
      }
      const s = procStatus(pid);
      assert.equal(s.Seccomp, "2", `${what} Seccomp`);
      assert.equal(s.NoNewPrivs, "1", `${what} NoNewPrivs`);
      for (const set of ["CapEff", "CapPrm", "CapBnd"]) {
        assert.equal(BigInt(`0x${s[set]}`) & ~ALLOWED_CAPS, 0n, `${what} ${set}=${s[set]} is wider than the 11`);
      }
      assert.equal(BigInt(`0x${s.CapBnd}`), ALLOWED_CAPS, `${what} CapBnd is exactly the 11`);
      assert.equal(BigInt(`0x${s.CapInh}`), 0n, `${what} CapInh`);
      assert.equal(BigInt(`0x${s.CapAmb}`), 0n, `${what} CapAmb`);
      for (const idl of ["Uid", "Gid"]) {
        assert.deepEqual(s[idl]!.split(/\s+/).map(Number), [st.uidBase, st.uidBase, st.uidBase, st.uidBase], `${what} host ${idl}`);
      }
      assert.equal(readFileSync(`/proc/${pid}/uid_map`, "utf8").trim().split(/\s+/).join(" "), `0 ${st.uidBase} 65536`);
      assert.equal(readFileSync(`/proc/${pid}/gid_map`, "utf8").trim().split(/\s+/).join(" "), `0 ${st.uidBase} 65536`);
      const limits = readFileSync(`/proc/${pid}/limits`, "utf8");
      assert.match(limits, /^Max open files\s+1024\s+1024\s/m, `${what} RLIMIT_NOFILE`);
      // Its cgroups are the sandbox's own in every hierarchy.
      if (CGROUPS) for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").trim().split("\n")) {
        const [, ctrl, path] = line.split(":");
        if (ctrl === "" || ctrl === "name=systemd") continue;
        assert.equal(path, `/sbx/${a.sandboxId}`, `${what} cgroup ${line}`);
      }
    }

    // cgroup limits as configured (cgroup v1 here; v2 names in the fallback).
    const cg = (ctrl: string, file: string) => readFileSync(`/sys/fs/cgroup/${ctrl}/sbx/${a.sandboxId}/${file}`, "utf8").trim();
    const v1 = CGROUPS && existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    if (v1) {
      assert.equal(Number(cg("memory", "memory.limit_in_bytes")), A_MEMORY_MIB * 1024 * 1024);
      if (existsSync(`/sys/fs/cgroup/memory/sbx/${a.sandboxId}/memory.memsw.limit_in_bytes`)) {
        assert.equal(Number(cg("memory", "memory.memsw.limit_in_bytes")), A_MEMORY_MIB * 1024 * 1024, "no swap beyond the limit");
      }
      assert.equal(cg("pids", "pids.max"), "1024");
      assert.equal(Number(cg("cpu", "cpu.cfs_quota_us")) / Number(cg("cpu", "cpu.cfs_period_us")), A_CPU);
      const devices = cg("devices", "devices.list").split("\n").sort();
      // Only the standard devices; runc 1.1's own extras (mknod of anything, /dev/net/tun) are removed.
      assert.deepEqual(devices, ["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 136:* rwm", "c 5:0 rwm", "c 5:2 rwm"].sort());
    }
    // B got the defaults: 2048 MiB, 1024 pids, no CPU quota.
    const cgB = (ctrl: string, file: string) => readFileSync(`/sys/fs/cgroup/${ctrl}/sbx/${b.sandboxId}/${file}`, "utf8").trim();
    if (v1) {
      assert.equal(Number(cgB("memory", "memory.limit_in_bytes")), 2048 * 1024 * 1024);
      assert.equal(cgB("pids", "pids.max"), "1024");
    }

    // File descriptors. The exec'd process: stdin pipe, its two output files, nothing else.
    const fds = (pid: number) =>
      Object.fromEntries(readdirSync(`/proc/${pid}/fd`).map((fd) => [fd, readlinkSync(`/proc/${pid}/fd/${fd}`)]));
    const c = fds(child);
    assert.deepEqual(Object.keys(c).sort(), ["0", "1", "2"], `exec'd process fds: ${JSON.stringify(c)}`);
    assert.match(c["0"]!, /^pipe:/);
    assert.ok(c["1"]!.endsWith(`/procs/${sleeper.execId}/stdout`), c["1"]);
    assert.ok(c["2"]!.endsWith(`/procs/${sleeper.execId}/stderr`), c["2"]);
    // The agent: std fds on /dev/null or the console log, its socket, signalfd,
    // epoll, procs dir, client connections, and per running process a stdin
    // pipe and a status pipe. Nothing of the host's (no data dir files but
    // its own run dir, no host sockets).
    const runData = join(server.dataDir, "sandboxes", a.sandboxId, "disk", "run");
    const agentFds = fds(pid1);
    for (const [fd, target] of Object.entries(agentFds)) {
      const okTarget =
        target === "/dev/null" ||
        target === join(server.dataDir, "sandboxes", a.sandboxId, "console.log") ||
        target === `${runData}/procs` ||
        target === "/.sbx/procs" || // the kernel shows it as seen from the sandbox's root
        /^(socket|pipe):\[\d+\]$/.test(target) ||
        /^anon_inode:\[(signalfd|eventpoll|pidfd)\]$/.test(target);
      assert.ok(okTarget, `agent fd ${fd} -> ${target}`);
    }
    assert.ok(Object.keys(agentFds).length <= 3 + 4 + 64 + 2 * 2, `agent has ${Object.keys(agentFds).length} fds`);
  } finally {
    void sleeper; // ends with its exec timeout, or with the sandbox
  }
});

test("each sandbox has its own host uid range: disjoint from the other's, never containing host uid 0", () => {
  const ranges = [a, b].map((sb) => {
    const [inside, outside, count] = readFileSync(`/proc/${hostPid1(server.dataDir, sb.sandboxId, RUNTIME)}/uid_map`, "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    assert.equal(inside, 0);
    return { lo: outside!, hi: outside! + count! - 1 };
  });
  for (const r of ranges) assert.ok(r.lo > 0, `range [${r.lo}, ${r.hi}] contains host uid 0`);
  const [r1, r2] = ranges as [{ lo: number; hi: number }, { lo: number; hi: number }];
  assert.ok(r1.hi < r2.lo || r2.hi < r1.lo, `ranges overlap: [${r1.lo}, ${r1.hi}] and [${r2.lo}, ${r2.hi}]`);
});

test("a user-supplied workdir cannot become a runtime option: /proc/self/fd/7 is refused (400) for create and exec", async () => {
  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  for (const workdir of ["/proc/self/fd/7", "/proc/1/cwd", "/.sbx", "/sys/fs/cgroup", "relative/dir", "/a/../proc/self/fd/7"]) {
    const r1 = await post("/v1/sandboxes", { appId: app.appId, image: { kind: "debianSlim" }, workdir });
    assert.equal(r1.status, 400, `create with workdir ${workdir}: ${r1.status} ${await r1.text()}`);
    const r2 = await post(`/v1/sandboxes/${a.sandboxId}/execs`, { argv: ["pwd"], workdir });
    assert.equal(r2.status, 400, `exec with workdir ${workdir}: ${r2.status} ${await r2.text()}`);
  }
  // Control: an ordinary workdir is accepted.
  const ok = await post(`/v1/sandboxes/${a.sandboxId}/execs`, { argv: ["pwd"], workdir: "/tmp" });
  assert.equal(ok.status, 201, await ok.text());
});

test("network: no host address (server API included), no other sandbox, no link-local or private address; loopback inside works", async () => {
  const serverPort = Number(new URL(server.url).port);
  // Everything this test aims at is on this machine, so nothing can leave it
  // even if the rules were wrong:
  //  - a link-local address ON the host (the dummy interface; this
  //    kernel has no dummy driver, so one end of a veth pair whose peer is
  //    also on the host) with a listener;
  //  - a "LAN" network namespace behind a second veth pair, holding one
  //    address from each private / link-local / CGNAT range (the metadata
  //    stand-in 169.254.77.78 among them), routed from the host, with a
  //    listener: what a sandbox would reach through the host's forwarding.
  const tag = process.pid % 10000;
  const LL_HOST = "169.254.77.77";
  const lan = { ns: `sbxt-lan-${tag}`, host: `sbxtl${tag}`, peer: `sbxtp${tag}` };
  const ll = { a: `sbxta${tag}`, b: `sbxtb${tag}` };
  const LAN_ADDRS = ["169.254.77.78", "10.77.77.77", "172.31.77.77", "192.168.77.77", "100.64.77.77"];
  const LAN_PORT = 8081;
  const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
  const listeners: Server[] = [];
  const listen = async (host: string): Promise<number> => {
    const s = createServer((c) => {
      c.on("error", () => undefined); // clients here hang up at once
      c.end("host-secret\n");
    });
    listeners.push(s);
    await new Promise<void>((r) => s.listen(0, host, r));
    return (s.address() as { port: number }).port;
  };
  const hostConnects = (port: number, host: string) =>
    new Promise<void>((resolve, reject) => {
      const c = connect(port, host, () => (c.destroy(), resolve()));
      c.setTimeout(2000, () => (c.destroy(), reject(new Error(`host cannot reach ${host}:${port}`))));
      c.on("error", reject);
    });
  const sbListener = await b.exec([PROBE, "listen", "8080"], { timeoutMs: 120_000 });
  let lanListener: ReturnType<typeof spawn> | null = null;
  try {
    ip("link", "add", ll.a, "type", "veth", "peer", "name", ll.b);
    ip("addr", "add", `${LL_HOST}/32`, "dev", ll.a);
    ip("link", "set", ll.a, "up");
    ip("link", "set", ll.b, "up");
    ip("netns", "add", lan.ns);
    ip("link", "add", lan.host, "type", "veth", "peer", "name", lan.peer, "netns", lan.ns);
    ip("addr", "add", "198.18.77.1/30", "dev", lan.host);
    ip("link", "set", lan.host, "up");
    ip("-n", lan.ns, "link", "set", "lo", "up");
    ip("-n", lan.ns, "addr", "add", "198.18.77.2/30", "dev", lan.peer);
    for (const a4 of LAN_ADDRS) ip("-n", lan.ns, "addr", "add", `${a4}/32`, "dev", lan.peer);
    ip("-n", lan.ns, "link", "set", lan.peer, "up");
    ip("-n", lan.ns, "route", "add", "default", "via", "198.18.77.1");
    for (const a4 of LAN_ADDRS) ip("route", "add", `${a4}/32`, "via", "198.18.77.2");
    lanListener = spawn("ip", ["netns", "exec", lan.ns, join(REPO, "agent/build/sbx-probe"), "listen", String(LAN_PORT)], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      lanListener!.stdout!.once("data", () => resolve());
      lanListener!.once("exit", (c) => reject(new Error(`LAN listener exited ${c}`)));
    });

    const hostPort = await listen("0.0.0.0");
    const llPort = await listen(LL_HOST);
    // Controls from the host: every target is really there.
    await hostConnects(llPort, LL_HOST);
    for (const a4 of LAN_ADDRS) await hostConnects(LAN_PORT, a4);
    // B listens on 8080; control: B reaches itself on loopback and on its own address.
    const first = await sbListener.stdout[Symbol.asyncIterator]().next();
    assert.match(String(first.value), /listening/);
    const bAddr = sandboxState(server.dataDir, b.sandboxId).address!;
    assert.ok(bAddr, "sandbox B has an address");
    const self = await runProbe(b, ["connect", "--expect", "reach", "127.0.0.1:8080", `${bAddr}:8080`]);
    assert.deepEqual(self.failed, [], self.stdout);

    const hostAddrs = Object.values(networkInterfaces())
      .flat()
      .filter((x) => x && x.family === "IPv4")
      .map((x) => x!.address);
    const targets = [...new Set([
      `${LL_HOST}:${llPort}`,
      `${LL_HOST}:${hostPort}`,
      ...LAN_ADDRS.map((a4) => `${a4}:${LAN_PORT}`),
      `${bAddr}:8080`,
      ...[...hostAddrs, "10.88.0.1"].filter((h) => !h.startsWith("127.")).flatMap((h) => [`${h}:${serverPort}`, `${h}:${hostPort}`]),
    ])];
    const r = await runProbe(a, ["connect", "--expect", "block", "--timeout-ms", "1500", ...targets]);
    assert.equal(r.checks.size, targets.length, r.stdout);
    assert.deepEqual(r.failed, [], `sandbox A reached:\n${r.failed.join("\n")}`);
  } finally {
    for (const s of listeners) s.close();
    if (lanListener?.pid) process.kill(lanListener.pid, "SIGKILL");
    // Deleting the host ends of the veth pairs removes their peers and routes.
    for (const dev of [ll.a, lan.host]) {
      if (existsSync(`/sys/class/net/${dev}`)) execFileSync("ip", ["link", "del", dev]);
    }
    if (existsSync(`/var/run/netns/${lan.ns}`)) execFileSync("ip", ["netns", "del", lan.ns]);
  }
  for (const dev of [ll.a, ll.b, lan.host]) assert.ok(!existsSync(`/sys/class/net/${dev}`), `${dev} removed`);
  assert.ok(!existsSync(`/var/run/netns/${lan.ns}`), "LAN namespace removed");
});
