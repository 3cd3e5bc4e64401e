// `podman run --rm` of the sbx base rootfs, imported once with `podman import`
// (the image is kept, tagged by the base recipe's cache key, so later runs
// skip the import). Debian's podman 4.3 runs here with --runtime runc and
// explicit ulimits (the host's hard nofile limit is below podman's default).
import * as path from "node:path";
import { run } from "../proc.js";

const RUN_FLAGS = ["--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];

export class PodmanBaseline {
  #seq = 0;
  readonly names = new Set<string>();

  private constructor(readonly image: string) {}

  /** Imports the rootfs tar unless the image exists; null + reason when podman cannot be used. */
  static async prepare(rootfsTar: string): Promise<PodmanBaseline | { unavailable: string }> {
    const v = await run(["podman", "--version"], { timeoutMs: 10_000 }).catch(() => null);
    if (!v || v.code !== 0) return { unavailable: "podman is not installed" };
    // .../base/<suite>-<variant>-python3-<key>/rootfs.tar → tag <key>
    const key = path.basename(path.dirname(rootfsTar)).split("-").pop()!;
    const image = `localhost/sbx-bench-base:${key}`;
    const exists = await run(["podman", "image", "exists", image], { timeoutMs: 30_000 });
    if (exists.code !== 0) {
      const imp = await run(["podman", "import", "--quiet", rootfsTar, image], { timeoutMs: 180_000 });
      if (imp.code !== 0) return { unavailable: `podman import failed: ${imp.stderr.trim().slice(-300)}` };
    }
    return new PodmanBaseline(image);
  }

  /** `podman run --rm [extra] IMAGE echo hi`, checked; wall time (ms). */
  async runOnce(extra: string[] = []): Promise<number> {
    const name = `sbx-bench-${process.pid}-${++this.#seq}`;
    this.names.add(name);
    const r = await run(["podman", "run", ...RUN_FLAGS, "--name", name, ...extra, this.image, "echo", "hi"], { timeoutMs: 60_000 });
    if (r.code === 0) this.names.delete(name);
    if (r.code !== 0 || r.stdout !== "hi\n") {
      throw new Error(`podman run exited ${r.code ?? r.signal}, stdout ${JSON.stringify(r.stdout)}: ${r.stderr.trim().slice(-300)}`);
    }
    return r.ms;
  }

  /** Removes any container a failed or killed run left behind. */
  async cleanup(): Promise<void> {
    for (const name of this.names) await run(["podman", "rm", "--force", "--ignore", name], { timeoutMs: 60_000 });
    this.names.clear();
  }
}

