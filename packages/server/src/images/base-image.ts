// The built-in Debian base image (`debianSlim`): bookworm minbase + python3 +
// ca-certificates, /usr/bin/python → python3, built with mmdebstrap.
//
// Building needs ~40 s and the Debian mirror, so the mmdebstrap output tar
// and its gzip'ed OCI layer blob live in ONE host-wide cache keyed by the
// recipe (default /var/cache/sbx/base/<name>-<key>/), shared by every data
// dir. The build runs under `flock` on <key>.lock, so concurrent builders (in
// this or other processes) build once; a crashed build leaves only a temp
// file. Per data dir, the layer blob is hard-linked (or copied) into the
// content store, a config + manifest are written, and the layer is unpacked.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, readFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import type { ContentStore } from "./content-store.js";
import { BaseImageError } from "./errors.js";
import { MT, type OciImageConfig } from "./registry.js";
import { writeTar } from "./tar.js";
import { run, type LayerUnpacker } from "./unpack.js";

export const DEFAULT_BASE_CACHE_DIR = "/var/cache/sbx/base";
export const BASE_SUITE = "bookworm";
/** Python shipped by the base image's Debian release. */
export const BASE_PYTHON_VERSION = "3.11";
export const BASE_ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Everything that determines the content of the base tar (the mirror does not). */
export const BASE_RECIPE = {
  version: 1,
  suite: BASE_SUITE,
  variant: "minbase",
  include: ["python3", "ca-certificates"],
  customizeHooks: ['ln -sf python3 "$1/usr/bin/python"'],
  skip: ["output/dev"],
} as const;

export interface BaseCacheOptions {
  baseCacheDir?: string;
  /** Debian mirror URL; default: read from the host's apt sources. */
  mirror?: string;
  log?: (msg: string) => void;
  signal?: AbortSignal;
}

export interface BaseLayer {
  /** Host-wide cached gzip blob. */
  blobPath: string;
  digest: string; // of the gzip blob
  diffId: string; // of the uncompressed tar
  size: number; // gzip blob size
  created: string; // ISO time the layer was made
}

/** Throws BaseImageError unless `v` selects the Python this base image ships. */
export function checkPythonVersion(v: string | undefined): void {
  if (v === undefined || v === BASE_PYTHON_VERSION || v === "3") return;
  throw new BaseImageError(
    `debianSlim: Python ${JSON.stringify(v)} is not available; the Debian ${BASE_SUITE} base image has Python ${BASE_PYTHON_VERSION} only ` +
      `(pass pythonVersion "${BASE_PYTHON_VERSION}" or omit it, or use images.fromRegistry("python:<version>-slim") for other versions)`,
    { code: "unsupported_python_version" },
  );
}

/** First Debian URI from the host's apt config, else deb.debian.org. */
export function hostDebianMirror(): string {
  try {
    const text = readFileSync("/etc/apt/sources.list.d/debian.sources", "utf8");
    for (const stanza of text.split(/\n\s*\n/)) {
      const uris = /^URIs:\s*(\S+)/im.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/im.exec(stanza)?.[1] ?? "";
      if (uris && suites.split(/\s+/).includes(BASE_SUITE)) return uris;
    }
  } catch {
    /* try sources.list */
  }
  try {
    const text = readFileSync("/etc/apt/sources.list", "utf8");
    for (const line of text.split("\n")) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m && m[2] === BASE_SUITE) return m[1]!;
    }
  } catch {
    /* fallback */
  }
  return "http://deb.debian.org/debian";
}

function recipeKey(): string {
  return createHash("sha256").update(JSON.stringify(BASE_RECIPE)).digest("hex").slice(0, 16);
}

function cacheDir(opts: BaseCacheOptions): string {
  return path.join(opts.baseCacheDir ?? DEFAULT_BASE_CACHE_DIR, `${BASE_SUITE}-${BASE_RECIPE.variant}-python3-${recipeKey()}`);
}

