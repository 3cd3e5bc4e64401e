// Sandbox networking on one host.
//
// Host side (ensureHostNetwork, idempotent): a bridge (sbx0, 10.88.0.1/16),
// IPv4 forwarding, and one nftables table `inet sbx` replaced atomically:
//   - masquerade what leaves the sandbox subnet through any other interface;
//   - forward: sandboxes may not reach private, link-local, CGNAT or loopback
//     ranges (so not the host's LAN, metadata services, or each other via the
//     gateway), and no IPv6 at all;
//   - input: from the bridge only DNS (udp/tcp 53) to the gateway address, plus
//     replies to connections the host opened; everything else to the host
//     itself (any of its addresses) is dropped.
// Bridge ports are isolated, so sandboxes cannot talk to each other at L2.
//
// Per sandbox (setupSandboxNetwork): the sandbox's network namespace is named
// `sbx-<id>` under /var/run/netns (attached from the sandbox's PID 1 like
// `ip netns attach`, so it is owned by the sandbox's user namespace and sysfs
// can be mounted inside); a veth pair `sbx<8 hex>` (host, in sbx0, isolated) ↔
// `eth0` (sandbox) with an address from the subnet and a default route via
// the gateway. blockNetwork: nothing but `lo`. One spawn of sbx-netwire
// (agent/netwire.c, raw rtnetlink): the two `ip -batch` runs it replaced (one
// of them `ip -n`, which makes a mount namespace and remounts sysfs) took
// 20-30 ms longer on this project's machine.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { runTool } from "../run-tool.js";

export interface NetConfig {
  bridge: string;
  /** Gateway (bridge) address. */
  gateway: string;
  /** Prefix length of the sandbox subnet (the gateway's network). */
  prefixLength: number;
  /** Ranges sandboxes may never reach (besides the host itself). */
  blockedRanges: string[];
}

export const DEFAULT_NET: NetConfig = {
  bridge: "sbx0",
  gateway: "10.88.0.1",
  prefixLength: 16,
  blockedRanges: [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
  ],
};

export const NFT_TABLE = "sbx";
const NETNS_DIR = "/var/run/netns";

export class NetError extends Error {
  constructor(
    message: string,
    readonly stderrTail = "",
  ) {
    super(message);
    this.name = "NetError";
  }
}

// ---------------------------------------------------------------- helpers

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return runTool(cmd, args, input === undefined ? {} : { input }, (message, stderr) => new NetError(message, stderr));
}

