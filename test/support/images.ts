// Builds OCI image layouts in temp dirs and pushes them to a registry with
// skopeo. pushPythonSlim() publishes the Debian base (python3 + python symlink)
// as library/python:3.13-slim so `python:3.13-slim` resolves through a mirror.

import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { gunzipSync, gzipSync } from "node:zlib";
import type { ImageConfig } from "../../packages/server/src/core/ports.js";
import { ensureBaseLayer } from "../../packages/server/src/images/base-image.js";
import { writeTar, type TarEntry } from "../../packages/server/src/images/tar.js";

const execFileP = promisify(execFile);

/** How a layer blob is stored in the registry (default gzip). */
export type Compression = "gzip" | "zstd" | "none";

export type LayerSpec = (
  | { tarPath: string }
  /** path → content; a path ending in "/" is an (empty) directory. Parent dirs are implied. */
  | { files: Record<string, string> }
  /** raw uncompressed tar bytes (e.g. hand-made hostile archives) */
  | { tar: Buffer }
  /** an already gzip'ed blob with known digests */
  | { blob: { blobPath: string; digest: string; diffId: string; size: number } }
) & { compression?: Compression };

const LAYER_MEDIA_TYPE: Record<Compression, string> = {
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  none: "application/vnd.oci.image.layer.v1.tar",
};

export interface PushedImage {
  manifestDigest: string;
  configDigest: string;
  layers: Array<{ digest: string; diffId: string; size: number }>;
}

const sha = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** Tar bytes for a `files` layer (deterministic: sorted, mtime 0, uid/gid 0). */
export function filesTar(files: Record<string, string>): Buffer {
  const dirs = new Set<string>();
  const entries: TarEntry[] = [];
  for (const p of Object.keys(files)) {
    const parts = p.replace(/\/$/, "").split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
    if (p.endsWith("/")) dirs.add(parts.join("/"));
  }
  for (const d of [...dirs].sort()) entries.push({ name: `${d}/`, type: "dir", mode: 0o755 });
  for (const p of Object.keys(files).sort()) {
    if (p.endsWith("/")) continue;
    entries.push({ name: p, type: "file", data: files[p]!, mode: 0o644 });
  }
  return writeTar(entries);
}

function ociConfig(cfg: Partial<ImageConfig> | undefined, diffIds: string[]): object {
  const c: Record<string, unknown> = {
    Env: cfg?.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
  };
  if (cfg?.workdir) c.WorkingDir = cfg.workdir;
  if (cfg?.user) c.User = cfg.user;
  if (cfg?.entrypoint) c.Entrypoint = cfg.entrypoint;
  if (cfg?.cmd) c.Cmd = cfg.cmd;
  return {
    created: "2024-01-01T00:00:00Z",
    architecture: "amd64",
    os: "linux",
    config: c,
    rootfs: { type: "layers", diff_ids: diffIds },
  };
}

/** Builds an OCI layout for the image and pushes it to <registryHost>/<repo>:<tag>. */
export async function pushImage(
  registryHost: string,
  repoAndTag: string,
  opts: { layers: LayerSpec[]; config?: Partial<ImageConfig>; creds?: { username: string; password: string } },
): Promise<PushedImage> {
  const colon = repoAndTag.lastIndexOf(":");
  if (colon <= repoAndTag.lastIndexOf("/")) throw new Error(`pushImage: ${repoAndTag} needs a :tag`);
  const repo = repoAndTag.slice(0, colon);
  const tag = repoAndTag.slice(colon + 1);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-oci-"));
  try {
    const blobs = path.join(dir, "blobs", "sha256");
    await fsp.mkdir(blobs, { recursive: true });
    const put = async (b: Buffer) => {
      const d = sha(b);
      await fsp.writeFile(path.join(blobs, d.slice(7)), b);
      return d;
    };
    const layers: PushedImage["layers"] = [];
    const mediaTypes: string[] = [];
    for (const spec of opts.layers) {
      if ("blob" in spec) {
        const dest = path.join(blobs, spec.blob.digest.slice(7));
        await fsp.link(spec.blob.blobPath, dest).catch(() => fsp.copyFile(spec.blob.blobPath, dest));
        layers.push({ digest: spec.blob.digest, diffId: spec.blob.diffId, size: spec.blob.size });
        mediaTypes.push(LAYER_MEDIA_TYPE.gzip);
        continue;
      }
      let raw: Buffer;
      if ("tarPath" in spec) raw = await fsp.readFile(spec.tarPath);
      else if ("tar" in spec) raw = spec.tar;
      else raw = filesTar(spec.files);
      if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
      const compression = spec.compression ?? "gzip";
      const blob = compression === "gzip" ? gzipSync(raw) : compression === "zstd" ? execFileSync("zstd", ["-q", "-c", "-19"], { input: raw }) : raw;
      layers.push({ digest: await put(blob), diffId: sha(raw), size: blob.length });
      mediaTypes.push(LAYER_MEDIA_TYPE[compression]);
    }
    const cfgBytes = Buffer.from(JSON.stringify(ociConfig(opts.config, layers.map((l) => l.diffId))));
    const configDigest = await put(cfgBytes);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: cfgBytes.length },
        layers: layers.map((l, i) => ({ mediaType: mediaTypes[i], digest: l.digest, size: l.size })),
      }),
    );
    const manifestDigest = await put(manifest);
    await fsp.writeFile(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    await fsp.writeFile(
      path.join(dir, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            digest: manifestDigest,
            size: manifest.length,
            annotations: { "org.opencontainers.image.ref.name": tag },
          },
        ],
      }),
    );
    await execFileP(
      "skopeo",
      [
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--preserve-digests",
        ...(opts.creds ? ["--dest-creds", `${opts.creds.username}:${opts.creds.password}`] : []),
        `oci:${dir}:${tag}`,
        `docker://${registryHost}/${repo}:${tag}`,
      ],
      { maxBuffer: 16 << 20 },
    );
    return { manifestDigest, configDigest, layers };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Pushes library/python:3.13-slim built from the host-wide Debian base layer
 * (bookworm minbase + python3 3.11 + /usr/bin/python symlink; built once per
 * host if missing, ≈40 s). Has python, python3, bash, sh, date, cat.
 */
