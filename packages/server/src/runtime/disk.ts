// The sandbox's writable disk: everything a sandbox can write that lands on
// the host's disk — its overlay upper/work dirs and its run dir (/.sbx: the
// process outputs the agent writes, and anything else written there) — lives
// in one sparse ext4 image of a fixed size, loop-mounted at <dir>/disk.
// The image's size is the limit: no quota, so it holds whatever credentials
// do the write (overlayfs writes upper files with the mounter's, i.e. host
// root's, credentials, which ext4 quotas exempt; this kernel has no XFS
// quota support).
//
//   create   a spare from the disk pool (disk-pool.ts): a directory holding
//            an image already formatted and mounted, renamed to be the
//            sandbox's dir; else, in place: truncate disk.img to `bytes`
//            (sparse) → mkfs.ext4 (no journal, lazy inode tables) →
//            mount -o loop,nodev,nosuid,noatime at disk/
//   destroy  retainOutputs: copy run/procs/*/{stdout,stderr,exit} out of
//            the image into a plain run/ (at most `retainBytes` in all) →
//            unmount (autoclear frees the loop device) → rm disk.img
//
// Cost (measured on the 2-core dev VM, 10 GiB image): mkfs ≈ 40 ms and
// mount ≈ 25 ms, both done ahead by the disk pool; see SECURITY.md.

import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  read,
  renameSync,
  rmSync,
  statfsSync,
  statSync,
  unlinkSync,
  write,
  writeSync,
  constants as fsc,
} from "node:fs";
import { rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { EXEC_ID_RE } from "./agent/proto.js";
import { openNoFollowSync, runTool, type DiskPaths, type SandboxPaths } from "./rootfs.js";

export interface DiskOptions {
  /** Size of each sandbox's writable disk (upper layer + /.sbx), bytes. */
  bytes: number;
  /** How much of a destroyed sandbox's output is kept on the host, bytes, all streams together. */
  retainBytes: number;
  /** Free space the host must keep beyond a new sandbox's disk, bytes. */
  hostReserveBytes: number;
}

export const DEFAULT_DISK: DiskOptions = {
  bytes: 10 * 1024 ** 3,
  retainBytes: 256 * 1024 ** 2,
  hostReserveBytes: 2 * 1024 ** 3,
};

export class DiskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DiskError";
  }
}

/**
 * Whether another filesystem is mounted at `path` (its device differs from
 * its parent's). Not for bind mounts of the same filesystem; a sandbox's disk
 * is always a filesystem of its own. Two stats, where reading the mount table
 * cost milliseconds per call with hundreds of sandboxes.
 */
export function isMountPoint(path: string): boolean {
  try {
    return statSync(path, { bigint: true }).dev !== statSync(dirname(path), { bigint: true }).dev;
  } catch {
    return false;
  }
}

/**
 * The loop device holding the filesystem mounted at `mountPoint`, found from
 * the mount's device number (/sys/dev/block/MAJOR:MINOR), or null when no
 * loop device is mounted there.
 */
function loopOfMount(mountPoint: string): string | null {
  try {
    const dev = statSync(mountPoint, { bigint: true }).dev;
    // glibc's major()/minor() of a 64-bit dev_t.
    const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
    const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
    const name = basename(readlinkSync(`/sys/dev/block/${major}:${minor}`));
    return name.startsWith("loop") ? `/dev/${name}` : null;
  } catch {
    return null;
  }
}

/**
 * Refuses a new sandbox disk when the host's free space (of the filesystem
 * holding `dir`) is less than the disk plus the reserve: a sandbox may fill
 * its disk, never the host's.
 */
export function assertHostSpace(dir: string, opts: DiskOptions): void {
  const st = statfsSync(dir);
  const free = st.bavail * st.bsize;
  if (free < opts.bytes + opts.hostReserveBytes) {
    throw new DiskError(
      `not enough free disk for a sandbox: ${gib(free)} free, a sandbox's disk needs ${gib(opts.bytes)} ` +
        `plus ${gib(opts.hostReserveBytes)} kept free for the host`,
    );
  }
}

/** mkfs options of every sandbox disk: no journal, no reserved blocks, lazy inode tables. */
const MKFS_ARGS = ["-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,nodiscard"];