/** Bump when the way the layer is derived from the tar changes. */
const LAYER_FORMAT = 2;

const building = new Map<string, Promise<string>>();
const layering = new Map<string, Promise<BaseLayer>>();

// Runs under flock: exits early if the tar exists; builds to a temp name, renames.
const BUILD_SCRIPT = `set -e
out=$1; mirror=$2; shift 2
[ -s "$out" ] && exit 0
tmp="$out.$$.tmp.tar"
trap 'rm -f "$tmp"' EXIT
mmdebstrap "$@" "$tmp" "$mirror"
sync -f "$tmp" || true
mv "$tmp" "$out"
trap - EXIT
`;

/**
 * Path of the host-wide mmdebstrap output tar for the base recipe, building
 * it first if needed (once, under a file lock).
 */
export async function ensureBaseRootfsTar(opts: BaseCacheOptions = {}): Promise<string> {
  const dir = cacheDir(opts);
  const out = path.join(dir, "rootfs.tar");
  try {
    if ((await fsp.stat(out)).size > 0) return out;
  } catch {
    /* build */
  }
  const running = building.get(out);
  if (running) return running;
  const p = (async () => {
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, "recipe.json"), JSON.stringify(BASE_RECIPE, null, 2) + "\n");
    const mirror = opts.mirror ?? hostDebianMirror();
    const log = opts.log ?? (() => {});
    log(`building Debian base image with mmdebstrap from ${mirror} (≈40 s, once per host) into ${dir}`);
    const t0 = Date.now();
    const args = [
      `--variant=${BASE_RECIPE.variant}`,
      `--include=${BASE_RECIPE.include.join(",")}`,
      "--format=tar",
      ...BASE_RECIPE.skip.map((s) => `--skip=${s}`),
      ...BASE_RECIPE.customizeHooks.map((h) => `--customize-hook=${h}`),
      "--aptopt=Acquire::Retries \"3\"",
      BASE_RECIPE.suite,
    ];
    try {
      await run("flock", [`${dir}.lock`, "sh", "-c", BUILD_SCRIPT, "sh", out, mirror, ...args], { signal: opts.signal });
    } catch (e) {
      throw new BaseImageError(`debianSlim: building the Debian base image failed: ${(e as Error).message}`, { cause: e });
    }
    log(`Debian base tar ready in ${Date.now() - t0} ms`);
    return out;
  })().finally(() => building.delete(out));
  building.set(out, p);
  return p;
}

/**
 * The base rootfs as an OCI layer: gzip'ed tar blob + digests, cached beside
 * the tar (gzip output is deterministic, so racing processes write identical files).
 */
export async function ensureBaseLayer(opts: BaseCacheOptions = {}): Promise<BaseLayer> {
  const dir = cacheDir(opts);
  const metaPath = path.join(dir, "layer.json");
  const blobPath = path.join(dir, "layer.tar.gz");
  const cached = await readLayerMeta(metaPath, blobPath);
  if (cached) return cached;
  const running = layering.get(dir);
  if (running) return running;
  const p = (async () => {
    const tar = await ensureBaseRootfsTar(opts);
    const again = await readLayerMeta(metaPath, blobPath);
    if (again) return again;
    const t0 = Date.now();
    const diffHash = createHash("sha256");
    const blobHash = createHash("sha256");
    let size = 0;
    const tmp = `${blobPath}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    // mmdebstrap's --skip=output/dev drops ./dev entirely; put back an empty
    // ./dev/ (the runtime mounts over it) as the first member.
    const devEntry = writeTar([{ name: "./dev/", type: "dir", mode: 0o755, mtime: Math.floor((await fsp.stat(tar)).mtimeMs / 1000) }]);
    const devHeader = devEntry.subarray(0, devEntry.length - 1024);
    try {
      await pipeline(
        async function* () {
          yield devHeader;
          yield* createReadStream(tar);
        },
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            diffHash.update(chunk);
            cb(null, chunk);
          },
        }),
        createGzip({ level: 6 }),
        new Transform({
          transform(chunk: Buffer, _e, cb) {
            blobHash.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        }),
        createWriteStream(tmp),
        { signal: opts.signal },
      );
      await fsp.rename(tmp, blobPath);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
    const layer: BaseLayer = {
      blobPath,
      digest: `sha256:${blobHash.digest("hex")}`,
      diffId: `sha256:${diffHash.digest("hex")}`,
      size,
      created: (await fsp.stat(tar)).mtime.toISOString(),
    };
    const metaTmp = `${metaPath}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const { blobPath: _omit, ...meta } = layer;
    await fsp.writeFile(metaTmp, JSON.stringify({ format: LAYER_FORMAT, ...meta }, null, 2) + "\n");
    await fsp.rename(metaTmp, metaPath);
    (opts.log ?? (() => {}))(`Debian base layer ${layer.digest.slice(0, 19)} (${size} bytes gzip) made in ${Date.now() - t0} ms`);
    return layer;
  })().finally(() => layering.delete(dir));
  layering.set(dir, p);
  return p;
}

