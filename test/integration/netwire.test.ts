// sbx-netwire (agent/netwire.c), the helper setupSandboxNetwork runs: the real
// binary wiring the network namespace of a real process that, like a
// sandbox, has its own user namespace, to a throwaway bridge (own name, own
// 10.199.x.0/24, so a running sbx server is not touched); then checked from
// outside with `ip -j -d` and a TCP connection to the gateway, and removed
// with teardownSandboxNetwork (`ip netns del`). Needs root and the agent build.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readlinkSync, statSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { hostVethName, netnsName, netnsPath, teardownSandboxNetwork } from "../../packages/server/src/net/index.js";

const AGENT_DIR = process.env.SBX_AGENT_DIR ?? join(import.meta.dirname, "../../agent/build");
const WIRE = join(AGENT_DIR, "sbx-netwire");
const skip = process.getuid?.() !== 0 ? "needs root" : !existsSync(join(AGENT_DIR, "sbx-agent")) ? `no agent at ${AGENT_DIR} (make -C agent)` : false;

const tag = randomBytes(3).toString("hex");
const bridge = `sbxt${tag}`;
const net = `10.199.${1 + (randomBytes(1)[0]! % 254)}`;
const gateway = `${net}.1`;

const children: ChildProcess[] = [];
/** Sandbox ids whose netns name / veth the tests may have made. */
const ids: string[] = [];

