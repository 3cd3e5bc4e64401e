// Image records and the resolve() orchestration.
//
// A record <dataDir>/images/<imageId-hex>.json {imageId, ref?, source,
// layers: [{digest, diffId, dir, size}], config, created} is written after all
// of an image's layers are unpacked; it is never changed afterwards (image ids
// are content digests). resolve({kind:"id"}) reads it.
//
// Registry refs: a tag is resolved against the registry ONCE per server
// process (per ref and credentials) and the result reused for the life of the
// process; a new process asks the registry again, but blobs already in the
// content store are not downloaded and unpacked layers are not unpacked again.
// Concurrent resolves of one ref share one pull. A failed resolve is not
// cached. The cache key includes the credentials so an image pulled with one
// user's credentials is not handed to a caller without them.

import { createHash, randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import type { ImageConfig, ImageSource, ResolvedImage } from "../core/ports.js";
import { buildDebianSlim, checkPythonVersion } from "./base-image.js";
import { ContentStore, SHA256_DIGEST_RE, digestHex } from "./content-store.js";
import { ImageNotFoundError, ImageRefError } from "./errors.js";
import { formatImageRef, parseImageRef } from "./reference.js";
import type { OciImageConfig, RegistryClient } from "./registry.js";
import type { LayerUnpacker } from "./unpack.js";

export interface LayerRecord {
  digest: string; // blob digest (compressed)
  diffId: string;
  dir: string; // absolute unpacked dir
  size: number; // blob size
}

export interface ImageRecord {
  imageId: string;
  ref?: string; // canonical reference it was pulled as (first time)
  source: "registry" | "debianSlim";
  layers: LayerRecord[];
  config: ImageConfig;
  created: string;
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

/** Resolves `p`, or rejects as soon as `signal` aborts (the shared work goes on). */
function raceAbort<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

export class ImageStore {
  private readonly d: ImageStoreDeps;
  private readonly recordsDir: string;
  private readonly byRef = new Map<string, Promise<ResolvedImage>>();
  private debianSlim?: Promise<ResolvedImage>;

  constructor(deps: ImageStoreDeps) {
    this.d = deps;
    this.recordsDir = path.join(deps.dataDir, "images");
  }

  resolve(source: ImageSource, signal?: AbortSignal): Promise<ResolvedImage> {
    switch (source.kind) {
      case "registry":
        return raceAbort(this.resolveRegistry(source.ref, source.auth), signal);
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

  private resolveRegistry(refStr: string, auth?: { username: string; password: string }): Promise<ResolvedImage> {
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
      p = this.pull(ref, refStr, canonical, auth);
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
  ): Promise<ResolvedImage> {
    const signal = this.d.closeSignal;
    const t0 = Date.now();
    const pulled = await this.d.registry.pull(ref, display, this.d.content, auth, signal);
    const existing = await this.readRecord(pulled.manifestDigest);
    if (existing && (await this.layersPresent(existing))) {
      this.d.log(`image ${canonical} is ${pulled.manifestDigest.slice(0, 19)} (already materialized)`);
      return this.toResolved(existing);
    }
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
      layers: pulled.layers.map((d, i) => ({ digest: d.digest, diffId: pulled.diffIds[i]!, dir: dirs[i]!, size: d.size })),
      config: toImageConfig(pulled.config),
      created: new Date().toISOString(),
    };
    await this.writeRecord(record);
    this.d.log(`image ${canonical} → ${record.imageId.slice(0, 19)} ready (${record.layers.length} layers, from ${pulled.host}) in ${Date.now() - t0} ms`);
    return this.toResolved(record);
  }

  private async materializeDebianSlim(): Promise<ResolvedImage> {
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
    };
    if (!(await this.readRecord(record.imageId))) await this.writeRecord(record);
    return this.toResolved(record);
  }

  private async loadById(imageId: string): Promise<ResolvedImage> {
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
    return this.toResolved(rec);
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

  private toResolved(rec: ImageRecord): ResolvedImage {
    return { imageId: rec.imageId, layers: rec.layers.map((l) => l.dir), config: rec.config };
  }
}