/**
 * Makes the sparse image (blocks are allocated as the sandbox writes) and
 * formats it: no journal (like the overlay's "volatile": a sandbox does not
 * survive a host crash), no root-reserved blocks, lazy inode tables.
 */
export async function formatImage(path: string, bytes: number): Promise<void> {
  const fd = openSync(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o600);
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
  await runTool("mkfs.ext4", [...MKFS_ARGS, path]);
}

/**
 * Formats and mounts a new disk at d.disk (the disk pool's spares are made
 * the same way). The loop device then does direct I/O on the image: without
 * it every block a sandbox writes sits in the page cache twice (the disk's
 * and the image file's) and is written back twice, which on the project's
 * machine cut a 1 GiB stdout from ~460 to ~150 MiB/s by its second run.
 * A host filesystem without O_DIRECT keeps the buffered loop (logged).
 */
export async function makeDisk(d: DiskPaths, bytes: number, log: (m: string) => void): Promise<void> {
  mkdirSync(d.disk, { recursive: true, mode: 0o711 });
  await formatImage(d.diskImage, bytes);
  await runTool("mount", ["-t", "ext4", "-o", "loop,nodev,nosuid,noatime", d.diskImage, d.disk]);
  // The device the mount just took: asking each loop device for its backing
  // file instead cost a sysfs read per sandbox on the host, on every create.
  const dev = loopOfMount(d.disk);
  if (dev === null) {
    log(`disk ${d.diskImage}: mounted, but not from a loop device; no direct I/O`);
    return;
  }
  await runTool("losetup", ["--direct-io=on", dev]).catch((e: Error) => log(`disk ${d.diskImage}: no direct I/O on ${dev}: ${e.message}`));
}

const readAt = promisify(read);
const writeAt = promisify(write);

