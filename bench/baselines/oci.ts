// Raw OCI runtime baselines on the sbx base rootfs: `runc run` / `crun run`
// of `echo hi`, and `runc exec` / `nsenter` into a running runc container.
// Bundles are `runc spec` defaults with args, rootfs and terminal changed;
// state lives under a temp --root; every container gets a unique id and is
// `delete -f`'d at the end.
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { check, run } from "../proc.js";

export type OciRuntime = "runc" | "crun";

/**
 * crun 1.8.1 refuses a hybrid cgroup layout (controllers in the v2 hierarchy,
 * here hugetlb) even with --cgroup-manager=disabled. It runs when it sees an
 * empty /sys/fs/cgroup/unified: a private mount namespace with a tmpfs there.
 */
export const CRUN_HYBRID_WRAPPER = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs none /sys/fs/cgroup/unified && exec "$@"', "sh"];

export async function cgroupHybrid(): Promise<boolean> {
  const c = await fsp.readFile("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").catch(() => "");
  return c.trim() !== "";
}

export class OciBaseline {
  #seq = 0;
  #template: Record<string, any> | null = null;
  /** Whether crun runs under CRUN_HYBRID_WRAPPER (see there). */
  crunWrapped = false;

  constructor(
    readonly workDir: string,
    readonly rootfs: string,
  ) {}

  stateRoot(rt: OciRuntime): string {
    return path.join(this.workDir, `state-${rt}`);
  }

  /** Unpacks the rootfs tar (once) and gets the `runc spec` template. */
  static async prepare(workDir: string, rootfsTar: string): Promise<OciBaseline> {
    const rootfs = path.join(workDir, "rootfs");
    await fsp.mkdir(rootfs, { recursive: true });
    await check(["tar", "-xf", rootfsTar, "-C", rootfs, "--numeric-owner"], { timeoutMs: 120_000 });
    await fsp.mkdir(path.join(rootfs, "dev"), { recursive: true });
    const b = new OciBaseline(workDir, rootfs);
    for (const rt of ["runc", "crun"] as const) await fsp.mkdir(b.stateRoot(rt), { recursive: true });
    const specDir = path.join(workDir, "spec");
    await fsp.mkdir(specDir);
    await check(["runc", "spec", "--bundle", specDir]);
    b.#template = JSON.parse(await fsp.readFile(path.join(specDir, "config.json"), "utf8"));
    b.crunWrapped = await cgroupHybrid();
    return b;
  }

  /** A bundle dir whose config runs `args` on the shared read-only rootfs. */
  async bundle(name: string, args: string[], rt: OciRuntime = "runc"): Promise<string> {
    const dir = path.join(this.workDir, `bundle-${rt}-${name}`);
    await fsp.mkdir(dir, { recursive: true });
    const cfg = structuredClone(this.#template!);
    cfg.process.args = args;
    cfg.process.terminal = false;
    cfg.root = { path: this.rootfs, readonly: true };
    // Without a cgroup manager crun cannot mount the cgroup filesystem.
    if (rt === "crun") cfg.mounts = cfg.mounts.filter((m: { type: string }) => m.type !== "cgroup");
    await fsp.writeFile(path.join(dir, "config.json"), JSON.stringify(cfg, null, 1));
    return dir;
  }

  #cmd(rt: OciRuntime): string[] {
    const root = this.stateRoot(rt);
    if (rt === "runc") return ["runc", "--root", root];
    return [...(this.crunWrapped ? CRUN_HYBRID_WRAPPER : []), "crun", "--cgroup-manager=disabled", "--root", root];
  }

  nextId(prefix: string): string {
    return `sbx-bench-${prefix}-${process.pid}-${++this.#seq}`;
  }

  /** `<rt> run` of the bundle in the foreground; returns its wall time (ms) after checking stdout. */
  async runOnce(rt: OciRuntime, bundle: string, expect: string): Promise<number> {
    const id = this.nextId(rt);
    const r = await run([...this.#cmd(rt), "run", "--bundle", bundle, id], { timeoutMs: 30_000 });
    if (r.code !== 0 || r.stdout !== expect) {
      await this.delete(rt, id);
      throw new Error(`${rt} run exited ${r.code ?? r.signal} with stdout ${JSON.stringify(r.stdout)}: ${r.stderr.trim().slice(-500)}`);
    }
    return r.ms;
  }

  /** Starts a detached long-running container; returns its id and init pid. */
  async startDetached(rt: OciRuntime, bundle: string): Promise<{ id: string; pid: number }> {
    const id = this.nextId(`${rt}-d`);
    // The container inherits the runtime's stdio: /dev/null, so nothing holds our pipes open.
    const r = await run([...this.#cmd(rt), "run", "--detach", "--bundle", bundle, id], { timeoutMs: 30_000, stdio: "ignore" });
    if (r.code !== 0) throw new Error(`${rt} run --detach exited ${r.code}: ${r.stderr.trim()}`);
    const st = JSON.parse((await check([...this.#cmd(rt), "state", id])).stdout) as { pid: number };
    return { id, pid: st.pid };
  }

  /** `<rt> exec <id> argv`; returns wall time (ms). */
  async exec(rt: OciRuntime, id: string, argv: string[]): Promise<number> {
    const r = await run([...this.#cmd(rt), "exec", id, ...argv], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`${rt} exec exited ${r.code}: ${r.stderr.trim()}`);
    return r.ms;
  }

  async delete(rt: OciRuntime, id: string): Promise<void> {
    await run([...this.#cmd(rt), "delete", "--force", id], { timeoutMs: 30_000 });
  }

  /** Deletes every container left under this state root, then the work dir. */
  async cleanup(): Promise<void> {
    for (const rt of ["runc", "crun"] as const) {
      const ids = await fsp.readdir(this.stateRoot(rt)).catch(() => [] as string[]);
      for (const id of ids) if (id.startsWith("sbx-bench-")) await this.delete(rt, id);
    }
    await fsp.rm(this.workDir, { recursive: true, force: true });
  }
}

/** `nsenter` into every namespace of `pid` (mount, uts, ipc, net, pid, cgroup) and run argv; wall time (ms). */
export async function nsenterOnce(pid: number, argv: string[]): Promise<number> {
  const r = await run(["nsenter", "-t", String(pid), "-a", ...argv], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`nsenter exited ${r.code}: ${r.stderr.trim()}`);
  return r.ms;
}
