// Image records and the resolve() orchestration.
//
// A record <dataDir>/images/<imageId-hex>.json {imageId, ref?, source,
// layers: [{digest, diffId, dir, size}], config, created} is written after all
// of an image's layers are unpacked; it is never changed afterwards (image ids
// are content digests). resolve({kind:"id"}) reads it.
//
// Builds (commit / commitCopy) record images with source "build" and a
// parent; their layers are captured by capture.ts, gzip'ed into the content
// store and unpacked like pulled ones. The build cache maps a key (computed
// by core/builds.ts) to an image id: <dataDir>/builds/cache/<key>.json.
//
// Removal: remove()/prune() take the write side of a lock whose read side
// every resolve/commit holds, so garbage collection (blobs and layer dirs no
// remaining record names) never races a pull or a build.
//
// Registry refs: a tag is resolved against the registry ONCE per server
// process (per ref and credentials) and the result reused for the life of the
// process; a new process asks the registry again, but blobs already in the
// content store are not downloaded and unpacked layers are not unpacked again.
// Concurrent resolves of one ref share one pull. A failed resolve is not
// cached. The cache key includes the credentials so an image pulled with one
// user's credentials is not handed to a caller without them.

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { PassThrough, Readable, Transform } from "node:stream";
import { pipeline } from "node:stream";
import { promisify } from "node:util";
import { createGzip } from "node:zlib";
import type { ImageConfig, ImageInfo, ImageSource, ImageUser, PruneResult, ResolvedImage, ResolveOptions } from "../core/ports.js";
import { buildDebianSlim, checkPythonVersion } from "./base-image.js";
import { treeTar } from "./capture.js";
import { ContentStore, SHA256_DIGEST_RE, digestHex } from "./content-store.js";
import { ImageConfigError, ImageInUseError, ImageNotFoundError, ImageRefError } from "./errors.js";
import { formatImageRef, parseImageRef } from "./reference.js";
import { MT, type OciImageConfig, type RegistryClient } from "./registry.js";
import { run, type LayerUnpacker } from "./unpack.js";
import { resolveUser } from "./user.js";
import { raceAbort } from "../abort.js";

const execFileP = promisify(execFile);

export interface LayerRecord {
  digest: string; // blob digest (compressed)
  diffId: string;
  dir: string; // absolute unpacked dir
  size: number; // blob size
  /** Media type in the manifest (absent in older records: gzip). */
  mediaType?: string;
}

export interface ImageRecord {
  imageId: string;
  ref?: string; // canonical reference it was pulled as (first time)
  source: "registry" | "debianSlim" | "build";
  layers: LayerRecord[];
  config: ImageConfig;
  created: string;
  /** Config blob digest (absent in older records: read from the manifest). */
  configDigest?: string;
  /** Builds: the image this one was built on. */
  parent?: string;
}

/**
 * Paths of a build sandbox's upper dir that are not the build's work: the
 * agent's run dir and the mount points the runtime binds over /etc files.
 */
export const CAPTURE_EXCLUDE: ReadonlySet<string> = new Set([".sbx", "etc/resolv.conf", "etc/hosts", "etc/hostname"]);

/**
 * `p` resolved inside `root` like a chroot would: symlinks (absolute or
 * relative) and ".." never leave `root`. Returns the path relative to root.
 * Throws ImageConfigError when a component is missing or links loop.
 */
export async function resolveInRoot(root: string, p: string, what: string): Promise<string> {
  const done: string[] = [];
  const todo = p.split("/").filter((c) => c !== "" && c !== ".").reverse();
  let hops = 0;
  while (todo.length > 0) {
    const c = todo.pop()!;
    if (c === "..") {
      done.pop();
      continue;
    }
    const abs = path.join(root, ...done, c);
    let st;
    try {
      st = await fsp.lstat(abs);
    } catch {
      throw new ImageConfigError(`${what}: /${[...done, c].join("/")} does not exist in the source image`);
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) throw new ImageConfigError(`${what}: too many levels of symbolic links in ${p}`);
      const target = await fsp.readlink(abs);
      if (target.startsWith("/")) done.length = 0;
      todo.push(...target.split("/").filter((x) => x !== "" && x !== ".").reverse());
      continue;
    }
    done.push(c);
  }
  return done.join("/");
}

