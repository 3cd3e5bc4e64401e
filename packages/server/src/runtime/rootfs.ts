// A sandbox's directory and root filesystem.
//
//   <dataDir>/sandboxes/<id>/
//     state.json        what adopt()/cleanup() need after a restart (slot, uid base, address…)
//     lower/<n>         read-only idmapped binds of the image's layer dirs (n = 0 is the base)
//     disk.img          the sandbox's writable disk: a sparse ext4 image of the
//                       disk limit (disk.ts), loop-mounted at disk/ while it lives
//     disk/upper/ disk/work/   overlay upper and work dirs, owned by the sandbox's uid base
//     disk/run/         becomes /.sbx inside (agent.sock, procs/)
//     rootfs/           the overlay: lowerdir = lower/<last>:…:lower/0 (topmost first)
//     run               while the sandbox lives: a symlink to disk/run; at destroy
//                       its outputs are copied out (bounded, disk.ts) and run/
//                       becomes a plain directory, kept after destroy
//     bundle/config.json
//     resolv.conf hosts hostname   bind-mounted read-only over /etc/*
//     console.log       PID 1's stdout/stderr and the runtime's messages
//
// Mounts are made with util-linux `mount`/`umount` and the agent's
// `sbx-idmap` helper; teardown unmounts by path, lazily if busy, and is
// idempotent.

import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  constants as fsc,
} from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { ADDR_CLAIMS_DIR } from "../net/index.js";
import { runTool as runHostTool } from "../run-tool.js";

export const UID_BASE_START = 200_000;
export const UID_RANGE = 65_536;
/** Highest slot whose range stays below 2^32 - 1. */
export const MAX_SLOT = Math.floor((0xffff_fffe - UID_BASE_START) / UID_RANGE) - 1;

export const SANDBOX_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export class RootfsError extends Error {
  constructor(
    message: string,
    readonly stderrTail = "",
  ) {
    super(message);
    this.name = "RootfsError";
  }
}

/** The writable disk image and its mount point (disk.ts), in a sandbox's dir or a spare's (disk-pool.ts). */
export interface DiskPaths {
  diskImage: string;
  disk: string;
}

export function diskPathsIn(dir: string): DiskPaths {
  return { diskImage: join(dir, "disk.img"), disk: join(dir, "disk") };
}

export interface SandboxPaths extends DiskPaths {
  dir: string;
  state: string;
  lower: string;
  /** The run dir's home while the sandbox lives (`run` points here). */
  runData: string;
  upper: string;
  work: string;
  rootfs: string;
  run: string;
  bundle: string;
  config: string;
  pidFile: string;
  consoleLog: string;
  resolvConf: string;
  hosts: string;
  hostname: string;
}

export function sandboxesDir(dataDir: string): string {
  return join(dataDir, "sandboxes");
}

export function sandboxPaths(dataDir: string, sandboxId: string): SandboxPaths {
  if (!SANDBOX_ID_RE.test(sandboxId)) throw new RootfsError(`bad sandbox id ${JSON.stringify(sandboxId)}`);
  const dir = join(sandboxesDir(dataDir), sandboxId);
  return {
    dir,
    state: join(dir, "state.json"),
    lower: join(dir, "lower"),
    ...diskPathsIn(dir),
    runData: join(dir, "disk", "run"),
    upper: join(dir, "disk", "upper"),
    work: join(dir, "disk", "work"),
    rootfs: join(dir, "rootfs"),
    run: join(dir, "run"),
    bundle: join(dir, "bundle"),
    config: join(dir, "bundle", "config.json"),
    pidFile: join(dir, "bundle", "pid"),
    consoleLog: join(dir, "console.log"),
    resolvConf: join(dir, "resolv.conf"),
    hosts: join(dir, "hosts"),
    hostname: join(dir, "hostname"),
  };
}

// ---------------------------------------------------------------- state.json

