import { test } from "node:test";
import assert from "node:assert/strict";
import { MASKED_PATHS, toOciSpec, type OciHostInfo, type OciSpecInput } from "./oci-spec.js";
import { ALLOWED_SYSCALLS, DENIED_SYSCALLS, seccompProfile } from "./seccomp.js";

const input: OciSpecInput = {
  sandboxId: "sb-1",
  hostname: "sb-1",
  command: ["python3", "app.py"],
  image: { env: ["PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "A=image"], workdir: "/app" },
  env: { A: "spec", B: "2" },
  memoryLimitBytes: 256 * 1024 * 1024,
  pidsLimit: 100,
  cpuLimit: 1.5,
};
const host: OciHostInfo = {
  rootfsPath: "/d/sandboxes/sb-1/rootfs",
  runDir: "/d/sandboxes/sb-1/run",
  agentPath: "/opt/sbx/sbx-agent",
  tcpProbePath: "/opt/sbx/sbx-tcp-probe",
  resolvConfPath: "/d/sandboxes/sb-1/resolv.conf",
  hostsPath: "/d/sandboxes/sb-1/hosts",
  hostnamePath: "/d/sandboxes/sb-1/hostname",
  uidBase: 265536,
  cgroupsPath: "/sbx/sb-1",
  swapAccounting: true,
};

type Any = Record<string, any>;

test("process: agent as PID 1, env layering, cwd, caps, no_new_privs, rlimits", () => {
  const s = toOciSpec(input, host) as Any;
  assert.deepEqual(s.process.args, ["/.sbx/bin/sbx-agent", "--run-dir", "/.sbx", "--", "python3", "app.py"]);
  assert.deepEqual(s.process.user, { uid: 0, gid: 0 });
  assert.equal(s.process.terminal, false);
  assert.equal(s.process.noNewPrivileges, true);
  assert.equal(s.process.cwd, "/app");
  assert.deepEqual(s.process.env, ["HOME=/root", "PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "A=spec", "B=2"]);
  const caps = s.process.capabilities;
  assert.equal(caps.bounding.length, 11);
  assert.deepEqual(caps.effective, caps.bounding);
  assert.deepEqual(caps.permitted, caps.bounding);
  assert.deepEqual(caps.inheritable, []);
  assert.deepEqual(caps.ambient, []);
  for (const c of ["CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_NET_ADMIN", "CAP_MKNOD", "CAP_SYS_PTRACE"]) assert.ok(!caps.bounding.includes(c));
  assert.deepEqual(s.process.rlimits, [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }]);
});

test("no command: the agent idles; cwd falls back to /", () => {
  const { command: _c, ...rest } = input;
  const s = toOciSpec({ ...rest, image: { env: [] } }, host) as Any;
  assert.deepEqual(s.process.args, ["/.sbx/bin/sbx-agent", "--run-dir", "/.sbx"]);
  assert.equal(s.process.cwd, "/");
  assert.deepEqual(s.process.env, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "A=spec", "B=2"]);
});

test("namespaces, id mappings, cgroup path, resources, devices", () => {
  const s = toOciSpec(input, host) as Any;
  assert.deepEqual(
    s.linux.namespaces.map((n: Any) => n.type).sort(),
    ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
  );
  assert.deepEqual(s.linux.uidMappings, [{ containerID: 0, hostID: 265536, size: 65536 }]);
  assert.deepEqual(s.linux.gidMappings, [{ containerID: 0, hostID: 265536, size: 65536 }]);
  assert.equal(s.linux.cgroupsPath, "/sbx/sb-1");
  assert.deepEqual(s.linux.resources.memory, { limit: 268435456, swap: 268435456 });
  assert.deepEqual(s.linux.resources.pids, { limit: 100 });
  assert.deepEqual(s.linux.resources.cpu, { quota: 150000, period: 100000 });
  assert.deepEqual(s.linux.resources.devices[0], { allow: false, access: "rwm" });
  assert.equal(s.linux.resources.devices.filter((d: Any) => d.allow).length, 8);
  const withNs = toOciSpec(input, { ...host, netnsPath: "/var/run/netns/sbx-sb-1" }) as Any;
  assert.deepEqual(withNs.linux.namespaces.find((n: Any) => n.type === "network"), { type: "network", path: "/var/run/netns/sbx-sb-1" });
  const noSwap = toOciSpec(input, { ...host, swapAccounting: false }) as Any;
  assert.deepEqual(noSwap.linux.resources.memory, { limit: 268435456 });
});

test("mounts: kernel fs options, ro sysfs/cgroup, run dir, agent, /etc files", () => {
  const s = toOciSpec(input, host) as Any;
  const m = (d: string) => s.mounts.find((x: Any) => x.destination === d);
  assert.deepEqual(m("/dev").options, ["nosuid", "strictatime", "mode=755", "size=65536k"]);
  assert.ok(!m("/dev/pts").options.some((o: string) => o.startsWith("gid=")));
  assert.ok(m("/dev/pts").options.includes("newinstance"));
  assert.ok(m("/dev/shm").options.includes("noexec"));
  assert.ok(m("/sys").options.includes("ro"));
  assert.ok(m("/sys/fs/cgroup").options.includes("ro"));
  assert.ok(m("/tmp").options.some((o: string) => o.startsWith("size=")));
  assert.deepEqual(m("/.sbx"), { destination: "/.sbx", type: "bind", source: host.runDir, options: ["rbind", "rw", "nosuid", "nodev"] });
  assert.equal(m("/.sbx/bin/sbx-agent").source, host.agentPath);
  assert.ok(m("/.sbx/bin/sbx-agent").options.includes("ro"));
  for (const f of ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"]) assert.ok(m(f).options.includes("ro"), f);
  // /.sbx is mounted before the agent binary inside it.
  const dests = s.mounts.map((x: Any) => x.destination);
  assert.ok(dests.indexOf("/.sbx") < dests.indexOf("/.sbx/bin/sbx-agent"));
  assert.ok(s.linux.maskedPaths.includes("/proc/kcore"));
  assert.ok(s.linux.maskedPaths.includes("/sys/firmware"));
  assert.ok(s.linux.readonlyPaths.includes("/proc/sys"));
});

test("binDir: agent/build bound read-only at /.sbx/bin; extra masked paths", () => {
  const s = toOciSpec(input, {
    ...host,
    binDir: "/opt/sbx/build",
    extraMaskedPaths: ["/sys/devices/system/cpu/cpu0/thermal_throttle"],
  }) as Any;
  const bin = s.mounts.find((x: Any) => x.destination === "/.sbx/bin");
  assert.deepEqual(bin, { destination: "/.sbx/bin", type: "bind", source: "/opt/sbx/build", options: ["rbind", "ro", "nosuid", "nodev"] });
  assert.ok(!s.mounts.some((x: Any) => x.destination === "/.sbx/bin/sbx-agent"), "no separate agent bind");
  assert.equal(s.process.args[0], "/.sbx/bin/sbx-agent");
  const dests = s.mounts.map((x: Any) => x.destination);
  assert.ok(dests.indexOf("/.sbx") < dests.indexOf("/.sbx/bin"));
  assert.ok(s.linux.maskedPaths.includes("/sys/devices/system/cpu/cpu0/thermal_throttle"));
  for (const p of MASKED_PATHS) assert.ok(s.linux.maskedPaths.includes(p), p);
});

test("noCgroups (crun without a cgroup manager): /sys/fs/cgroup is an empty read-only tmpfs", () => {
  const s = toOciSpec(input, { ...host, noCgroups: true }) as Any;
  const cg = s.mounts.filter((x: Any) => x.destination.startsWith("/sys/fs/cgroup"));
  assert.deepEqual(cg.map((x: Any) => [x.destination, x.type]), [["/sys/fs/cgroup", "tmpfs"]]);
  assert.ok(cg[0].options.includes("ro"));
});

test("cgroup v1: /sys/fs/cgroup as read-only binds", () => {
  const s = toOciSpec(input, {
    ...host,
    cgroupV1: { parent: "/d/cg", hierarchies: [{ name: "memory", source: "/sys/fs/cgroup/memory/sbx/sb-1" }] },
  }) as Any;
  const cg = s.mounts.filter((x: Any) => x.destination.startsWith("/sys/fs/cgroup"));
  assert.deepEqual(cg.map((x: Any) => [x.destination, x.type, x.source]), [
    ["/sys/fs/cgroup", "bind", "/d/cg"],
    ["/sys/fs/cgroup/memory", "bind", "/sys/fs/cgroup/memory/sbx/sb-1"],
  ]);
  for (const x of cg) assert.ok(x.options.includes("ro"));
  assert.ok(!s.mounts.some((x: Any) => x.type === "cgroup"));
});

test("seccomp: default deny with EPERM, argument filters, denied list", () => {
  const p = seccompProfile();
  assert.equal(p.defaultAction, "SCMP_ACT_ERRNO");
  assert.equal(p.defaultErrnoRet, 1);
  // The native ABI only: x86 and x32 syscalls hit the bad-arch action (the thread is killed).
  assert.deepEqual(p.architectures, [process.arch === "arm64" ? "SCMP_ARCH_AARCH64" : "SCMP_ARCH_X86_64"]);
  const rules = (n: string) => p.syscalls.filter((r) => r.names.includes(n));
  assert.deepEqual(rules("clone"), [
    { names: ["clone"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }] },
  ]);
  assert.deepEqual(rules("clone3"), [{ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 }]);
  assert.deepEqual(rules("personality").map((r) => r.args![0]!.value), [0, 8, 0x20000, 0x20008, 0xffffffff]);
  assert.deepEqual(rules("socket").map((r) => [r.args![0]!.op, r.args![0]!.value]), [
    ["SCMP_CMP_LT", 38],
    ["SCMP_CMP_EQ", 39],
    ["SCMP_CMP_GT", 40],
  ]);
  const allowed = new Set(p.syscalls.flatMap((r) => (r.action === "SCMP_ACT_ALLOW" ? r.names : [])));
  for (const n of DENIED_SYSCALLS) assert.ok(!allowed.has(n), `${n} must not be allowed`);
  assert.equal(new Set(ALLOWED_SYSCALLS).size, ALLOWED_SYSCALLS.length, "no duplicates");
  for (const n of ["read", "write", "execve", "epoll_wait", "accept4", "wait4", "mmap"]) assert.ok(allowed.has(n), n);
  // Issue 5's list, each name explicitly: never in an ALLOW rule.
  const issue5 = [
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "mount", "umount", "umount2", "fsopen", "fsmount", "move_mount", "open_tree", "pivot_root",
    "unshare", "setns", "open_by_handle_at", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "swapon", "swapoff", "reboot", "clock_settime",
  ];
  for (const n of issue5) {
    assert.ok(DENIED_SYSCALLS.includes(n), `${n} listed as denied`);
    assert.ok(!allowed.has(n), `${n} must not be allowed`);
  }
});
