// Layer unpacking: a layer blob (gzip, zstd or plain tar) is extracted ONCE into
// <root>/sha256/<hex>/ (hex of the diff id when known, else of the blob
// digest), via a temp dir beside it and a rename, so an existing dir is always
// complete. GNU tar (as root) does the extraction, fed through TarChecker,
// which refuses unsafe members before tar sees them (absolute or ".." names,
// paths through the layer's own symlinks, device nodes; see tar.ts), clears
// setuid/setgid bits, bounds size and member count, and hashes the
// uncompressed stream to verify the diff id. GNU tar itself also defers
// symlinks with absolute or ".." targets to the end of extraction, so no
// member is ever written through one. OCI whiteouts are then turned
// into overlayfs form with two batched processes per layer at most:
//   .wh.NAME      → removed; char device 0/0 NAME created (one `tar -x` of a
//                   generated archive holding all the device nodes)
//   .wh..wh..opq  → removed; xattr trusted.overlay.opaque=y on its dir (one
//                   `setfattr --restore=-`)
// Ownership in the dir is the image's own (uid 0 = root); the runtime makes
// idmapped mounts of it per sandbox. Layer-supplied trusted.overlay.* xattrs
// are not extracted.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { digestHex } from "./content-store.js";
import { DigestMismatchError, LayerUnpackError } from "./errors.js";
import { DEFAULT_TAR_LIMITS, TarChecker, UnsafeTarError, writeTar, type TarEntry, type TarLimits } from "./tar.js";

export interface UnpackRequest {
  /** Blob file in the content store. */
  blobPath: string;
  /** Digest of the blob (compressed), for messages and as fallback key. */
  blobDigest: string;
  /** Expected diff id (sha256 of the uncompressed tar); verified when given, and used as key. */
  diffId?: string;
  /** Human context for error messages, e.g. the image ref. */
  what: string;
}

export interface UnpackOptions {
  log?: (msg: string) => void;
  /** Per-layer bounds (uncompressed bytes, members); default DEFAULT_TAR_LIMITS. */
  limits?: TarLimits;
  /** Crash tests only: "unpack" SIGKILLs the process with a layer half unpacked. */
  killAtStep?: string | undefined;
}

const WH_PREFIX = Buffer.from(".wh.");
const WH_OPAQUE = Buffer.from(".wh..wh..opq");
const WH_META = Buffer.from(".wh..wh.");

/** Run a command; resolves with stderr, rejects with a message including it. */
export function run(cmd: string, args: string[], opts: { cwd?: string; input?: Buffer | string; signal?: AbortSignal } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ["pipe", "ignore", "pipe"], signal: opts.signal });
    let err = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      err = (err + d).slice(-65536); // keep the tail: errors come last
    });
    child.on("error", (e) => reject(new Error(`${cmd}: ${e.message}`)));
    child.on("close", (code, sig) => {
      if (code === 0) resolve(err);
      else reject(new Error(`${cmd} ${args.slice(0, 6).join(" ")}${args.length > 6 ? " …" : ""} failed (${sig ?? `exit ${code}`}): ${err.trim().slice(-2000)}`));
    });
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch {
    return false;
  }
}

