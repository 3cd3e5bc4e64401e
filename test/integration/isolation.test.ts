// The isolation defaults, checked from inside a sandbox as an attacker would
// and from the host by inspecting the sandbox's processes.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { readFile, readdir } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import type { App, SbxClient, Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let client: SbxClient;
let app: App;
let sb: Sandbox;

before(async () => {
  server = await startTestServer();
  client = server.client();
  app = await client.apps.fromName("it-isolation", { createIfMissing: true });
  sb = await client.sandboxes.create(app);
});

after(async () => {
  await sb?.terminate().catch(() => undefined);
  await server?.stop();
});

async function sh(script: string, box: Sandbox = sb): Promise<{ code: number; out: string; err: string }> {
  const p = await box.exec(["sh", "-c", script]);
  const [out, err, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
  return { code, out, err };
}

test("posture: NoNewPrivs, seccomp filter, capabilities no wider than the default set", async () => {
  const { out } = await sh("cat /proc/self/status");
  const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, "m").exec(out)?.[1];
  assert.equal(field("NoNewPrivs"), "1");
  assert.equal(field("Seccomp"), "2");
  const allowed = 0x800405fbn;
  for (const set of ["CapEff", "CapPrm", "CapBnd"]) {
    const caps = BigInt(`0x${field(set)}`);
    assert.equal(caps & ~allowed, 0n, `${set} ${field(set)} is wider than 00000000800405fb`);
  }
  assert.equal(BigInt(`0x${field("CapInh")}`), 0n);
  assert.equal(BigInt(`0x${field("CapAmb")}`), 0n);
});

test("uid 0 inside is an unprivileged uid on the host", async () => {
  const { out } = await sh("id -u; cat /proc/self/uid_map");
  const [uid, map] = out.trim().split("\n");
  assert.equal(uid, "0");
  const [inside, outside, count] = map!.trim().split(/\s+/).map(Number);
  assert.equal(inside, 0);
  assert.ok(outside! >= 100000, `root maps to host uid ${outside}`);
  assert.ok(count! <= 65536);

  // From the host: the sandbox's processes run as that uid, not as root.
  const p = await sb.exec(["sleep", "30"]);
  const hostPids = await pidsWithCmdline("sleep\u000030\u0000");
  assert.ok(hostPids.length > 0, "did not find the sandbox's sleep on the host");
  for (const pid of hostPids) {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const hostUid = Number(/^Uid:\s+(\d+)/m.exec(status)![1]);
    assert.equal(hostUid, outside, `pid ${pid} runs as host uid ${hostUid}`);
  }
  await p.stdin.close();
});

test("mount and unshare fail inside", async () => {
  const m = await sh("mkdir -p /tmp/m && mount -t tmpfs x /tmp/m");
  assert.notEqual(m.code, 0, "mount -t tmpfs succeeded");
  const u = await sh("unshare -U true");
  assert.notEqual(u.code, 0, "unshare -U succeeded");
  const r = await sh("unshare -r true");
  assert.notEqual(r.code, 0, "unshare -r succeeded");
});

test("the server's port and other host services are unreachable", async () => {
  const serverPort = new URL(server.url).port;
  // A listener on every host address, as a host service would be.
  const listener: Server = createServer((s) => s.end("host-secret\n"));
  await new Promise<void>((r) => listener.listen(0, "0.0.0.0", r));
  const hostPort = (listener.address() as { port: number }).port;
  const hostAddrs = Object.values(networkInterfaces())
    .flat()
    .filter((a) => a && a.family === "IPv4")
    .map((a) => a!.address);
  try {
    const targets = [...hostAddrs, "10.88.0.1"].flatMap((ip) => [`${ip}:${serverPort}`, `${ip}:${hostPort}`]);
    const script = `
import socket, sys
reached = []
for t in sys.argv[1:]:
    host, port = t.rsplit(":", 1)
    s = socket.socket(); s.settimeout(1.5)
    try:
        s.connect((host, int(port))); reached.append(t)
    except OSError:
        pass
    finally:
        s.close()
print(",".join(reached))
`;
    const p = await sb.exec(["python3", "-c", script, ...targets]);
    const reached = (await p.stdout.readText()).trim();
    assert.equal(await p.wait(), 0);
    assert.equal(reached, "", `the sandbox reached ${reached}`);
  } finally {
    listener.close();
  }
});

test("blockNetwork leaves loopback only", async () => {
  const isolated = await client.sandboxes.create(app, undefined, { blockNetwork: true });
  try {
    const { out } = await sh("ls /sys/class/net", isolated);
    assert.deepEqual(out.trim().split(/\s+/), ["lo"]);
  } finally {
    await isolated.terminate();
  }
});

async function pidsWithCmdline(cmdline: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const c = await readFile(`/proc/${d}/cmdline`, "utf8").catch(() => "");
    if (c === cmdline) out.push(Number(d));
  }
  return out;
}

test("a sandbox cannot make the server read host files through its output files", async () => {
  // The run directory is the sandbox's to write: plant a symlink to a host
  // file and a FIFO where two processes' outputs live, then read them.
  const victim = await sb.exec(["sleep", "1"]);
  const fifoVictim = await sb.exec(["sleep", "1"]);
  const plant = await sb.exec([
    "sh",
    "-c",
    `cd /.sbx/procs && rm -f ${victim.execId}/stdout ${fifoVictim.execId}/stdout &&
     ln -s /etc/shadow ${victim.execId}/stdout && mkfifo ${fifoVictim.execId}/stdout && echo planted`,
  ]);
  assert.equal(await plant.stdout.readText(), "planted\n");
  await victim.wait();
  await fifoVictim.wait();
  assert.equal(await victim.stdout.readText(), "");
  assert.equal(await fifoVictim.stdout.readText(), "");
  // The server still serves this sandbox.
  const p = await sb.exec(["echo", "still here"]);
  assert.equal(await p.stdout.readText(), "still here\n");
});