async function readLayerMeta(metaPath: string, blobPath: string): Promise<BaseLayer | null> {
  try {
    const { format, ...meta } = JSON.parse(await fsp.readFile(metaPath, "utf8")) as Omit<BaseLayer, "blobPath"> & { format?: number };
    if (format !== LAYER_FORMAT) return null;
    const st = await fsp.stat(blobPath);
    if (st.size !== meta.size) return null;
    return { ...meta, blobPath };
  } catch {
    return null;
  }
}

export interface BuiltBaseImage {
  manifestDigest: string;
  configDigest: string;
  config: OciImageConfig;
  layer: { digest: string; diffId: string; size: number; dir: string };
}

/** The OCI image config of the base image for a layer. */
export function baseImageConfig(layer: Pick<BaseLayer, "diffId" | "created">): OciImageConfig & Record<string, unknown> {
  return {
    created: layer.created,
    architecture: process.arch === "x64" ? "amd64" : process.arch,
    os: "linux",
    config: { Env: [BASE_ENV_PATH], Cmd: ["/bin/bash"] },
    rootfs: { type: "layers", diff_ids: [layer.diffId] },
    history: [
      {
        created: layer.created,
        created_by: `mmdebstrap --variant=${BASE_RECIPE.variant} --include=${BASE_RECIPE.include.join(",")} ${BASE_RECIPE.suite}`,
      },
    ],
  };
}

/** Makes the base image available in one data dir's content store and layer cache. */
export async function buildDebianSlim(
  store: ContentStore,
  unpacker: LayerUnpacker,
  opts: BaseCacheOptions = {},
): Promise<BuiltBaseImage> {
  const layer = await ensureBaseLayer(opts);
  await store.ingestFile(layer.blobPath, layer.digest, "debianSlim: base layer");
  const config = baseImageConfig(layer);
  const cfg = await store.ingestBuffer(Buffer.from(JSON.stringify(config)), undefined, "debianSlim: config");
  const manifest = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: MT.ociConfig, digest: cfg.digest, size: cfg.size },
    layers: [{ mediaType: MT.ociLayerGzip, digest: layer.digest, size: layer.size }],
    annotations: { "org.opencontainers.image.ref.name": `sbx/debian-slim:${BASE_SUITE}-python${BASE_PYTHON_VERSION}` },
  };
  const man = await store.ingestBuffer(Buffer.from(JSON.stringify(manifest)), undefined, "debianSlim: manifest");
  const dir = await unpacker.unpack(
    { blobPath: store.blobPath(layer.digest), blobDigest: layer.digest, diffId: layer.diffId, what: "debianSlim" },
    opts.signal,
  );
  return {
    manifestDigest: man.digest,
    configDigest: cfg.digest,
    config,
    layer: { digest: layer.digest, diffId: layer.diffId, size: layer.size, dir },
  };
}