/** A sleeping process in its own user and network namespace. */
async function sandboxLike(): Promise<number> {
  const c = spawn("unshare", ["--user", "--map-root-user", "--net", "sleep", "600"], { stdio: "ignore" });
  children.push(c);
  const ours = readlinkSync("/proc/self/ns/net");
  for (let i = 0; i < 500; i++) {
    try {
      if (readlinkSync(`/proc/${c.pid}/ns/net`) !== ours) return c.pid!;
    } catch {
      /* not started yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("unshare did not start");
}

function newId(): string {
  const id = `nwt-${tag}-${ids.length}`;
  ids.push(id);
  return id;
}

function wire(...args: string[]) {
  return spawnSync(WIRE, args, { encoding: "utf8" });
}

function ipJson<T = Record<string, any>[]>(...args: string[]): T {
  return JSON.parse(execFileSync("ip", ["-j", ...args], { encoding: "utf8" }) || "[]") as T;
}

describe("sbx-netwire", { skip }, () => {
  before(() => {
    execFileSync("ip", ["link", "add", bridge, "type", "bridge"]);
    execFileSync("ip", ["addr", "add", `${gateway}/24`, "dev", bridge]);
    execFileSync("ip", ["link", "set", bridge, "up"]);
  });
  after(async () => {
    for (const id of ids) await teardownSandboxNetwork(id).catch(() => undefined);
    for (const c of children) c.kill("SIGKILL");
    spawnSync("ip", ["link", "del", bridge]);
  });

  describe("full wiring", () => {
    const id = newId();
    const ns = netnsName(id);
    const veth = hostVethName(id);
    const address = `${net}.7`;
    let pid = 0;
    let listener: Server | undefined;
    before(async () => {
      pid = await sandboxLike();
      const r = wire(ns, String(pid), veth, bridge, `${address}/24`, gateway);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, "");
    });
    after(() => listener?.close());

    test("the name is listed by `ip netns` and is the process's namespace", () => {
      assert.ok(ipJson("netns", "list").some((n) => n.name === ns), "ip netns list");
      assert.equal(statSync(netnsPath(id)).ino, statSync(`/proc/${pid}/ns/net`).ino);
      assert.match(execFileSync("findmnt", ["-n", "-o", "PROPAGATION", "/var/run/netns"], { encoding: "utf8" }), /^shared/);
    });

    test("inside: lo and eth0 up, the address on eth0, the default route via the gateway", () => {
      const links = ipJson("-n", ns, "addr", "show");
      assert.deepEqual(links.map((l) => l.ifname).sort(), ["eth0", "lo"]);
      const lo = links.find((l) => l.ifname === "lo")!;
      const eth0 = links.find((l) => l.ifname === "eth0")!;
      assert.ok(lo.flags.includes("UP"), `lo: ${lo.flags}`);
      assert.ok(eth0.flags.includes("UP") && eth0.flags.includes("LOWER_UP"), `eth0: ${eth0.flags}`);
      assert.deepEqual(
        eth0.addr_info.filter((a: any) => a.family === "inet").map((a: any) => `${a.local}/${a.prefixlen}`),
        [`${address}/24`],
      );
      assert.deepEqual(
        ipJson("-n", ns, "route", "show", "default").map((r) => [r.dst, r.gateway, r.dev]),
        [["default", gateway, "eth0"]],
      );
    });

    test("host side: the veth is up in the bridge, an isolated port that does not learn", () => {
      const [l] = ipJson("-d", "link", "show", "dev", veth);
      assert.equal(l!.master, bridge);
      assert.ok(l!.flags.includes("UP") && l!.flags.includes("LOWER_UP"), `${veth}: ${l!.flags}`);
      assert.equal(l!.linkinfo.info_kind, "veth");
      assert.equal(l!.linkinfo.info_slave_kind, "bridge");
      assert.equal(l!.linkinfo.info_slave_data.isolated, true);
      assert.equal(l!.linkinfo.info_slave_data.learning, false);
    });

    test("the process reaches the gateway over the veth", async () => {
      listener = createServer((s) => s.end("hello\n"));
      await new Promise<void>((r) => listener!.listen(0, gateway, r));
      const port = (listener.address() as AddressInfo).port;
      const { stdout } = await promisify(execFile)("nsenter", [
        `--net=/proc/${pid}/ns/net`,
        "bash",
        "-c",
        `exec 3<>/dev/tcp/${gateway}/${port} && timeout 5 head -n1 <&3`,
      ]);
      assert.equal(stdout, "hello\n");
    });

    test("again with the same name, or the same veth: exit 1, one line naming the step", async () => {
      const again = wire(ns, String(pid), veth, bridge, `${address}/24`, gateway);
      assert.equal(again.status, 1);
      assert.equal(again.stderr, `sbx-netwire: attach netns ${ns}: File exists\n`);
      const other = newId();
      const pid2 = await sandboxLike();
      const sameVeth = wire(netnsName(other), String(pid2), veth, bridge, `${net}.8/24`, gateway);
      assert.equal(sameVeth.status, 1);
      assert.equal(sameVeth.stderr, `sbx-netwire: add veth ${veth}: File exists\n`);
      const noBridge = wire(netnsName(newId()), String(pid2), `sbxtv${tag}`, `sbxtno${tag}`, `${net}.9/24`, gateway);
      assert.equal(noBridge.status, 1);
      assert.equal(noBridge.stderr, `sbx-netwire: find bridge sbxtno${tag}: No such device\n`);
    });

    test("teardownSandboxNetwork removes the name and the veth", async () => {
      await teardownSandboxNetwork(id);
      assert.ok(!existsSync(netnsPath(id)));
      assert.ok(!ipJson("netns", "list").some((n) => n.name === ns));
      assert.ok(!existsSync(`/sys/class/net/${veth}`));
    });
  });

  test("blockNetwork form: only the name, nothing but lo inside", async () => {
    const id = newId();
    const pid = await sandboxLike();
    const r = wire(netnsName(id), String(pid));
    assert.equal(r.status, 0, r.stderr);
    assert.equal(statSync(netnsPath(id)).ino, statSync(`/proc/${pid}/ns/net`).ino);
    assert.deepEqual(ipJson("-n", netnsName(id), "link", "show").map((l) => l.ifname), ["lo"]);
    assert.ok(!existsSync(`/sys/class/net/${hostVethName(id)}`));
  });

  test("refuses the host's own network namespace", () => {
    const id = newId();
    const r = wire(netnsName(id), String(process.pid));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^sbx-netwire: refusing the host's own network namespace/);
    assert.ok(!existsSync(netnsPath(id)));
  });

  test("bad arguments: exit 2 with a usage message, nothing made", async () => {
    const pid = String(await sandboxLike());
    const id = newId();
    const ns = netnsName(id);
    const ok = [ns, pid, `sbxtv${tag}`, bridge, `${net}.20/24`, gateway];
    const but = (i: number, v: string) => ok.map((a, j) => (j === i ? v : a));
    const bad: string[][] = [
      [],
      [ns],
      [ns, pid, `sbxtv${tag}`],
      [ns, "12x"],
      [ns, "-5"],
      [ns, "1"],
      [ns, ""],
      ["", pid],
      ["a/b", pid],
      ["..", pid],
      but(2, "sbxt-too-long-name"),
      but(2, ""),
      but(2, "eth0"),
      but(3, "a b"),
      but(4, `${net}.20`),
      but(4, `${net}.20/33`),
      but(4, `${net}.20/`),
      but(4, `${net}.300/24`),
      but(4, `/24`),
      but(5, "gateway"),
      but(5, "::1"),
    ];
    for (const args of bad) {
      const r = wire(...args);
      assert.equal(r.status, 2, `${JSON.stringify(args)}: ${r.stderr}`);
      assert.match(r.stderr, /^sbx-netwire: .+\nusage: sbx-netwire /, JSON.stringify(args));
    }
    assert.ok(!existsSync(netnsPath(id)));
    assert.ok(!existsSync(`/sys/class/net/sbxtv${tag}`));
  });
});