async function readMagic(file: string): Promise<Buffer> {
  const fh = await fsp.open(file, "r");
  try {
    const b = Buffer.alloc(8);
    const { bytesRead } = await fh.read(b, 0, 8, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Escapes a path for getfattr/setfattr dump format (octal escapes). */
function attrQuote(p: Buffer): string {
  let s = "";
  for (const c of p) {
    if (c <= 0x20 || c >= 0x7f || c === 0x5c || c === 0x3d) s += "\\" + c.toString(8).padStart(3, "0");
    else s += String.fromCharCode(c);
  }
  return s;
}

function joinBuf(a: Buffer, b: Buffer): Buffer {
  return a.length === 0 ? b : Buffer.concat([a, Buffer.from("/"), b]);
}

interface Whiteouts {
  opaqueDirs: Buffer[]; // relative dirs ("" = root)
  whiteouts: Buffer[]; // relative paths of .wh.NAME files
  meta: Buffer[]; // .wh..wh.* other than opq (aufs leftovers): just removed
}

async function findWhiteouts(root: string, rel: Buffer, out: Whiteouts): Promise<void> {
  const abs = rel.length === 0 ? Buffer.from(root) : Buffer.concat([Buffer.from(root + "/"), rel]);
  const entries = (await fsp.readdir(abs, { withFileTypes: true, encoding: "buffer" })) as unknown as Array<{
    name: Buffer;
    isDirectory(): boolean;
  }>;
  for (const e of entries) {
    const name = e.name;
    if (name.subarray(0, WH_PREFIX.length).equals(WH_PREFIX)) {
      if (name.equals(WH_OPAQUE)) out.opaqueDirs.push(rel);
      else if (name.subarray(0, WH_META.length).equals(WH_META)) out.meta.push(joinBuf(rel, name));
      else out.whiteouts.push(joinBuf(rel, name));
      continue; // never descend into a whiteout entry (it is removed)
    }
    if (e.isDirectory()) await findWhiteouts(root, joinBuf(rel, name), out);
  }
}

async function removePath(p: Buffer): Promise<void> {
  try {
    await fsp.unlink(p);
  } catch {
    await fsp.rm(p, { recursive: true, force: true });
  }
}

/** Converts OCI whiteouts under `dir` to overlayfs form. Returns counts. */
export async function convertWhiteouts(dir: string, signal?: AbortSignal): Promise<{ whiteouts: number; opaque: number }> {
  const found: Whiteouts = { opaqueDirs: [], whiteouts: [], meta: [] };
  await findWhiteouts(dir, Buffer.alloc(0), found);
  const abs = (rel: Buffer) => Buffer.concat([Buffer.from(dir + "/"), rel]);
  const devices: TarEntry[] = [];
  for (const w of found.whiteouts) {
    await removePath(abs(w));
    const slash = w.lastIndexOf(0x2f);
    const parent = slash === -1 ? Buffer.alloc(0) : w.subarray(0, slash);
    const base = (slash === -1 ? w : w.subarray(slash + 1)).subarray(WH_PREFIX.length);
    const target = joinBuf(parent, base);
    // A file of the same name in this very layer stays (whiteouts hide lower layers only).
    try {
      await fsp.lstat(abs(target));
      continue;
    } catch {
      /* absent: create the whiteout device */
    }
    devices.push({ name: target, type: "char", mode: 0, devmajor: 0, devminor: 0 });
  }
  for (const m of found.meta) await removePath(abs(m));
  for (const d of found.opaqueDirs) await fsp.rm(abs(joinBuf(d, WH_OPAQUE)), { force: true });
  if (devices.length > 0) {
    await run("tar", ["-x", "--numeric-owner", "-p", "-f", "-", "-C", dir], { input: writeTar(devices), signal });
  }
  if (found.opaqueDirs.length > 0) {
    const dump = found.opaqueDirs
      .map((d) => `# file: ${d.length === 0 ? "." : attrQuote(d)}\ntrusted.overlay.opaque="y"\n\n`)
      .join("");
    await run("setfattr", ["--restore=-"], { cwd: dir, input: dump, signal });
  }
  return { whiteouts: devices.length, opaque: found.opaqueDirs.length };
}

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export class LayerUnpacker {
  private readonly killAtStep: string | undefined;
  readonly root: string;
  private readonly log: (msg: string) => void;
  private readonly limits: TarLimits;
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(root: string, opts: UnpackOptions = {}) {
    this.root = root;
    this.log = opts.log ?? (() => {});
    this.limits = opts.limits ?? DEFAULT_TAR_LIMITS;
    this.killAtStep = opts.killAtStep;
  }

  /** The directory a layer with this key (diff id or blob digest) unpacks to. */
  dirFor(key: string): string {
    return path.join(this.root, "sha256", digestHex(key));
  }

  async isUnpacked(key: string): Promise<boolean> {
    return exists(this.dirFor(key));
  }

  /** Unpacks once; concurrent calls for one key share the work. Returns the layer dir. */
  async unpack(req: UnpackRequest, signal?: AbortSignal): Promise<string> {
    const key = req.diffId ?? req.blobDigest;
    const dir = this.dirFor(key);
    if (await exists(dir)) return dir;
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.doUnpack(req, dir, signal).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /**
   * Removes temp dirs left by crashed unpacks: those of a process that is
   * gone (the pid is in the name) at once, any other older than maxAgeMs.
   */
  async sweepTemp(maxAgeMs = 24 * 3600_000): Promise<void> {
    const base = path.join(this.root, "sha256");
    let names: string[];
    try {
      names = await fsp.readdir(base);
    } catch {
      return;
    }
    const now = Date.now();
    for (const n of names) {
      if (!n.startsWith(".tmp-")) continue;
      try {
        const pid = Number(/^\.tmp-[^-]+-(\d+)-/.exec(n)?.[1] ?? NaN);
        const st = await fsp.lstat(path.join(base, n));
        if (!processAlive(pid) || now - st.mtimeMs > maxAgeMs) await fsp.rm(path.join(base, n), { recursive: true, force: true });
      } catch {
        /* raced */
      }
    }
  }

  private async doUnpack(req: UnpackRequest, dir: string, signal?: AbortSignal): Promise<string> {
    if (await exists(dir)) return dir;
    const started = Date.now();
    const base = path.dirname(dir);
    await fsp.mkdir(base, { recursive: true });
    const tmp = path.join(base, `.tmp-${path.basename(dir).slice(0, 16)}-${process.pid}-${randomBytes(4).toString("hex")}`);
    await fsp.mkdir(tmp, { mode: 0o755 });
    try {
      // The compression is told by the content, not the media type: gzip,
      // zstd (Debian's zstd binary: Node 20 has no zstd) or a plain tar.
      const magic = await readMagic(req.blobPath);
      const gz = magic.length >= 2 && magic[0] === 0x1f && magic[1] === 0x8b;
      const zstd = magic.length >= 4 && magic.readUInt32LE(0) === 0xfd2fb528;
      const checker = new TarChecker(this.limits);
      const tar = spawn(
        "tar",
        ["-x", "--numeric-owner", "-p", "--xattrs", "--xattrs-include=*", "--xattrs-exclude=trusted.overlay.*", "-f", "-", "-C", tmp],
        { stdio: ["pipe", "ignore", "pipe"] },
      );
      let tarErr = "";
      tar.stderr.setEncoding("utf8");
      tar.stderr.on("data", (d: string) => {
        if (tarErr.length < 65536) tarErr += d;
      });
      const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null }>((resolve) => {
        tar.on("close", (code, sig) => resolve({ code, sig }));
        tar.on("error", (e) => {
          tarErr += e.message;
          resolve({ code: -1, sig: null });
        });
      });
      let streamErr: unknown;
      let zstdErr = "";
      let zstdExit: Promise<number | null> = Promise.resolve(0);
      try {
        if (zstd) {
          const z = spawn("zstd", ["-d", "-c", "-q", "--", req.blobPath], { stdio: ["ignore", "pipe", "pipe"] });
          z.stderr.setEncoding("utf8");
          z.stderr.on("data", (d: string) => (zstdErr = (zstdErr + d).slice(-4096)));
          zstdExit = new Promise((resolve) => {
            z.on("close", (c) => resolve(c));
            z.on("error", (e) => {
              zstdErr += e.message;
              resolve(-1);
            });
          });
          try {
            await pipeline(z.stdout, checker, tar.stdin, { signal });
          } catch (e) {
            // Only on failure: after a clean end of its output zstd may not have
            // exited yet, and killing it then would turn success into "exit null".
            z.kill("SIGKILL");
            throw e;
          }
        } else if (gz) await pipeline(createReadStream(req.blobPath), createGunzip(), checker, tar.stdin, { signal });
        else await pipeline(createReadStream(req.blobPath), checker, tar.stdin, { signal });
      } catch (e) {
        streamErr = e;
        tar.kill("SIGKILL");
      }
      const { code, sig } = await exited;
      const zcode = await zstdExit;
      if (!streamErr && zcode !== 0) {
        throw new LayerUnpackError(`${req.what}: cannot decompress zstd layer ${req.blobDigest}: ${zstdErr.trim() || `zstd exit ${zcode}`}`);
      }
      if (streamErr instanceof UnsafeTarError) {
        throw new LayerUnpackError(`${req.what}: refusing layer ${req.blobDigest}: ${streamErr.message}`);
      }
      if (streamErr) {
        if (signal?.aborted) throw streamErr;
        const msg = streamErr instanceof Error ? streamErr.message : String(streamErr);
        throw new LayerUnpackError(`${req.what}: cannot unpack layer ${req.blobDigest}: ${msg}${tarErr ? ` (tar: ${tarErr.trim().slice(0, 500)})` : ""}`, { cause: streamErr });
      }
      if (code !== 0) {
        throw new LayerUnpackError(`${req.what}: tar failed on layer ${req.blobDigest} (${sig ?? `exit ${code}`}): ${tarErr.trim().slice(0, 2000)}`);
      }
      if (req.diffId !== undefined && checker.digest() !== req.diffId) {
        throw new DigestMismatchError(`${req.what}: layer ${req.blobDigest}: uncompressed content has digest ${checker.digest()}, but the image config says diff id ${req.diffId}`);
      }
      // Crash tests: die with a half-unpacked layer in its temp dir.
      if (this.killAtStep === "unpack") process.kill(process.pid, "SIGKILL");
      const wh = await convertWhiteouts(tmp, signal);
      await run("sync", ["-f", tmp]).catch(() => {});
      try {
        await fsp.rename(tmp, dir);
      } catch (e) {
        const c = (e as NodeJS.ErrnoException).code;
        if ((c === "ENOTEMPTY" || c === "EEXIST") && (await exists(dir))) {
          await fsp.rm(tmp, { recursive: true, force: true });
          return dir;
        }
        throw e;
      }
      this.log(
        `unpacked layer ${req.blobDigest.slice(0, 19)} (${checker.entries} entries, ${wh.whiteouts} whiteouts, ${wh.opaque} opaque dirs` +
          `${checker.strippedSetuid ? `, setuid/setgid cleared on ${checker.strippedSetuid}` : ""}) in ${Date.now() - started} ms`,
      );
      return dir;
    } catch (e) {
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
  }
}