export async function pushPythonSlim(registryHost: string, opts: { baseCacheDir?: string } = {}): Promise<PushedImage> {
  const layer = await ensureBaseLayer({ baseCacheDir: opts.baseCacheDir });
  return pushImage(registryHost, "library/python:3.13-slim", {
    layers: [{ blob: layer }],
    config: {
      env: ["PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
      cmd: ["python3"],
    },
  });
}

/** Debian packages that make `pip` work on the base image (python3-pip and what it needs beyond python3). */
const PIP_PACKAGES = ["python3-pip", "python3-setuptools", "python3-wheel", "python3-distutils", "python3-lib2to3", "python3-pkg-resources"];

/**
 * An uncompressed layer adding pip (bookworm's python3-pip, unpacked with
 * dpkg-deb) on top of the Debian base, without Debian's EXTERNALLY-MANAGED
 * marker (a whiteout), as the official python images are. Downloaded from the
 * host's Debian mirror once per host and cached under `cacheDir`.
 */
export async function pipLayerTar(cacheDir = "/var/cache/sbx/test-layers"): Promise<string> {
  const key = createHash("sha256").update(JSON.stringify({ v: 1, PIP_PACKAGES })).digest("hex").slice(0, 12);
  const out = path.join(cacheDir, `pip-${key}.tar`);
  try {
    if ((await fsp.stat(out)).size > 0) return out;
  } catch {
    /* make it */
  }
  await fsp.mkdir(cacheDir, { recursive: true });
  const work = await fsp.mkdtemp(path.join(cacheDir, ".pip-"));
  try {
    const debs = path.join(work, "debs");
    const root = path.join(work, "root");
    await fsp.mkdir(debs);
    await fsp.mkdir(root);
    await fsp.chmod(debs, 0o777); // apt-get download runs as _apt
    await execFileP("apt-get", ["download", ...PIP_PACKAGES], { cwd: debs, maxBuffer: 16 << 20 });
    for (const f of await fsp.readdir(debs)) if (f.endsWith(".deb")) await execFileP("dpkg-deb", ["-x", path.join(debs, f), root]);
    await fsp.writeFile(path.join(root, "usr/lib/python3.11/.wh.EXTERNALLY-MANAGED"), "");
    const tmp = `${out}.${process.pid}.tmp`;
    await execFileP("tar", ["-C", root, "--numeric-owner", "--owner=0", "--group=0", "--sort=name", "-cf", tmp, "."]);
    await fsp.rename(tmp, out);
    return out;
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

/** Like pushPythonSlim, with pip (pipLayerTar) as a second layer. */
export async function pushPythonSlimWithPip(registryHost: string, opts: { baseCacheDir?: string } = {}): Promise<PushedImage> {
  const layer = await ensureBaseLayer({ baseCacheDir: opts.baseCacheDir });
  return pushImage(registryHost, "library/python:3.13-slim", {
    layers: [{ blob: layer }, { tarPath: await pipLayerTar() }],
    config: {
      env: ["PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
      cmd: ["python3"],
    },
  });
}