export function ipToInt(ip: string): number {
  const p = ip.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new NetError(`bad IPv4 ${ip}`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}
export function subnetOf(cfg: NetConfig): string {
  const mask = cfg.prefixLength === 0 ? 0 : (0xffffffff << (32 - cfg.prefixLength)) >>> 0;
  return `${intToIp((ipToInt(cfg.gateway) & mask) >>> 0)}/${cfg.prefixLength}`;
}

/** Host-side veth name: ≤ 15 chars, stable per sandbox. */
export function hostVethName(sandboxId: string): string {
  return "sbx" + createHash("sha256").update(sandboxId).digest("hex").slice(0, 8);
}
export function netnsName(sandboxId: string): string {
  return `sbx-${sandboxId}`;
}
export function netnsPath(sandboxId: string): string {
  return `${NETNS_DIR}/${netnsName(sandboxId)}`;
}

/** A free address in the subnet, not the gateway, not in `used`. */
export function allocateAddress(used: Iterable<string>, cfg: NetConfig = DEFAULT_NET): string {
  const taken = new Set(used);
  taken.add(cfg.gateway);
  const mask = (0xffffffff << (32 - cfg.prefixLength)) >>> 0;
  const net = (ipToInt(cfg.gateway) & mask) >>> 0;
  const size = 2 ** (32 - cfg.prefixLength);
  for (let i = 2; i < size - 1; i++) {
    const ip = intToIp((net + i) >>> 0);
    if (!taken.has(ip)) return ip;
  }
  throw new NetError("sandbox subnet exhausted");
}

/**
 * Host-wide address claims (one file per address under /run/sbx/addrs,
 * created with O_EXCL), so two servers on one host never share an address.
 */
export const ADDR_CLAIMS_DIR = "/run/sbx/addrs";

export function claimAddress(owner: string, used: Iterable<string>, cfg: NetConfig = DEFAULT_NET): string {
  mkdirSync(ADDR_CLAIMS_DIR, { recursive: true, mode: 0o700 });
  const skip = new Set(used);
  for (let attempt = 0; attempt < 1000; attempt++) {
    for (const n of readdirSync(ADDR_CLAIMS_DIR)) skip.add(n);
    const ip = allocateAddress(skip, cfg);
    try {
      writeFileSync(`${ADDR_CLAIMS_DIR}/${ip}`, owner + "\n", { flag: "wx", mode: 0o600 });
      return ip;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      skip.add(ip);
    }
  }
  throw new NetError("cannot claim an address");
}

export function releaseAddress(ip: string, owner: string): void {
  const f = `${ADDR_CLAIMS_DIR}/${ip}`;
  try {
    if (readFileSync(f, "utf8").trim() === owner) rmSync(f, { force: true });
  } catch {
    /* not claimed */
  }
}

// ---------------------------------------------------------------- host side

export function nftRuleset(cfg: NetConfig = DEFAULT_NET): string {
  const subnet = subnetOf(cfg);
  const br = JSON.stringify(cfg.bridge);
  return `table inet ${NFT_TABLE}
delete table inet ${NFT_TABLE}
table inet ${NFT_TABLE} {
  set blocked4 {
    type ipv4_addr
    flags interval
    elements = { ${cfg.blockedRanges.join(", ")} }
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${subnet} oifname != ${br} masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname ${br} meta nfproto ipv6 drop
    oifname ${br} meta nfproto ipv6 drop
    iifname ${br} ip daddr @blocked4 drop
    iifname ${br} fib daddr type local drop
    oifname ${br} ct state established,related accept
    oifname ${br} iifname != ${br} ct state new drop
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname ${br} ct state established,related accept
    iifname ${br} ip daddr ${cfg.gateway} udp dport 53 accept
    iifname ${br} ip daddr ${cfg.gateway} tcp dport 53 accept
    iifname ${br} drop
  }
}
`;
}

/** Bridge, forwarding and firewall. Idempotent; safe to call at every start. */
export async function ensureHostNetwork(cfg: NetConfig = DEFAULT_NET): Promise<void> {
  const addr = `${cfg.gateway}/${cfg.prefixLength}`;
  if (!existsSync(`/sys/class/net/${cfg.bridge}`)) {
    await run("ip", ["-batch", "-"], `link add ${cfg.bridge} type bridge\n`).catch((e: NetError) => {
      if (!/File exists/.test(e.stderrTail)) throw e;
    });
  }
  try {
    writeFileSync(`/proc/sys/net/ipv6/conf/${cfg.bridge}/disable_ipv6`, "1");
  } catch {
    /* no IPv6 on this host */
  }
  const shown = await run("ip", ["-j", "addr", "show", "dev", cfg.bridge]);
  const info = JSON.parse(shown) as { addr_info?: { family: string; local: string; prefixlen: number }[] }[];
  const has = (info[0]?.addr_info ?? []).some((a) => a.family === "inet" && a.local === cfg.gateway && a.prefixlen === cfg.prefixLength);
  await run(
    "ip",
    ["-batch", "-"],
    (has ? "" : `addr add ${addr} dev ${cfg.bridge}\n`) + `link set ${cfg.bridge} up\n`,
  );
  writeFileSync("/proc/sys/net/ipv4/ip_forward", "1");
  await run("nft", ["-f", "-"], nftRuleset(cfg));
}

/** Removes the firewall table and the bridge (tests, uninstall). */
export async function removeHostNetwork(cfg: NetConfig = DEFAULT_NET): Promise<void> {
  await run("nft", ["delete", "table", "inet", NFT_TABLE]).catch(() => undefined);
  if (existsSync(`/sys/class/net/${cfg.bridge}`)) await run("ip", ["link", "del", cfg.bridge]).catch(() => undefined);
}

// ---------------------------------------------------------------- per sandbox

export interface SandboxNetSetup {
  sandboxId: string;
  /** PID (host view) of a process inside the sandbox's network namespace. */
  pid: number;
  blockNetwork: boolean;
  /** Required unless blockNetwork. */
  address?: string;
  /** The sbx-netwire helper (agent/build). */
  wireBin: string;
}

export interface SandboxNet {
  netns: string;
  hostVeth?: string;
  address?: string;
  ms: number;
}

/**
 * Names the sandbox's network namespace and, unless blockNetwork, wires it
 * to the bridge. On failure undoes what it did.
 */
export async function setupSandboxNetwork(s: SandboxNetSetup, cfg: NetConfig = DEFAULT_NET): Promise<SandboxNet> {
  const t0 = performance.now();
  const ns = netnsName(s.sandboxId);
  if (!Number.isInteger(s.pid) || s.pid <= 1) throw new NetError(`bad pid ${s.pid}`);
  if (s.blockNetwork) {
    // The runtime already brought lo up in the fresh namespace.
    await run(s.wireBin, [ns, String(s.pid)]);
    return { netns: ns, ms: performance.now() - t0 };
  }
  if (!s.address) throw new NetError("address required");
  const veth = hostVethName(s.sandboxId);
  try {
    await run(s.wireBin, [ns, String(s.pid), veth, cfg.bridge, `${s.address}/${cfg.prefixLength}`, cfg.gateway]);
  } catch (e) {
    await teardownSandboxNetwork(s.sandboxId).catch(() => undefined);
    throw e;
  }
  return { netns: ns, hostVeth: veth, address: s.address, ms: performance.now() - t0 };
}

/** Removes the veth and the netns name. Idempotent. */
export async function teardownSandboxNetwork(sandboxId: string): Promise<void> {
  const veth = hostVethName(sandboxId);
  const lines: string[] = [];
  if (existsSync(`/sys/class/net/${veth}`)) lines.push(`link del ${veth}`);
  if (existsSync(netnsPath(sandboxId))) lines.push(`netns del ${netnsName(sandboxId)}`);
  if (lines.length === 0) return;
  // -force: keep going past a line that fails (already gone).
  await run("ip", ["-force", "-batch", "-"], lines.join("\n") + "\n").catch((e: NetError) => {
    if (existsSync(`/sys/class/net/${veth}`) || existsSync(netnsPath(sandboxId))) throw e;
  });
}

// ---------------------------------------------------------------- /etc files

export function resolvConf(cfg: NetConfig = DEFAULT_NET): string {
  return `nameserver ${cfg.gateway}\noptions ndots:0\n`;
}

export function hostsFile(hostname: string, address?: string): string {
  return (
    `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n` +
    `${address ?? "127.0.1.1"}\t${hostname}\n`
  );
}

export function hostnameFile(hostname: string): string {
  return `${hostname}\n`;
}

export { DnsForwarder, hostResolvers, parseUpstream, type Upstream } from "./dns.js";
