// The local backend against the real thing: runc, idmapped mounts, overlayfs,
// netns + veth + nftables, and the sbx-agent binary. Needs root, runc, the
// agent build (make -C agent) and the base rootfs tar.
//
//   node --import tsx --test test/integration/runtime.test.ts
//
// Everything created is removed by path / name at the end.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, chmodSync, copyFileSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import { join } from "node:path";
import { createLocalBackend, type LocalSandbox } from "../../packages/server/src/runtime/index.js";
import { sandboxPaths } from "../../packages/server/src/runtime/rootfs.js";
import { hostVethName, netnsPath, removeHostNetwork, DEFAULT_NET } from "../../packages/server/src/net/index.js";
import type { Backend, ExitStatus, RuntimeSpec } from "../../packages/server/src/core/ports.js";
import { ensureBaseRootfsTar } from "../../packages/server/src/images/index.js";

const AGENT_DIR = process.env.SBX_AGENT_DIR ?? join(import.meta.dirname, "../../agent/build");
// The Debian base rootfs the server builds its default image from (cached host-wide; built if missing).
const BASE_TAR = process.env.SBX_BASE_TAR ?? (await ensureBaseRootfsTar());

const skip =
  process.getuid?.() !== 0
    ? "needs root"
    : !existsSync(join(AGENT_DIR, "sbx-agent"))
      ? `no agent at ${AGENT_DIR} (make -C agent)`
      : !existsSync(BASE_TAR)
        ? `no base rootfs at ${BASE_TAR}`
        : false;

function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => mp === dir || mp.startsWith(dir + "/"));
}

