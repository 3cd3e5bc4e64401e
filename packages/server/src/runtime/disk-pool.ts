// Sandbox disks made ahead of need. Formatting a sandbox's sparse image
// (mkfs.ext4, ~40 ms on this project's machine) and loop-mounting it
// (~25 ms) were most of create's way to a rootfs; a formatted, mounted disk
// that no sandbox has used is interchangeable with a fresh one. So a few
// spares wait in <data-dir>/disk-pool/<name>/, each laid out as a sandbox
// dir holds its disk (disk.img, and disk/ mounted on it), and a create
// renames a whole spare dir to be its sandbox dir: one rename, no mount.
// (A mount follows its parent dir's rename; the mount point itself could
// not be renamed.)
//
// Demand-driven: nothing is made until a create asks; the pool refills a
// moment later (not during the create that emptied it: on two cores the
// mkfs would compete with it). A spare is made under <name>.tmp and renamed
// when complete. At start, complete spares of the right size that are still
// mounted (a server restart) are kept; anything else (unfinished, another
// size, unmounted by a reboot) is unmounted and removed. close() unmounts
// and removes the spares: a stopped server leaves nothing mounted.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { isMountPoint, makeDisk, removeDisk } from "./disk.js";
import { diskPathsIn, mountsUnder } from "./rootfs.js";

/** Wait after a take before refilling, so the refill does not compete with that create. */
const REFILL_DELAY_MS = 300;

function isCompleteSpare(path: string, bytes: number): boolean {
  if (path.endsWith(".tmp")) return false;
  const d = diskPathsIn(path);
  try {
    return statSync(d.diskImage).size === bytes && isMountPoint(d.disk);
  } catch {
    return false;
  }
}

export class DiskPool {
  private readonly ready: string[] = [];
  private filling: Promise<void> | null = null;
  /** Removal of spares that are not handed out; refills and close wait for it. */
  private sweeping: Promise<void>;
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
    const stale: string[] = [];
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      (isCompleteSpare(path, bytes) ? this.ready : stale).push(path);
    }
    this.sweeping = this.discard(stale);
  }

  /** Spares ready to be taken now. */
  get readyCount(): number {
    return this.ready.length;
  }

  /**
   * Renames a spare dir to `dest` (which must not exist), after `prepare`
   * has written into it what must be there from the first moment (the
   * sandbox's state.json, so a crash never leaves a mounted disk in a dir
   * nothing knows). False when none is ready: the caller makes its own disk.
   */
  takeAs(dest: string, prepare: (spareDir: string) => void): boolean {
    const path = this.ready.pop();
    this.schedule();
    if (!path) return false;
    try {
      prepare(path);
      renameSync(path, dest);
      return true;
    } catch (e) {
      this.log(`disk pool: ${path}: ${(e as Error).message}`);
      this.sweeping = this.sweeping.then(() => this.discard([path]));
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
    await this.sweeping;
    while (!this.closed && this.ready.length < this.size) {
      const base = join(this.dir, `${process.pid}-${++this.next}`);
      const tmp = `${base}.tmp`;
      try {
        mkdirSync(tmp, { mode: 0o711 });
        await makeDisk(diskPathsIn(tmp), this.bytes, this.log);
        if (this.closed) {
          await this.discard([tmp]);
          break;
        }
        renameSync(tmp, base);
        this.ready.push(base);
      } catch (e) {
        await this.discard([tmp]);
        this.log(`disk pool: making a spare disk failed: ${(e as Error).message}`);
        return; // a create makes its own; try again after the next take
      }
    }
  }

  private async discard(paths: string[]): Promise<void> {
    for (const path of paths) {
      try {
        await removeDisk(diskPathsIn(path));
        // Never rm -r into a disk that would not unmount.
        if (mountsUnder(path).length === 0) rmSync(path, { recursive: true, force: true });
      } catch (e) {
        this.log(`disk pool: removing ${path}: ${(e as Error).message}`);
      }
    }
  }

  /** Stops refilling; unmounts and removes the spares. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.filling;
    await this.sweeping;
    await this.discard(this.ready.splice(0));
  }
}
