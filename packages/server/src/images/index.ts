// images/ — the ImageService: turns an ImageSource (registry ref, built-in
// Debian base, or a known image id) into read-only unpacked layer dirs that
// the runtime stacks as overlayfs lowerdirs.
//
// On-disk objects under <dataDir> and their lifecycle:
//   content/blobs/sha256/<hex>   manifests, configs, layer blobs. Written once
//                                through content/ingest/ (hash-verified, fsynced,
//                                renamed); never modified. (content-store.ts)
//   layers/sha256/<diffid-hex>/  a layer unpacked once (temp dir + rename),
//                                whiteouts in overlayfs form; read-only by
//                                convention, shared by all images and sandboxes
//                                that use it. (unpack.ts)
//   images/<imageId-hex>.json    an image record, written after its layers are
//                                unpacked. (image-store.ts)
// Host-wide: <baseCacheDir> (default /var/cache/sbx/base) holds the mmdebstrap
// output tar and gzip layer of the Debian base image. (base-image.ts)
// Nothing is garbage-collected yet; temp files older than a day left by a
// crash are swept when a service is created.
//
// Tags are resolved once per server process (see image-store.ts).
// close() aborts in-flight pulls/unpacks/builds; it does not delete anything.

import * as path from "node:path";
import type { ImageService, ImageSource, ResolvedImage } from "../core/ports.js";
import { DEFAULT_BASE_CACHE_DIR } from "./base-image.js";
import { ContentStore } from "./content-store.js";
import { ImageStore } from "./image-store.js";
import { RegistryClient } from "./registry.js";
import { LayerUnpacker } from "./unpack.js";

export {
  BaseImageError,
  DigestMismatchError,
  ImageError,
  ImageNotFoundError,
  ImageRefError,
  LayerUnpackError,
  RegistryAuthError,
  RegistryError,
} from "./errors.js";
export { parseImageRef, formatImageRef, type ImageRef } from "./reference.js";
export { ensureBaseRootfsTar, ensureBaseLayer, BASE_PYTHON_VERSION, type BaseLayer } from "./base-image.js";
export type { ImageRecord } from "./image-store.js";

export interface ImageServiceOptions {
  dataDir: string;
  /** Registry name → mirror base URL, e.g. {"docker.io": "http://127.0.0.1:5000"}. */
  mirrors?: Record<string, string>;
  /** Registry hosts ("host" or "host:port") that may be reached over plain http. */
  insecureRegistries?: string[];
  /** Host-wide Debian base image cache; default /var/cache/sbx/base. */
  baseCacheDir?: string;
  log?: (msg: string) => void;
}

export function createImageService(opts: ImageServiceOptions): ImageService & { close(): void } {
  const dataDir = path.resolve(opts.dataDir);
  const log = opts.log ?? (() => {});
  const content = new ContentStore(path.join(dataDir, "content"));
  const unpacker = new LayerUnpacker(path.join(dataDir, "layers"), { log });
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
  return {
    resolve(source: ImageSource, signal?: AbortSignal): Promise<ResolvedImage> {
      if (closer.signal.aborted) return Promise.reject(new Error("image service is closed"));
      return store.resolve(source, signal);
    },
    close(): void {
      closer.abort(new Error("image service closed"));
    },
  };
}