/** Many readers (resolve, commit) or one writer (garbage collection). */
class GcLock {
  private readers = 0;
  private writer: Promise<void> | null = null;
  private idle: (() => void)[] = [];

  async read<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer) await this.writer;
    this.readers++;
    try {
      return await fn();
    } finally {
      if (--this.readers === 0) for (const w of this.idle.splice(0)) w();
    }
  }

  async write<T>(fn: () => Promise<T>): Promise<T> {
    while (this.writer) await this.writer;
    let release!: () => void;
    this.writer = new Promise<void>((r) => (release = r));
    try {
      while (this.readers > 0) await new Promise<void>((r) => this.idle.push(r));
      // Let callers that just got an image record that they use it
      // (e.g. a sandbox's imageId) before `inUse` is asked.
      await new Promise((r) => setImmediate(r));
      return await fn();
    } finally {
      this.writer = null;
      release();
    }
  }
}

export interface ImageStoreDeps {
  dataDir: string;
  content: ContentStore;
  unpacker: LayerUnpacker;
  registry: RegistryClient;
  baseCacheDir?: string;
  log: (msg: string) => void;
  /** Aborted by close(): cancels shared in-flight work. */
  closeSignal: AbortSignal;
}

const UNPACK_CONCURRENCY = 3;

/** Maps the runtime part of an OCI config to ports.ImageConfig. */
export function toImageConfig(oci: OciImageConfig): ImageConfig {
  const c = oci.config ?? {};
  const out: ImageConfig = { env: Array.isArray(c.Env) ? c.Env.filter((e) => typeof e === "string") : [] };
  if (typeof c.WorkingDir === "string" && c.WorkingDir !== "") out.workdir = c.WorkingDir;
  if (typeof c.User === "string" && c.User !== "") out.user = c.User;
  if (Array.isArray(c.Entrypoint) && c.Entrypoint.length > 0) out.entrypoint = c.Entrypoint;
  if (Array.isArray(c.Cmd) && c.Cmd.length > 0) out.cmd = c.Cmd;
  return out;
}


export class ImageStore {
  private readonly d: ImageStoreDeps;
  private readonly recordsDir: string;
  private readonly cacheDir: string;
  private readonly byRef = new Map<string, Promise<ImageRecord>>();
  private debianSlim?: Promise<ImageRecord>;
  private readonly lock = new GcLock();
  /** Unpacked bytes per layer dir (du), filled lazily by list(). */
  private readonly duCache = new Map<string, number>();

  constructor(deps: ImageStoreDeps) {
    this.d = deps;
    this.recordsDir = path.join(deps.dataDir, "images");
    this.cacheDir = path.join(deps.dataDir, "builds", "cache");
  }

  resolve(source: ImageSource, signal?: AbortSignal, opts: ResolveOptions = {}): Promise<ResolvedImage> {
    return this.lock.read(async () => this.toResolved(await this.resolveRecord(source, signal, opts)));
  }

  private resolveRecord(source: ImageSource, signal?: AbortSignal, opts: ResolveOptions = {}): Promise<ImageRecord> {
    switch (source.kind) {
      case "registry":
        return raceAbort(this.resolveRegistry(source.ref, source.auth, opts.onLog), signal);
      case "debianSlim":
        try {
          checkPythonVersion(source.pythonVersion);
        } catch (e) {
          return Promise.reject(e);
        }
        if (!this.debianSlim) {
          this.debianSlim = this.materializeDebianSlim();
          this.debianSlim.catch(() => (this.debianSlim = undefined));
        }
        return raceAbort(this.debianSlim, signal);
      case "id":
        return raceAbort(this.loadById(source.imageId), signal);
      case "dockerfile":
        return Promise.reject(new ImageRefError("dockerfile images are built by the build service (core/builds.ts), not resolved here"));
      default:
        return Promise.reject(new ImageRefError(`unknown image source kind ${JSON.stringify((source as { kind?: unknown }).kind)}`));
    }
  }

