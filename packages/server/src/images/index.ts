// images/ — the ImageService (and the ImageCatalog core's builds use): turns
// an ImageSource (registry ref, built-in Debian base, or a known image id)
// into read-only unpacked layer dirs that the runtime stacks as overlayfs
// lowerdirs; records images built by core/builds.ts from a build sandbox's
// upper dir; lists, removes and garbage-collects what it holds.
//
// On-disk objects under <dataDir> and their lifecycle:
//   content/blobs/sha256/<hex>   manifests, configs, layer blobs. Written once
//                                through content/ingest/ (hash-verified, fsynced,
//                                renamed); never modified; shared by every image
//                                naming the digest. (content-store.ts)
//   layers/sha256/<diffid-hex>/  a layer unpacked once (temp dir + rename),
//                                whiteouts in overlayfs form; read-only by
//                                convention, shared by all images and sandboxes
//                                that use it. Unpacking refuses or confines
//                                hostile archives (tar.ts, unpack.ts).
//   images/<imageId-hex>.json    an image record, written after its layers are
//                                unpacked. (image-store.ts)
//   builds/cache/<key>.json      build cache: recipe key → image id.
// Host-wide: <baseCacheDir> (default /var/cache/sbx/base) holds the mmdebstrap
// output tar and gzip layer of the Debian base image. (base-image.ts)
// remove()/prune() delete records, then every blob and layer dir no remaining
// record names; temp files older than a day left by a crash are swept when a
// service is created.
//
// Tags are resolved once per server process (see image-store.ts).
// close() aborts in-flight pulls/unpacks/builds; it does not delete anything.

import * as path from "node:path";
import type { ImageCatalog, ImageSource, ResolvedImage, ResolveOptions } from "../core/ports.js";
import { DEFAULT_BASE_CACHE_DIR } from "./base-image.js";
import { ContentStore } from "./content-store.js";
import { ImageStore } from "./image-store.js";
import { RegistryClient } from "./registry.js";
import type { TarLimits } from "./tar.js";
import { LayerUnpacker } from "./unpack.js";

export {
  BaseImageError,
  DigestMismatchError,
  ImageConfigError,
  ImageError,
  ImageInUseError,
  ImageNotFoundError,
  ImageRefError,
  LayerUnpackError,
  RegistryAuthError,
  RegistryError,
} from "./errors.js";
export { parseImageRef, formatImageRef, type ImageRef } from "./reference.js";
export { ensureBaseRootfsTar, ensureBaseLayer, BASE_PYTHON_VERSION, type BaseLayer } from "./base-image.js";
export type { ImageRecord } from "./image-store.js";
export { DEFAULT_TAR_LIMITS, type TarLimits } from "./tar.js";

export interface ImageServiceOptions {
  dataDir: string;
  /** Registry name → mirror base URL, e.g. {"docker.io": "http://127.0.0.1:5000"}. */
  mirrors?: Record<string, string>;
  /** Registry hosts ("host" or "host:port") that may be reached over plain http. */
  insecureRegistries?: string[];
  /** Host-wide Debian base image cache; default /var/cache/sbx/base. */
  baseCacheDir?: string;
  /** Bounds on each layer unpacked (uncompressed bytes, members). */
  layerLimits?: TarLimits;
  log?: (msg: string) => void;
  /** Crash tests only: die at a named step ("unpack"). */
  faultInjection?: { killAtStep?: string };
}

export function createImageService(opts: ImageServiceOptions): ImageCatalog & { close(): void } {
  const dataDir = path.resolve(opts.dataDir);
  const log = opts.log ?? (() => {});
  const content = new ContentStore(path.join(dataDir, "content"));
  const unpacker = new LayerUnpacker(path.join(dataDir, "layers"), {
    log,
    ...(opts.layerLimits ? { limits: opts.layerLimits } : {}),
    killAtStep: opts.faultInjection?.killAtStep,
  });
  const registry = new RegistryClient({ mirrors: opts.mirrors, insecureRegistries: opts.insecureRegistries, log });
  const closer = new AbortController();
  const store = new ImageStore({
    dataDir,
    content,
    unpacker,
    registry,
    baseCacheDir: opts.baseCacheDir ?? DEFAULT_BASE_CACHE_DIR,
    log,
    closeSignal: closer.signal,
  });
  void content.sweepIngest().catch(() => {});
  void unpacker.sweepTemp().catch(() => {});
  const open = <T>(fn: () => Promise<T>): Promise<T> =>
    closer.signal.aborted ? Promise.reject(new Error("image service is closed")) : fn();
  return {
    resolve(source: ImageSource, signal?: AbortSignal, ropts?: ResolveOptions): Promise<ResolvedImage> {
      return open(() => store.resolve(source, signal, ropts));
    },
    commit: (req, signal) => open(() => store.commit(req, anySignal(signal, closer.signal))),
    commitCopy: (req, signal) => open(() => store.commitCopy(req, anySignal(signal, closer.signal))),
    cacheGet: (key) => store.cacheGet(key),
    cachePut: (key, imageId) => store.cachePut(key, imageId),
    resolveUser: (layers, user, what) => store.resolveUser(layers, user, what),
    list: () => store.list(),
    inspect: (imageId) => store.inspect(imageId),
    remove: (imageId, inUse) => open(() => store.remove(imageId, inUse)),
    prune: (inUse, o) => open(() => store.prune(inUse, o)),
    close(): void {
      closer.abort(new Error("image service closed"));
    },
  };
}

function anySignal(a: AbortSignal | undefined, b: AbortSignal): AbortSignal {
  return a ? AbortSignal.any([a, b]) : b;
}