export interface SandboxState {
  version: 1;
  sandboxId: string;
  slot: number;
  uidBase: number;
  runtime: "runc" | "crun";
  blockNetwork: boolean;
  address?: string;
  hostname: string;
  layerCount: number;
  createdAt: string;
  /** Set once destroy/cleanup finished: the slot and address are free again. */
  destroyed?: boolean;
}

export function readState(path: string): SandboxState | null {
  try {
    const s = JSON.parse(readFileSync(path, "utf8")) as SandboxState;
    if (s.version !== 1 || typeof s.uidBase !== "number" || typeof s.slot !== "number") return null;
    return s;
  } catch {
    return null;
  }
}

export function writeState(path: string, s: SandboxState): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(s, null, 1) + "\n", { mode: 0o600 });
  renameSync(tmp, path);
}

/** States of every sandbox dir (including destroyed ones). */
export function scanStates(dataDir: string): SandboxState[] {
  const root = sandboxesDir(dataDir);
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  const out: SandboxState[] = [];
  for (const n of names) {
    if (!SANDBOX_ID_RE.test(n)) continue;
    const s = readState(join(root, n, "state.json"));
    if (s) out.push(s);
  }
  return out;
}

/**
 * Claims, once at start, what the sandboxes on disk hold (slot, address),
 * so claimSlot/claimAddress never hand them out even if their claim files
 * were lost. A claim someone already holds is left as it is.
 */
export function reclaimLive(dataDir: string): void {
  for (const dir of [SLOT_CLAIMS_DIR, ADDR_CLAIMS_DIR]) mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const s of scanStates(dataDir)) {
    if (s.destroyed) continue;
    const owner = join(sandboxesDir(dataDir), s.sandboxId);
    const claims = [join(SLOT_CLAIMS_DIR, String(s.slot)), ...(s.address ? [join(ADDR_CLAIMS_DIR, s.address)] : [])];
    for (const f of claims) {
      try {
        writeFileSync(f, owner + "\n", { flag: "wx", mode: 0o600 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      }
    }
  }
}

/**
 * Host-wide claims, so two servers (or a test beside a server) on one host
 * never hand out the same uid range: one file per slot under /run/sbx/slots,
 * created with O_EXCL. /run is emptied at boot, when no sandbox runs.
 */
export const SLOT_CLAIMS_DIR = "/run/sbx/slots";

/**
 * Picks and claims a slot host-wide; `owner` is recorded in the claim file.
 * The claim files are the record of what is taken (every live sandbox holds
 * one; the backend re-claims adopted ones at start), so this reads one
 * directory, not every sandbox's state: create stays flat as sandboxes add up.
 */
export function claimSlot(owner: string, reserved: Iterable<number> = []): number {
  mkdirSync(SLOT_CLAIMS_DIR, { recursive: true, mode: 0o700 });
  const skip = new Set(reserved);
  for (let attempt = 0; attempt < 1000; attempt++) {
    for (const n of readdirSync(SLOT_CLAIMS_DIR)) if (/^\d+$/.test(n)) skip.add(Number(n));
    let slot = -1;
    for (let s = 0; s <= MAX_SLOT; s++) {
      if (!skip.has(s)) {
        slot = s;
        break;
      }
    }
    if (slot < 0) throw new RootfsError("no free uid range");
    try {
      writeFileSync(join(SLOT_CLAIMS_DIR, String(slot)), owner + "\n", { flag: "wx", mode: 0o600 });
      return slot;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      skip.add(slot);
    }
  }
  throw new RootfsError("cannot claim a uid range");
}

/** Releases a slot claimed by `owner` (left alone if someone else holds it). */
export function releaseSlot(slot: number, owner: string): void {
  const f = join(SLOT_CLAIMS_DIR, String(slot));
  try {
    if (readFileSync(f, "utf8").trim() === owner) rmSync(f, { force: true });
  } catch {
    /* not claimed */
  }
}

/**
 * Releases every slot and address claim recorded for `owner` (a sandbox dir):
 * cleanup of a create that died between claiming and writing state.json.
 */
export function releaseClaimsOf(owner: string): void {
  for (const dir of [SLOT_CLAIMS_DIR, ADDR_CLAIMS_DIR]) {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const f = join(dir, n);
      try {
        if (readFileSync(f, "utf8").trim() === owner) rmSync(f, { force: true });
      } catch {
        /* gone */
      }
    }
  }
}