  /** Reads a record, or null. */
  async readRecord(imageId: string): Promise<ImageRecord | null> {
    try {
      return JSON.parse(await fsp.readFile(this.recordPath(imageId), "utf8")) as ImageRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  private recordPath(imageId: string): string {
    return path.join(this.recordsDir, `${digestHex(imageId)}.json`);
  }

  private resolveRegistry(refStr: string, auth?: { username: string; password: string }, onLog?: (t: string) => void): Promise<ImageRecord> {
    let canonical: string;
    let ref: ReturnType<typeof parseImageRef>;
    try {
      ref = parseImageRef(refStr);
      canonical = formatImageRef(ref);
    } catch (e) {
      return Promise.reject(e);
    }
    const key = auth ? `${canonical}\0${auth.username}\0${createHash("sha256").update(auth.password).digest("hex")}` : canonical;
    let p = this.byRef.get(key);
    if (!p) {
      p = this.pull(ref, refStr, canonical, auth, onLog);
      this.byRef.set(key, p);
      p.catch(() => {
        if (this.byRef.get(key) === p) this.byRef.delete(key);
      });
    }
    return p;
  }

  private async pull(
    ref: ReturnType<typeof parseImageRef>,
    display: string,
    canonical: string,
    auth?: { username: string; password: string },
    onLog?: (t: string) => void,
  ): Promise<ImageRecord> {
    const signal = this.d.closeSignal;
    const t0 = Date.now();
    const pulled = await this.d.registry.pull(ref, display, this.d.content, auth, signal, onLog);
    const existing = await this.readRecord(pulled.manifestDigest);
    if (existing && (await this.layersPresent(existing))) {
      this.d.log(`image ${canonical} is ${pulled.manifestDigest.slice(0, 19)} (already materialized)`);
      return existing;
    }
    if (pulled.layers.length > 0) onLog?.(`unpacking ${pulled.layers.length} layer${pulled.layers.length === 1 ? "" : "s"}\n`);
    const dirs: string[] = new Array(pulled.layers.length);
    let next = 0;
    const worker = async () => {
      while (next < pulled.layers.length) {
        const i = next++;
        const d = pulled.layers[i]!;
        dirs[i] = await this.d.unpacker.unpack(
          { blobPath: this.d.content.blobPath(d.digest), blobDigest: d.digest, diffId: pulled.diffIds[i], what: display },
          signal,
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(UNPACK_CONCURRENCY, pulled.layers.length) }, worker));
    const record: ImageRecord = {
      imageId: pulled.manifestDigest,
      ref: canonical,
      source: "registry",
      layers: pulled.layers.map((d, i) => ({
        digest: d.digest,
        diffId: pulled.diffIds[i]!,
        dir: dirs[i]!,
        size: d.size,
        ...(d.mediaType ? { mediaType: d.mediaType } : {}),
      })),
      config: toImageConfig(pulled.config),
      created: new Date().toISOString(),
      configDigest: pulled.configDigest,
    };
    await this.writeRecord(record);
    this.d.log(`image ${canonical} → ${record.imageId.slice(0, 19)} ready (${record.layers.length} layers, from ${pulled.host}) in ${Date.now() - t0} ms`);
    return record;
  }

  private async materializeDebianSlim(): Promise<ImageRecord> {
    const built = await buildDebianSlim(this.d.content, this.d.unpacker, {
      baseCacheDir: this.d.baseCacheDir,
      log: this.d.log,
      signal: this.d.closeSignal,
    });
    const record: ImageRecord = {
      imageId: built.manifestDigest,
      ref: "sbx/debian-slim",
      source: "debianSlim",
      layers: [built.layer],
      config: toImageConfig(built.config),
      created: new Date().toISOString(),
      configDigest: built.configDigest,
    };
    if (!(await this.readRecord(record.imageId))) await this.writeRecord(record);
    return record;
  }

  private async loadById(imageId: string): Promise<ImageRecord> {
    if (typeof imageId !== "string" || !SHA256_DIGEST_RE.test(imageId)) {
      throw new ImageRefError(`invalid image id ${JSON.stringify(imageId)}: expected "sha256:" followed by 64 lowercase hex digits`);
    }
    const rec = await this.readRecord(imageId);
    if (!rec) throw new ImageNotFoundError(`image ${imageId} not found in this server's image store`);
    // Re-unpack layers whose dir went missing, when their blob is still here.
    for (const l of rec.layers) {
      try {
        await fsp.lstat(l.dir);
      } catch {
        if (!(await this.d.content.has(l.digest))) {
          throw new ImageNotFoundError(`image ${imageId}: layer ${l.digest} is gone from this server; pull the image again`);
        }
        await this.d.unpacker.unpack(
          { blobPath: this.d.content.blobPath(l.digest), blobDigest: l.digest, diffId: l.diffId, what: imageId },
          this.d.closeSignal,
        );
      }
    }
    return rec;
  }

  private async layersPresent(rec: ImageRecord): Promise<boolean> {
    for (const l of rec.layers) {
      try {
        await fsp.lstat(l.dir);
      } catch {
        return false;
      }
    }
    return true;
  }

  private async writeRecord(rec: ImageRecord): Promise<void> {
    await fsp.mkdir(this.recordsDir, { recursive: true });
    const dest = this.recordPath(rec.imageId);
    const tmp = `${dest}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(rec, null, 2) + "\n");
    await fsp.rename(tmp, dest);
  }

  /** The runtime's view; USER is resolved against the image's own passwd/group. */
  private async toResolved(rec: ImageRecord): Promise<ResolvedImage> {
    const layers = rec.layers.map((l) => l.dir);
    const out: ResolvedImage = { imageId: rec.imageId, layers, config: rec.config };
    const user = rec.config.user;
    if (user !== undefined && user !== "" && user !== "root" && user !== "0" && user !== "0:0") {
      out.user = await resolveUser(layers, user, `image ${rec.ref ?? rec.imageId}`);
    }
    return out;
  }

  // ---- builds -----------------------------------------------------------------

  /** See ImageCatalog.commit in core/ports.ts. */
  commit(
    req: { parentId: string; config: ImageConfig; history: string; upper?: { dir: string; uidBase: number } },
    signal?: AbortSignal,
  ): Promise<ResolvedImage> {
    return this.lock.read(async () => {
      const parent = await this.loadById(req.parentId);
      let layers = parent.layers;
      if (req.upper) {
        const tar = treeTar(req.upper.dir, { uidBase: req.upper.uidBase, overlay: true, exclude: CAPTURE_EXCLUDE, signal });
        layers = [...layers, await this.ingestLayer(tar, `build on ${req.parentId.slice(0, 19)}`, signal)];
      }
      return this.toResolved(await this.recordBuilt(parent, layers, req.config, req.history));
    });
  }

  /** See ImageCatalog.commitCopy in core/ports.ts. */
  commitCopy(
    req: { parentId: string; fromId: string; srcPath: string; destPath: string; config: ImageConfig; history: string },
    signal?: AbortSignal,
  ): Promise<ResolvedImage> {
    return this.lock.read(async () => {
      const parent = await this.loadById(req.parentId);
      const from = await this.loadById(req.fromId);
      const what = `COPY --from=${req.fromId.slice(0, 19)} ${req.srcPath} ${req.destPath}`;
      await fsp.mkdir(path.join(this.d.dataDir, "builds"), { recursive: true });
      const mnt = await fsp.mkdtemp(path.join(this.d.dataDir, "builds", ".copy-"));
      let mounted = false;
      try {
        let root = from.layers[0]!.dir;
        if (from.layers.length > 1) {
          const lower = from.layers.map((l) => l.dir).reverse().join(":");
          await run("mount", ["-t", "overlay", "overlay", "-o", `ro,lowerdir=${lower}`, mnt]);
          mounted = true;
          root = mnt;
        }
        // Symlinks on the source path are followed inside the image's root (as Docker does), never out of it.
        const rel = await resolveInRoot(root, req.srcPath, what);
        const src = path.join(root, rel);
        const st = await fsp.lstat(src);
        let dest = req.destPath.replace(/^\/+/, "");
        if (!st.isDirectory() && req.destPath.endsWith("/")) dest = path.posix.join(dest, path.posix.basename(req.srcPath));
        const tar = treeTar(src, { uidBase: 0, overlay: false, prefix: dest, prefixDirs: true, signal });
        const layer = await this.ingestLayer(tar, what, signal);
        return this.toResolved(await this.recordBuilt(parent, [...parent.layers, layer], req.config, req.history));
      } finally {
        if (mounted) await run("umount", [mnt]).catch(() => run("umount", ["-l", mnt]).catch(() => {}));
        await fsp.rmdir(mnt).catch(() => {});
      }
    });
  }

  /** tar stream → gzip blob in the content store → unpacked layer dir. */
  private async ingestLayer(tar: AsyncIterable<Buffer>, what: string, signal?: AbortSignal): Promise<LayerRecord> {
    const diff = createHash("sha256");
    const gz = pipeline(
      Readable.from(tar, { objectMode: false }),
      new Transform({
        transform(chunk: Buffer, _e, cb) {
          diff.update(chunk);
          cb(null, chunk);
        },
      }),
      createGzip({ level: 6 }),
      new PassThrough(),
      () => {},
    );
    if (signal) signal.addEventListener("abort", () => gz.destroy(signal.reason as Error), { once: true });
    const blob = await this.d.content.ingestUnknown(gz, `${what}: layer`);
    const diffId = `sha256:${diff.digest("hex")}`;
    const dir = await this.d.unpacker.unpack({ blobPath: blob.path, blobDigest: blob.digest, diffId, what }, signal);
    return { digest: blob.digest, diffId, dir, size: blob.size, mediaType: MT.ociLayerGzip };
  }

  /** Writes config + manifest for a built image and its record. */
  private async recordBuilt(parent: ImageRecord, layers: LayerRecord[], config: ImageConfig, history: string): Promise<ImageRecord> {
    const created = new Date().toISOString();
    const c: NonNullable<OciImageConfig["config"]> = { Env: config.env };
    if (config.workdir) c.WorkingDir = config.workdir;
    if (config.user) c.User = config.user;
    if (config.entrypoint) c.Entrypoint = config.entrypoint;
    if (config.cmd) c.Cmd = config.cmd;
    const oci = {
      created,
      architecture: process.arch === "x64" ? "amd64" : process.arch,
      os: "linux",
      config: c,
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: [{ created, created_by: history, ...(layers.length === parent.layers.length ? { empty_layer: true } : {}) }],
    };
    const cfg = await this.d.content.ingestBuffer(Buffer.from(JSON.stringify(oci)), undefined, "build: config");
    const manifest = {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: cfg.digest, size: cfg.size },
      layers: layers.map((l) => ({ mediaType: l.mediaType ?? MT.ociLayerGzip, digest: l.digest, size: l.size })),
    };
    const man = await this.d.content.ingestBuffer(Buffer.from(JSON.stringify(manifest)), undefined, "build: manifest");
    const record: ImageRecord = {
      imageId: man.digest,
      source: "build",
      layers,
      config,
      created,
      configDigest: cfg.digest,
      parent: parent.imageId,
    };
    await this.writeRecord(record);
    return record;
  }

  async cacheGet(key: string): Promise<string | null> {
    try {
      const { imageId } = JSON.parse(await fsp.readFile(this.cachePath(key), "utf8")) as { imageId: string };
      const rec = await this.readRecord(imageId);
      if (!rec || !(await this.layersPresent(rec))) return null;
      return imageId;
    } catch {
      return null;
    }
  }

  async cachePut(key: string, imageId: string): Promise<void> {
    await fsp.mkdir(this.cacheDir, { recursive: true });
    const dest = this.cachePath(key);
    const tmp = `${dest}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify({ imageId, created: new Date().toISOString() }) + "\n");
    await fsp.rename(tmp, dest);
  }

  private cachePath(key: string): string {
    if (!/^[a-f0-9]{64}$/.test(key)) throw new Error(`bad build cache key ${JSON.stringify(key)}`);
    return path.join(this.cacheDir, `${key}.json`);
  }

  /** key → imageId of every cache entry. */
  private async cacheEntries(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.cacheDir);
    } catch {
      return out;
    }
    for (const n of names) {
      if (!/^[a-f0-9]{64}\.json$/.test(n)) continue;
      try {
        out.set(n.slice(0, 64), (JSON.parse(await fsp.readFile(path.join(this.cacheDir, n), "utf8")) as { imageId: string }).imageId);
      } catch {
        /* torn */
      }
    }
    return out;
  }

  resolveUser(layers: string[], user: string, what: string): Promise<ImageUser> {
    return resolveUser(layers, user, what);
  }

  // ---- management ---------------------------------------------------------------

  private async allRecords(): Promise<ImageRecord[]> {
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.recordsDir);
    } catch {
      return [];
    }
    const out: ImageRecord[] = [];
    for (const n of names) {
      if (!/^[a-f0-9]{64}\.json$/.test(n)) continue;
      const rec = await this.readRecord(`sha256:${n.slice(0, 64)}`).catch(() => null);
      if (rec) out.push(rec);
    }
    return out.sort((a, b) => a.created.localeCompare(b.created));
  }

  private async du(dir: string): Promise<number> {
    const known = this.duCache.get(dir);
    if (known !== undefined) return known;
    try {
      const { stdout } = await execFileP("du", ["-s", "-B1", "--apparent-size", dir]);
      const n = Number(stdout.split(/\s/)[0]);
      this.duCache.set(dir, n);
      return n;
    } catch {
      return 0;
    }
  }

  private async infos(records: ImageRecord[]): Promise<ImageInfo[]> {
    const users = new Map<string, number>();
    for (const r of records) for (const l of new Set(r.layers.map((x) => x.dir))) users.set(l, (users.get(l) ?? 0) + 1);
    const cached = new Set((await this.cacheEntries()).values());
    const out: ImageInfo[] = [];
    for (const r of records) {
      const layers: ImageInfo["layers"] = [];
      for (const l of r.layers) {
        const blobBytes = (await this.d.content.stat(l.digest))?.size ?? 0;
        layers.push({ digest: l.digest, diffId: l.diffId, blobBytes, diskBytes: blobBytes + (await this.du(l.dir)), sharedWith: (users.get(l.dir) ?? 1) - 1 });
      }
      const seen = new Set<string>();
      let diskBytes = 0;
      let uniqueBytes = 0;
      r.layers.forEach((l, i) => {
        if (seen.has(l.dir)) return;
        seen.add(l.dir);
        diskBytes += layers[i]!.diskBytes;
        if (layers[i]!.sharedWith === 0) uniqueBytes += layers[i]!.diskBytes;
      });
      out.push({
        imageId: r.imageId,
        ref: r.ref ?? null,
        source: r.source,
        parentId: r.parent ?? null,
        created: r.created,
        config: r.config,
        layers,
        diskBytes,
        uniqueBytes,
        buildCached: cached.has(r.imageId),
      });
    }
    return out;
  }

  list(): Promise<ImageInfo[]> {
    return this.lock.read(async () => this.infos(await this.allRecords()));
  }

  inspect(imageId: string): Promise<ImageInfo> {
    return this.lock.read(async () => {
      if (!SHA256_DIGEST_RE.test(imageId)) throw new ImageRefError(`invalid image id ${JSON.stringify(imageId)}: expected "sha256:" followed by 64 lowercase hex digits`);
      const all = await this.allRecords();
      const info = (await this.infos(all)).find((i) => i.imageId === imageId);
      if (!info) throw new ImageNotFoundError(`image ${imageId} not found in this server's image store`);
      return info;
    });
  }

  remove(imageId: string, inUse: () => ReadonlySet<string>): Promise<PruneResult> {
    if (!SHA256_DIGEST_RE.test(imageId)) {
      return Promise.reject(new ImageRefError(`invalid image id ${JSON.stringify(imageId)}: expected "sha256:" followed by 64 lowercase hex digits`));
    }
    return this.lock.write(async () => {
      const rec = await this.readRecord(imageId);
      if (!rec) throw new ImageNotFoundError(`image ${imageId} not found in this server's image store`);
      if (inUse().has(imageId)) throw new ImageInUseError(`image ${imageId} is used by a running sandbox or build; terminate those first`);
      return this.removeAndCollect([rec], true);
    });
  }

  prune(inUse: () => ReadonlySet<string>, opts: { all: boolean }): Promise<PruneResult> {
    return this.lock.write(async () => {
      const all = await this.allRecords();
      const byId = new Map(all.map((r) => [r.imageId, r]));
      const keep = new Set(inUse());
      if (!opts.all) for (const id of (await this.cacheEntries()).values()) keep.add(id);
      // An image kept keeps its ancestors (a rebuild of a later step starts from them).
      for (const id of [...keep]) {
        for (let p = byId.get(id)?.parent; p && !keep.has(p); p = byId.get(p)?.parent) keep.add(p);
      }
      return this.removeAndCollect(all.filter((r) => !keep.has(r.imageId)), opts.all);
    });
  }

  /** Deletes records (and cache entries naming them), then blobs and layer dirs no record uses. */
  private async removeAndCollect(victims: ImageRecord[], dropCache: boolean): Promise<PruneResult> {
    const gone = new Set(victims.map((r) => r.imageId));
    for (const r of victims) await fsp.rm(this.recordPath(r.imageId), { force: true });
    for (const [key, id] of await this.cacheEntries()) {
      if (gone.has(id) || dropCache) await fsp.rm(path.join(this.cacheDir, `${key}.json`), { force: true });
    }
    // Forget per-process tag resolutions that point at removed images.
    for (const [k, p] of this.byRef) {
      const rec = await p.catch(() => null);
      if (!rec || gone.has(rec.imageId)) this.byRef.delete(k);
    }
    if (this.debianSlim && gone.has((await this.debianSlim.catch(() => null))?.imageId ?? "")) this.debianSlim = undefined;

    const remaining = await this.allRecords();
    const blobs = new Set<string>();
    const dirs = new Set<string>();
    for (const r of remaining) {
      blobs.add(digestHex(r.imageId));
      const cfg = r.configDigest ?? (await this.configDigestOf(r.imageId));
      if (cfg) blobs.add(digestHex(cfg));
      for (const l of r.layers) {
        blobs.add(digestHex(l.digest));
        dirs.add(path.basename(l.dir));
      }
    }
    let freedBytes = 0;
    const blobDir = path.join(this.d.content.root, "blobs", "sha256");
    for (const n of await fsp.readdir(blobDir).catch(() => [] as string[])) {
      if (blobs.has(n) || !/^[a-f0-9]{64}$/.test(n)) continue;
      const p = path.join(blobDir, n);
      freedBytes += (await fsp.stat(p).catch(() => null))?.size ?? 0;
      await fsp.rm(p, { force: true });
    }
    const layerDir = path.join(this.d.unpacker.root, "sha256");
    for (const n of await fsp.readdir(layerDir).catch(() => [] as string[])) {
      if (dirs.has(n) || !/^[a-f0-9]{64}$/.test(n)) continue;
      const p = path.join(layerDir, n);
      freedBytes += await this.du(p);
      this.duCache.delete(p);
      await fsp.rm(p, { recursive: true, force: true });
    }
    this.d.log(`images: removed ${victims.length} image(s), freed ${freedBytes} bytes`);
    return { removedImages: victims.map((r) => r.imageId), freedBytes };
  }

  private async configDigestOf(manifestDigest: string): Promise<string | null> {
    try {
      const m = JSON.parse((await this.d.content.read(manifestDigest)).toString("utf8")) as { config?: { digest?: string } };
      return typeof m.config?.digest === "string" && SHA256_DIGEST_RE.test(m.config.digest) ? m.config.digest : null;
    } catch {
      return null;
    }
  }
}
