// Sandbox disk images formatted ahead of need. `mkfs.ext4` of a sandbox's
// sparse image is ~40 ms of a create's critical path on this project's
// machine; a formatted image that no sandbox has mounted is interchangeable
// with a fresh one, so a few are kept ready in <data-dir>/disk-pool and a
// create renames one into its own directory (same filesystem) and mounts it.
//
// Demand-driven: nothing is made until a create asks, then the pool refills
// to its size a moment later (not during the create that emptied it: on two
// cores the mkfs would compete with it). An image is made under a .tmp name
// and renamed when complete, so a crash leaves only .tmp files, removed at
// the next start, and an image of another size (a changed --disk-size) is
// never handed out.
import { closeSync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, constants as fsc } from "node:fs";
import { join } from "node:path";
import { runTool } from "./rootfs.js";

/** mkfs options of every sandbox disk: no journal, no reserved blocks, lazy inode tables. */
const MKFS_ARGS = ["-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard"];

/** Makes the sparse image at `path` and formats it. */
export async function formatImage(path: string, bytes: number): Promise<void> {
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try {
    ftruncateSync(fd, bytes); // sparse: blocks are allocated as the sandbox writes
  } finally {
    closeSync(fd);
  }
  await runTool("mkfs.ext4", [...MKFS_ARGS, path]);
}

/** Wait after a take before refilling, so the refill does not compete with that create. */
const REFILL_DELAY_MS = 300;

export class DiskPool {
  private readonly ready: string[] = [];
  private filling: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private next = 0;

  constructor(
    private readonly dir: string,
    private readonly bytes: number,
    private readonly size: number,
    private readonly log: (m: string) => void,
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (name.endsWith(".img") && statSync(path).size === bytes) this.ready.push(path);
      else rmSync(path, { force: true }); // unfinished, or of another size
    }
  }

  /** A formatted image, moved to `dest`; false when none is ready (the caller formats one). */
  takeInto(dest: string): boolean {
    const path = this.ready.pop();
    this.schedule();
    if (!path) return false;
    try {
      renameSync(path, dest);
      return true;
    } catch (e) {
      this.log(`disk pool: ${path}: ${(e as Error).message}`);
      return false;
    }
  }

  private schedule(): void {
    if (this.closed || this.timer || this.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.filling ??= this.fill().finally(() => (this.filling = null));
    }, REFILL_DELAY_MS);
    this.timer.unref();
  }

  private async fill(): Promise<void> {
    while (!this.closed && this.ready.length < this.size) {
      const base = join(this.dir, `${process.pid}-${++this.next}`);
      try {
        await formatImage(`${base}.tmp`, this.bytes);
        if (this.closed) break;
        renameSync(`${base}.tmp`, `${base}.img`);
        this.ready.push(`${base}.img`);
      } catch (e) {
        rmSync(`${base}.tmp`, { force: true });
        this.log(`disk pool: formatting a spare disk failed: ${(e as Error).message}`);
        return; // a create formats its own; try again after the next take
      }
    }
  }

  /** Stops refilling; the images made stay for the next server. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.filling;
  }
}
