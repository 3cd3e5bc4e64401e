// What a sandbox can leave on the host, found without the code under test:
// mounts, loop devices, network namespace, veth, cgroups, runtime container,
// directory and host-wide uid/address claims.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { hostVethName } from "../../packages/server/src/net/index.js";

export function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => mp === dir || mp.startsWith(dir + "/"));
}

/** Everything of sandbox `id` still on this host, found without the code under test. */
export function leftovers(dataDir: string, id: string): string[] {
  const out: string[] = [];
  const dir = join(dataDir, "sandboxes", id);
  out.push(...mountsUnder(dir).map((m) => `mount ${m}`));
  for (const n of readdirSync("/sys/block").filter((x) => x.startsWith("loop"))) {
    try {
      const f = readFileSync(`/sys/block/${n}/loop/backing_file`, "utf8").trim();
      if (f.startsWith(dir)) out.push(`loop ${n} on ${f}`);
    } catch {
      /* unbound */
    }
  }
  if (existsSync(`/var/run/netns/sbx-${id}`)) out.push(`netns sbx-${id}`);
  if (existsSync(`/sys/class/net/${hostVethName(id)}`)) out.push(`veth ${hostVethName(id)}`);
  for (const h of readdirSync("/sys/fs/cgroup")) {
    if (existsSync(`/sys/fs/cgroup/${h}/sbx/${id}`)) out.push(`cgroup ${h}/sbx/${id}`);
  }
  const listed = execFileSync("runc", ["--root", join(dataDir, "runc"), "list", "-q"], { encoding: "utf8" });
  if (listed.split("\n").includes(id)) out.push(`runc container ${id}`);
  if (existsSync(dir)) out.push(`dir ${dir} (${readdirSync(dir).join(" ")})`);
  for (const claims of ["/run/sbx/slots", "/run/sbx/addrs"]) {
    for (const n of existsSync(claims) ? readdirSync(claims) : []) {
      try {
        if (readFileSync(join(claims, n), "utf8").trim() === dir) out.push(`claim ${claims}/${n}`);
      } catch {
        /* released meanwhile */
      }
    }
  }
  return out;
}