let seq = 0;
async function run(
  sb: LocalSandbox,
  argv: string[],
  timeoutMs = 20_000,
): Promise<{ status: ExitStatus; stdout: string; stderr: string }> {
  const execId = `t${++seq}`;
  await sb.exec({ execId, argv, env: {}, timeoutMs, stdoutIgnore: false, stderrIgnore: false });
  const deadline = Date.now() + timeoutMs + 5000;
  for (;;) {
    const status = await sb.execStatus(execId);
    if (status) {
      const read = (s: "stdout" | "stderr") => {
        try {
          return readFileSync(sb.outputPath(execId, s), "utf8");
        } catch {
          return "";
        }
      };
      return { status, stdout: read("stdout"), stderr: read("stderr") };
    }
    if (Date.now() > deadline) throw new Error(`exec ${argv.join(" ")} did not finish`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const py = (code: string) => ["python3", "-c", code];

describe("local backend (runc)", { skip, concurrency: false }, () => {
  let tmp: string;
  let dataDir: string;
  let layer: string;
  let backend: Backend;
  let bridgeExisted = false;
  let tableExisted = false;
  const sandboxes: string[] = [];
  let a: LocalSandbox;
  let b: LocalSandbox;
  let server: Server;
  let port = 0;
  const logs: string[] = [];

  const spec = (id: string, extra: Partial<RuntimeSpec> = {}): RuntimeSpec => ({
    sandboxId: id,
    image: { imageId: "sha256:test", layers: [layer], config: { env: ["LANG=C.UTF-8"] } },
    env: { SBX_TEST: "1" },
    memoryLimitBytes: 512 * 1024 * 1024,
    pidsLimit: 256,
    cpuLimit: 1,
    blockNetwork: false,
    ...extra,
  });

  before(async () => {
    bridgeExisted = existsSync(`/sys/class/net/${DEFAULT_NET.bridge}`);
    try {
      execFileSync("nft", ["list", "table", "inet", "sbx"], { stdio: "ignore" });
      tableExisted = true;
    } catch {
      tableExisted = false;
    }
    tmp = mkdtempSync("/var/tmp/sbx-rt-test-");
    chmodSync(tmp, 0o711);
    dataDir = join(tmp, "data");
    layer = join(tmp, "layer");
    mkdirSync(layer);
    execFileSync("tar", ["-xf", BASE_TAR, "-C", layer, "--numeric-owner"]);
    const unsafeNoIdmap = !existsSync(join(AGENT_DIR, "sbx-idmap"));
    if (unsafeNoIdmap) console.error("WARNING: sbx-idmap missing, testing without idmapped layers");
    backend = createLocalBackend({ dataDir, agentDir: AGENT_DIR, log: (m) => logs.push(m), unsafeNoIdmap });
    server = createServer((s) => s.end("pong\n"));
    await new Promise<void>((r) => server.listen(0, "0.0.0.0", () => r()));
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    server?.close();
    for (const id of sandboxes) {
      try {
        await backend.cleanup(id);
      } catch (e) {
        console.error(`cleanup ${id}: ${(e as Error).message}`);
      }
    }
    await backend?.close?.(); // unmounts its spare disks
    if (tmp && mountsUnder(tmp).length === 0) rmSync(tmp, { recursive: true, force: true });
    else if (tmp) console.error(`left mounted: ${mountsUnder(tmp).join(" ")}`);
    if (!bridgeExisted && !tableExisted) await removeHostNetwork();
    if (logs.length) console.error(logs.join("\n"));
  });

  test("create, exec python through the agent", async () => {
    const id = `rt-a-${process.pid}`;
    sandboxes.push(id);
    a = (await backend.create(spec(id))) as LocalSandbox;
    console.error("create timings (ms):", JSON.stringify(a.timings, (_k, v: unknown) => (typeof v === "number" ? Math.round(v * 10) / 10 : v)));
    const r = await run(a, py("print('hello')"));
    assert.deepEqual(r.status, { code: 0, reason: "exited" });
    assert.equal(r.stdout, "hello\n");
    const env = await run(a, ["sh", "-c", "echo $SBX_TEST $LANG $PATH; cat /etc/resolv.conf; cat /etc/hostname"]);
    assert.match(env.stdout, /^1 C\.UTF-8 \/usr\/local\/sbin/);
    assert.match(env.stdout, /nameserver 10\.88\.0\.1/);
    assert.match(env.stdout, new RegExp(id));
  });

  test("no_new_privs, seccomp filter, bounded capabilities", async () => {
    const r = await run(a, ["cat", "/proc/self/status"]);
    assert.match(r.stdout, /^NoNewPrivs:\s+1$/m);
    assert.match(r.stdout, /^Seccomp:\s+2$/m);
    const capEff = BigInt("0x" + /^CapEff:\s+([0-9a-f]+)$/m.exec(r.stdout)![1]!);
    assert.equal(capEff & ~0x800405fbn, 0n, `CapEff ${capEff.toString(16)}`);
    const capBnd = BigInt("0x" + /^CapBnd:\s+([0-9a-f]+)$/m.exec(r.stdout)![1]!);
    assert.equal(capBnd & ~0x800405fbn, 0n);
  });

  test("namespace and mount syscalls are refused", async () => {
    assert.notEqual((await run(a, ["unshare", "-U", "true"])).status.code, 0);
    assert.notEqual((await run(a, ["mount", "-t", "tmpfs", "x", "/mnt"])).status.code, 0);
    const sc = await run(a, py(
      "import socket,errno\n" +
      "for fam in (38, 40):\n" +
      "  try: socket.socket(fam, socket.SOCK_SEQPACKET if fam==38 else socket.SOCK_STREAM); print('open', fam)\n" +
      "  except OSError as e: print('refused', fam, e.errno)\n" +
      "socket.socket(socket.AF_INET, socket.SOCK_STREAM).close(); print('inet ok')\n",
    ));
    assert.match(sc.stdout, /refused 38 1\nrefused 40 1\ninet ok/);
  });

  test("cgroup and sysfs are read-only, limits visible", async () => {
    const r = await run(a, ["sh", "-c", "touch /sys/fs/cgroup/x 2>&1; touch /sys/x 2>&1; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max"]);
    assert.match(r.stdout, /Read-only file system[\s\S]*Read-only file system/);
    assert.match(r.stdout, /^536870912\n256\n?$/m);
  });

  test("root inside is the allocated uid base on the host", async () => {
    const status = readFileSync(`/proc/${a.hostPid}/status`, "utf8");
    const uids = /^Uid:\s+(.*)$/m.exec(status)![1]!.split(/\s+/).map(Number);
    assert.ok(a.uidBase >= 200000);
    assert.deepEqual(uids, [a.uidBase, a.uidBase, a.uidBase, a.uidBase]);
    const r = await run(a, ["sh", "-c", "id -u; stat -c %u /etc/passwd; touch /etc/newfile && echo wrote"]);
    assert.equal(r.stdout, "0\n0\nwrote\n");
  });

  test("egress: host loopback and gateway unreachable; host can reach the sandbox", async () => {
    const probe = (host: string) =>
      py(
        "import socket\n" +
        `s=socket.socket(); s.settimeout(2)\n` +
        `try: s.connect(('${host}', ${port})); print('CONNECTED', s.recv(10))\n` +
        "except OSError as e: print('blocked', type(e).__name__)\n",
      );
    for (const host of ["127.0.0.1", DEFAULT_NET.gateway]) {
      const r = await run(a, probe(host));
      assert.match(r.stdout, /^blocked/, `${host}: ${r.stdout}${r.stderr}`);
    }
    // The veth works: the host (not the sandbox) can open a connection in.
    await run(a, ["sh", "-c", "python3 -c \"import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8000)); s.listen(); open('/tmp/ready','w').close(); c,_=s.accept(); c.send(b'ping-from-sandbox')\" >/dev/null 2>&1 &"]);
    const deadline = Date.now() + 5000;
    let got = "";
    while (!got && Date.now() < deadline) {
      got = await new Promise<string>((resolve) => {
        const c = connect({ host: a.address!, port: 8000 });
        let buf = "";
        c.on("data", (d) => (buf += d.toString()));
        c.on("close", () => resolve(buf));
        c.on("error", () => resolve(""));
      });
      if (!got) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(got, "ping-from-sandbox");
  });

  test("blockNetwork: only lo", async () => {
    const id = `rt-b-${process.pid}`;
    sandboxes.push(id);
    b = (await backend.create(spec(id, { blockNetwork: true, command: ["sleep", "infinity"] }))) as LocalSandbox;
    const r = await run(b, ["sh", "-c", "ls /sys/class/net; tail -n +3 /proc/net/dev | cut -d: -f1"]);
    assert.equal(r.stdout.replace(/ /g, ""), "lo\nlo\n");
    assert.equal(existsSync(`/sys/class/net/${hostVethName(id)}`), false);
  });

  test("adopt() from a new Backend reattaches to a running sandbox", async () => {
    const backend2 = createLocalBackend({ dataDir, agentDir: AGENT_DIR, log: (m) => logs.push(m), unsafeNoIdmap: !existsSync(join(AGENT_DIR, "sbx-idmap")) });
    const a2 = (await backend2.adopt(a.sandboxId)) as LocalSandbox | null;
    assert.ok(a2);
    const replayed: string[] = [];
    const heardAfterLeaving: string[] = [];
    a2.onExecExit((id) => replayed.push(id));
    const leave = a2.onExecExit((id) => heardAfterLeaving.push(id));
    await new Promise((r) => setTimeout(r, 50)); // the replay of earlier exits
    leave();
    heardAfterLeaving.length = 0;
    const r = await run(a2, ["echo", "adopted"]);
    assert.equal(r.stdout, "adopted\n");
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(replayed.includes("t1"), `replayed: ${replayed.join(",")}`);
    assert.ok(replayed.includes(`t${seq}`), "the echo's exit was told to the listener still subscribed");
    assert.deepEqual(heardAfterLeaving, [], "an unsubscribed listener hears of no later exit");
    assert.equal(await backend2.adopt("rt-nonexistent"), null);

    // A restart adopts all at once: one runtime list, the agents a few at a time.
    const backend3 = createLocalBackend({ dataDir, agentDir: AGENT_DIR, log: (m) => logs.push(m), unsafeNoIdmap: !existsSync(join(AGENT_DIR, "sbx-idmap")) });
    const all = await backend3.adoptAll([a.sandboxId, b.sandboxId, "rt-nonexistent"]);
    assert.deepEqual([...all.keys()].sort(), [a.sandboxId, b.sandboxId, "rt-nonexistent"].sort());
    assert.equal(all.get("rt-nonexistent"), null);
    for (const id of [a.sandboxId, b.sandboxId]) {
      const sb = all.get(id) as LocalSandbox | null;
      assert.ok(sb, `${id} adopted`);
      assert.equal(sb.hostPid, id === a.sandboxId ? a.hostPid : b.hostPid);
      assert.equal((await run(sb, ["echo", id])).stdout, `${id}\n`, "its agent answers");
    }
  });

  test("entrypoint exit ends the sandbox with its code", async () => {
    const id = `rt-c-${process.pid}`;
    sandboxes.push(id);
    const c = (await backend.create(spec(id, { blockNetwork: true, command: ["sh", "-c", "sleep 0.2; exit 7"] }))) as LocalSandbox;
    assert.deepEqual(await c.waitExit(), { code: 7, oom: false });
    await c.destroy();
  });

  test("the death of a sandbox's PID 1 is seen at once: the agent's dropped connection wakes waitExit", async () => {
    // A fallback look every 10 minutes: only the wake-up can see this death in time.
    const slow = createLocalBackend({
      dataDir: join(tmp, "data-slow-poll"),
      agentDir: AGENT_DIR,
      log: (m) => logs.push(m),
      unsafeNoIdmap: !existsSync(join(AGENT_DIR, "sbx-idmap")),
      exitPollMs: 600_000,
      diskPoolSize: 0,
    });
    const id = `rt-p-${process.pid}`;
    try {
      const sb = (await slow.create(spec(id, { blockNetwork: true }))) as LocalSandbox;
      const exited = sb.waitExit();
      process.kill(sb.hostPid, "SIGKILL");
      const late = new Promise((r) => setTimeout(() => r("not seen within 10 s"), 10_000).unref());
      assert.deepEqual(await Promise.race([exited, late]), { code: 137, oom: false });
      await sb.destroy();
    } finally {
      await slow.cleanup(id).catch(() => undefined);
      await slow.close?.();
    }
  });

  test("a create that fails after the runtime started the container leaves no process, even when `runc delete` fails too", async () => {
    // A `runc` that refuses to delete, first on PATH, and an agent dir whose
    // sbx-netwire fails: the create fails after `runc run` and has to undo it.
    const bin = join(tmp, "failing-runc");
    mkdirSync(bin, { recursive: true });
    const realRunc = execFileSync("sh", ["-c", "command -v runc"], { encoding: "utf8" }).trim();
    writeFileSync(
      join(bin, "runc"),
      `#!/bin/sh\nfor a in "$@"; do [ "$a" = delete ] && { echo "refusing to delete (test)" >&2; exit 1; }; done\nexec ${realRunc} "$@"\n`,
      { mode: 0o755 },
    );
    const agentDir = join(tmp, "agent-failing-net");
    mkdirSync(agentDir, { recursive: true });
    for (const f of readdirSync(AGENT_DIR)) copyFileSync(join(AGENT_DIR, f), join(agentDir, f));
    writeFileSync(join(agentDir, "sbx-netwire"), `#!/bin/sh\necho "wiring refused (test)" >&2\nexit 1\n`, { mode: 0o755 });
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    const id = "rt-undo-0001";
    sandboxes.push(id);
    const failing = createLocalBackend({ dataDir: join(tmp, "data-undo"), agentDir, log: (m) => logs.push(m) });
    try {
      await assert.rejects(failing.create(spec(id)), /wiring refused/);
      assert.ok(logs.some((l) => l.includes(id) && /refusing to delete/.test(l)), "the runtime's delete failed, as arranged");
      // Nothing of the sandbox runs any more: no process is left in its cgroups.
      const inSandbox = () =>
        readdirSync("/proc")
          .filter((d) => /^\d+$/.test(d))
          .filter((d) => {
            try {
              return readFileSync(`/proc/${d}/cgroup`, "utf8").includes(`/${id}`);
            } catch {
              return false;
            }
          });
      for (let i = 0; i < 100 && inSandbox().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(inSandbox(), [], "processes of the failed sandbox are still running");
    } finally {
      process.env.PATH = path;
      await failing.cleanup(id).catch(() => undefined);
      await failing.close?.();
    }
  });

  test("kill + destroy leave no mounts, netns, veth", async () => {
    for (const sb of [a, b]) {
      await sb.kill();
      assert.deepEqual(await sb.waitExit(), { code: 137, oom: false });
      await sb.destroy();
      await sb.destroy(); // idempotent
      assert.deepEqual(mountsUnder(join(dataDir, "sandboxes", sb.sandboxId)), []);
      assert.equal(existsSync(netnsPath(sb.sandboxId)), false);
      assert.equal(existsSync(`/sys/class/net/${hostVethName(sb.sandboxId)}`), false);
      assert.equal(existsSync(join(dataDir, "sandboxes", sb.sandboxId, "run", "procs")), true);
    }
    assert.deepEqual(mountsUnder(join(dataDir, "sandboxes")), []);
  });

  test("start-up cleans what a destroyed sandbox left: a mount under its dir, a loop device on its image", async () => {
    // Start-up looks at the host's mounts and loop devices once for every
    // sandbox kept in the data dir; what it finds must still be each one's
    // own. One leftover each, and nothing else of them left, so that no
    // other sign (a dir, the image) hides a miss.
    const pa = sandboxPaths(dataDir, a.sandboxId);
    const pb = sandboxPaths(dataDir, b.sandboxId);
    const stray = join(pa.dir, "stray-mount");
    mkdirSync(stray);
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "sbx-test", stray]);
    writeFileSync(pb.diskImage, Buffer.alloc(1 << 20));
    const loop = execFileSync("losetup", ["--find", "--show", pb.diskImage], { encoding: "utf8" }).trim();
    rmSync(pb.diskImage); // the device keeps it: "… (deleted)"
    const backing = () => {
      try {
        return readFileSync(`/sys/block/${loop.replace("/dev/", "")}/loop/backing_file`, "utf8").trim();
      } catch {
        return "";
      }
    };
    try {
      assert.equal(backing(), `${pb.diskImage} (deleted)`);
      const cleaned = await (backend as ReturnType<typeof createLocalBackend>).cleanupOrphans([]);
      assert.ok(cleaned.includes(a.sandboxId), `the one with a mount left; cleaned: ${cleaned.join(", ")}`);
      assert.ok(cleaned.includes(b.sandboxId), `the one with a loop device left; cleaned: ${cleaned.join(", ")}`);
      assert.ok(!cleaned.includes(`rt-c-${process.pid}`), "a destroyed sandbox with nothing left is not touched");
      assert.deepEqual(mountsUnder(pa.dir), []);
      assert.notEqual(backing(), `${pb.diskImage} (deleted)`, "the loop device on the image was detached");
      for (const p of [pa, pb]) assert.equal(existsSync(join(p.run, "procs")), true, "outputs are kept");
    } finally {
      for (const m of mountsUnder(pa.dir)) execFileSync("umount", ["-l", m]);
      if (backing() === `${pb.diskImage} (deleted)`) execFileSync("losetup", ["-d", loop]);
    }
  });
});