export function uidBaseOf(slot: number): number {
  return UID_BASE_START + slot * UID_RANGE;
}

// ---------------------------------------------------------------- process helper

export function runTool(cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  return runHostTool(cmd, args, opts, (message, stderr) => new RootfsError(message, stderr));
}

// ---------------------------------------------------------------- mounts

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** How mountinfo spells a path: space, tab, newline and backslash as octal escapes. */
function escapeMountinfo(s: string): string {
  return s.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, "0")}`);
}

/**
 * Mount points at or under `dir` (this process's mount namespace), deepest
 * first. For start-up and tests; a sandbox's create and destroy use
 * readMountsUnder, which reads the table off the event loop.
 */
export function mountsUnder(dir: string): string[] {
  return mountPointsIn(readFileSync("/proc/self/mountinfo", "utf8"), dir);
}

/**
 * mountsUnder, with the table read through the thread pool: with 500
 * sandboxes it has thousands of lines, and the kernel took ~10 ms to produce
 * it, which a synchronous read held every API call for, several times per
 * destroy.
 */
export async function readMountsUnder(dir: string): Promise<string[]> {
  return mountPointsIn(await readFile("/proc/self/mountinfo", "utf8"), dir);
}

/**
 * The mount points in a mountinfo text at or under `dir`, deepest (and, for
 * stacked mounts, latest) first. Only the lines that mention `dir` are split.
 */
function mountPointsIn(text: string, dir: string): string[] {
  const needle = ` ${escapeMountinfo(dir)}`;
  const out: string[] = [];
  for (let at = text.indexOf(needle); at !== -1; ) {
    let end = text.indexOf("\n", at);
    if (end === -1) end = text.length;
    const f = text.slice(text.lastIndexOf("\n", at) + 1, end).split(" ");
    const mp = f.length < 5 ? "" : unescapeMountinfo(f[4]!);
    if (mp === dir || mp.startsWith(dir + "/")) out.push(mp);
    at = text.indexOf(needle, end); // a line may name dir twice (its root and its mount point)
  }
  return out.reverse().sort((a, b) => b.split("/").length - a.split("/").length);
}

export interface MountOptions {
  /** Path of sbx-idmap. */
  idmapBin: string;
  /**
   * Development stopgap only: use the layer dirs as lowerdirs without an
   * idmapped mount (files show as nobody:nogroup inside). Never silent: the
   * caller logs it.
   */
  unsafeNoIdmap?: boolean;
}

/**
 * On a ready disk/ (the writable disk mounted there, or a plain directory):
 * makes upper/, work/, run/ (owned by uidBase; run is a symlink to disk/run),
 * the idmapped lowers and the overlay at rootfs/, the last two in one
 * sbx-idmap run. On failure, unmounts what it mounted.
 */
export async function mountRootfs(p: SandboxPaths, layers: string[], uidBase: number, opts: MountOptions): Promise<void> {
  if (layers.length === 0) throw new RootfsError("image has no layers");
  for (const d of [p.lower, p.rootfs, p.bundle, p.disk, p.upper, p.work, p.runData]) mkdirSync(d, { recursive: true, mode: 0o711 });
  // upper/ is the overlay's root inode: "/" inside, so owned by root inside.
  for (const d of [p.upper, p.work, p.runData]) chownSync(d, uidBase, uidBase);
  // upper/ is "/" inside: world-readable like any root dir, or non-root users there cannot list it.
  chmodSync(p.upper, 0o755);
  try {
    symlinkSync("disk/run", p.run);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  }
  // Relative paths (cwd = sandbox dir) keep the option string short:
  // overlay's options must fit in one page.
  // volatile: no syncs to the upper fs (an fsync-heavy sandbox would
  // otherwise flush the host's disk; unmount would sync it all). The
  // upper dir does not survive a host crash anyway.
  const overlayOpts = (lowerdirs: string[]) => `lowerdir=${[...lowerdirs].reverse().join(":")},upperdir=disk/upper,workdir=disk/work,volatile`;
  try {
    if (opts.unsafeNoIdmap) {
      // Without idmap, the lower dirs are owned by nobody inside; create the
      // mount points runc would otherwise fail to create.
      mkdirSync(join(p.upper, "etc"), { recursive: true, mode: 0o755 });
      for (const f of ["hosts", "resolv.conf", "hostname"]) {
        const fp = join(p.upper, "etc", f);
        if (!existsSync(fp)) writeFileSync(fp, "");
        chownSync(fp, uidBase, uidBase);
      }
      chownSync(join(p.upper, "etc"), uidBase, uidBase);
      await runTool("mount", ["-t", "overlay", "overlay", "-o", overlayOpts(layers), p.rootfs], { cwd: p.dir });
      return;
    }
    const args = [String(uidBase), String(UID_RANGE)];
    layers.forEach((src, i) => {
      const dst = join(p.lower, String(i));
      mkdirSync(dst, { recursive: true, mode: 0o711 });
      args.push(src, dst);
    });
    args.push("--overlay", p.rootfs, overlayOpts(layers.map((_, i) => `lower/${i}`)));
    await runTool(opts.idmapBin, args, { cwd: p.dir });
  } catch (e) {
    await unmountAll(p.dir);
    throw e;
  }
}

/** Unmounts everything under `dir`, deepest first; lazily if busy. Idempotent. */
export async function unmountAll(dir: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const mps = await readMountsUnder(dir);
    if (mps.length === 0) return;
    try {
      await runTool("umount", mps);
    } catch {
      // Busy or already gone: detach lazily what is still there.
      const left = await readMountsUnder(dir);
      if (left.length) await runTool("umount", ["-l", ...left]).catch(() => undefined);
    }
  }
  const left = await readMountsUnder(dir);
  if (left.length) throw new RootfsError(`still mounted: ${left.join(" ")}`);
}

// ---------------------------------------------------------------- safe reads in run/

/**
 * Reads a small file under a directory the sandbox can write to, without
 * following symlinks at any component (the sandbox could plant one pointing
 * at a host file). `rel` is split on "/"; returns null if missing or not a
 * regular file. Reads at most `max` bytes.
 */
/**
 * Opens `dir/rel` for reading without following a symlink at any step, and
 * only if it is a regular file; returns the fd (the caller closes it) or null.
 * The run directory is writable by the sandbox, which could otherwise plant a
 * symlink to a host file (or a FIFO that blocks the open) in place of a
 * process's output. Each component is opened relative to the previous one
 * through /proc/self/fd, so nothing can be swapped in between.
 */
export function openNoFollowSync(dir: string, rel: string): number | null {
  const parts = rel.split("/").filter(Boolean);
  const fds: number[] = [];
  let keep: number | null = null;
  try {
    let fd = openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
    fds.push(fd);
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const part = parts[i]!;
      if (part === "." || part === "..") return null;
      fd = openSync(
        `/proc/self/fd/${fd}/${part}`,
        fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK | (last ? 0 : fsc.O_DIRECTORY),
      );
      fds.push(fd);
    }
    if (!fstatSync(fd).isFile()) return null;
    keep = fds.pop()!;
    return keep;
  } catch {
    return null;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** Reads at most `max` bytes of `dir/rel`, confined as openNoFollowSync is; null if absent or unsafe. */
export function readFileNoFollow(dir: string, rel: string, max = 4096): Buffer | null {
  const fd = openNoFollowSync(dir, rel);
  if (fd === null) return null;
  try {
    const buf = Buffer.alloc(Math.min(max, fstatSync(fd).size));
    let n = 0;
    while (n < buf.length) {
      const r = readSync(fd, buf, n, buf.length - n, n);
      if (r <= 0) break;
      n += r;
    }
    return buf.subarray(0, n);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