const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`;

/**
 * Copies what a destroyed sandbox wrote to its processes' output and exit
 * files out of its disk, into a plain run/ directory on the host, so outputs
 * stay readable once the disk is gone. At most `retainBytes` are copied (the
 * entrypoint first, then the others in name order); a stream cut short gets
 * a `<stream>.truncated` file holding its full size. Only regular files are
 * copied, opened without following symlinks (the sandbox wrote them).
 * Idempotent and safe to rerun after a crash at any point.
 */
export async function retainOutputs(p: SandboxPaths, retainBytes: number, log: (m: string) => void): Promise<void> {
  const tmp = `${p.run}.tmp`;
  let runIsLink = false;
  try {
    runIsLink = lstatSync(p.run).isSymbolicLink();
  } catch {
    /* missing */
  }
  const runExists = runIsLink || existsSync(p.run);
  if (runExists && !runIsLink) return; // done already (or a sandbox from before disks)
  if (!isMountPoint(p.disk) && existsSync(p.diskImage)) {
    // After a host reboot the image is there but not mounted: mount it read-only to read it.
    mkdirSync(p.disk, { recursive: true, mode: 0o711 });
    await runTool("mount", ["-t", "ext4", "-o", "loop,ro,nodev,nosuid,noexec", p.diskImage, p.disk]).catch((e: Error) =>
      log(`retain outputs: cannot mount ${p.diskImage}: ${e.message}`),
    );
  }
  if (!isMountPoint(p.disk) && !existsSync(p.diskImage) && existsSync(p.runData)) {
    // No disk image (disks disabled): the run dir is on the host already.
    rmSync(tmp, { recursive: true, force: true });
    renameSync(p.runData, tmp);
  } else if (isMountPoint(p.disk) || existsSync(p.runData)) {
    rmSync(tmp, { recursive: true, force: true });
    await copyOutputs(p.runData, tmp, retainBytes);
  } else if (!existsSync(tmp)) {
    mkdirSync(join(tmp, "procs"), { recursive: true, mode: 0o755 });
  }
  if (runIsLink) unlinkSync(p.run);
  renameSync(tmp, p.run);
}

/**
 * Async reads and writes: up to `retainBytes` (256 MiB by default) are
 * copied, and a synchronous copy held the server's event loop (every API
 * call) for a second or more while a big sandbox was destroyed.
 */
async function copyOutputs(from: string, to: string, budget: number): Promise<void> {
  mkdirSync(join(to, "procs"), { recursive: true, mode: 0o755 });
  let ids: string[] = [];
  try {
    ids = readdirSync(join(from, "procs")).filter((n) => EXEC_ID_RE.test(n));
  } catch {
    return;
  }
  ids.sort((a, b) => (a === "entry" ? -1 : b === "entry" ? 1 : a < b ? -1 : a > b ? 1 : 0));
  let left = budget;
  const buf = Buffer.allocUnsafe(1 << 20);
  for (const id of ids) {
    const dir = join(to, "procs", id);
    mkdirSync(dir, { mode: 0o755 });
    for (const name of ["exit", "stdout", "stderr"]) {
      const src = openNoFollowSync(from, `procs/${id}/${name}`);
      if (src === null) continue;
      try {
        const size = fstatSync(src).size;
        // The exit file is tiny and always kept: it is how a late reader learns the end.
        const want = name === "exit" ? Math.min(size, 64) : Math.min(size, left);
        const dst = openSync(join(dir, name), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
        try {
          let pos = 0;
          while (pos < want) {
            const { bytesRead: n } = await readAt(src, buf, 0, Math.min(buf.length, want - pos), pos);
            if (n <= 0) break;
            for (let off = 0; off < n; ) off += (await writeAt(dst, buf, off, n - off)).bytesWritten;
            pos += n;
          }
          if (name !== "exit") left -= pos;
          if (pos < size && name !== "exit") {
            const t = openSync(join(dir, `${name}.truncated`), fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
            writeSync(t, `${size}\n`);
            closeSync(t);
          }
        } finally {
          closeSync(dst);
        }
      } finally {
        closeSync(src);
      }
    }
  }
}

/** Every bound loop device, by backing file (sysfs adds " (deleted)" once the file is unlinked). */
export function loopBackings(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let names: string[] = [];
  try {
    names = readdirSync("/sys/block").filter((n) => n.startsWith("loop"));
  } catch {
    return out;
  }
  for (const n of names) {
    try {
      const file = readFileSync(`/sys/block/${n}/loop/backing_file`, "utf8").trim();
      out.set(file, [...(out.get(file) ?? []), `/dev/${n}`]);
    } catch {
      /* not bound */
    }
  }
  return out;
}

/** The loop devices on `image`, unlinked or not, in `loops` (loopBackings()). */
function loopsOn(image: string, loops: ReadonlyMap<string, string[]>): string[] {
  return [...(loops.get(image) ?? []), ...(loops.get(`${image} (deleted)`) ?? [])];
}

/**
 * Unmounts the disk if mounted, detaches any loop device still on it, removes
 * the image. Idempotent. With `shutdownBin` (sbx-fs-shutdown) the filesystem
 * is shut down first, so its dirty pages are dropped rather than written
 * back into an image about to be deleted: a sandbox killed while writing
 * fast otherwise holds up its own cleanup for seconds. Copy out what must be
 * kept (retainOutputs) before.
 */
export async function removeDisk(p: DiskPaths, opts: { shutdownBin?: string } = {}): Promise<void> {
  if (isMountPoint(p.disk)) {
    if (opts.shutdownBin && existsSync(opts.shutdownBin)) await runTool(opts.shutdownBin, [p.disk]).catch(() => undefined);
    // mount -o loop set the device to autoclear: the unmount (or, after a
    // lazy one, the last user going away) frees it.
    await runTool("umount", [p.disk]).catch(() => runTool("umount", ["-l", p.disk]));
  } else {
    // Not mounted: a crash may have come between the loop device and the mount.
    for (const dev of loopsOn(p.diskImage, loopBackings())) await runTool("losetup", ["-d", dev]).catch(() => undefined);
  }
  if (!isMountPoint(p.disk)) {
    // Freeing a big image's blocks takes the filesystem a while: off the event loop.
    await rm(p.diskImage, { force: true });
    await rm(p.disk, { recursive: true, force: true });
  }
}

/**
 * What is left of a disk: the image, its mount, a loop device on it.
 * `loops`: loopBackings(), taken once for the many sandboxes a start-up looks at.
 */
export function diskLeftovers(p: SandboxPaths, loops: ReadonlyMap<string, string[]>): string[] {
  const out: string[] = [];
  if (existsSync(p.diskImage)) out.push(p.diskImage);
  if (isMountPoint(p.disk)) out.push(`mount ${p.disk}`);
  out.push(...loopsOn(p.diskImage, loops));
  return out;
}
