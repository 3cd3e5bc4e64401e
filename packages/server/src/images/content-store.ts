// Content-addressed blob store: <root>/blobs/sha256/<hex>, written through
// <root>/ingest/<random> (hash while streaming, fsync, verify size and digest,
// rename into place), modelled on containerd's local content writer. A blob
// path that exists is complete and verified. Concurrent ingests of one digest
// in this process share one write; across processes the rename is atomic and
// identical content makes the last writer harmless.

import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { DigestMismatchError } from "./errors.js";

export const SHA256_DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function digestHex(digest: string): string {
  if (!SHA256_DIGEST_RE.test(digest)) throw new Error(`not a sha256 digest: ${JSON.stringify(digest)}`);
  return digest.slice("sha256:".length);
}

export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

export interface IngestResult {
  digest: string;
  size: number;
  path: string;
}

export type ByteSource = AsyncIterable<Uint8Array>;

export class ContentStore {
  readonly root: string;
  private readonly inflight = new Map<string, Promise<IngestResult>>();

  constructor(root: string) {
    this.root = root;
  }

  blobPath(digest: string): string {
    return path.join(this.root, "blobs", "sha256", digestHex(digest));
  }

  /** Size of the blob if present. */
  async stat(digest: string): Promise<{ size: number } | null> {
    try {
      const st = await fsp.stat(this.blobPath(digest));
      return { size: st.size };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  }

  async has(digest: string): Promise<boolean> {
    return (await this.stat(digest)) !== null;
  }

  /** Reads a whole (small) blob. */
  async read(digest: string): Promise<Buffer> {
    return fsp.readFile(this.blobPath(digest));
  }

  /**
   * Ingests a blob of known digest unless present. `open` is called only when
   * the blob has to be written; its bytes are hashed, counted and must match
   * `digest` (and `expectedSize` when given), else DigestMismatchError.
   * `what` is used in error messages.
   */
  async ingest(digest: string, expectedSize: number | undefined, open: () => Promise<ByteSource>, what = digest): Promise<IngestResult> {
    digestHex(digest);
    const existing = await this.stat(digest);
    if (existing) return { digest, size: existing.size, path: this.blobPath(digest) };
    const running = this.inflight.get(digest);
    if (running) return running;
    const p = (async () => {
      try {
        const again = await this.stat(digest);
        if (again) return { digest, size: again.size, path: this.blobPath(digest) };
        return await this.write(await open(), { digest, expectedSize, what });
      } finally {
        this.inflight.delete(digest);
      }
    })();
    this.inflight.set(digest, p);
    return p;
  }

  /** Ingests bytes whose digest is not known in advance (e.g. a blob we build). */
  async ingestUnknown(source: ByteSource, what = "blob"): Promise<IngestResult> {
    return this.write(source, { what });
  }

  /** Ingests a buffer, verifying it against `digest` when given. */
  async ingestBuffer(data: Uint8Array, digest?: string, what = "blob"): Promise<IngestResult> {
    const d = sha256Digest(data);
    if (digest !== undefined && d !== digest) throw new DigestMismatchError(`${what}: digest mismatch: expected ${digest}, got ${d}`);
    if (await this.has(d)) return { digest: d, size: data.length, path: this.blobPath(d) };
    return this.ingest(d, data.length, async () => (async function* () { yield data; })(), what);
  }

  /**
   * Adds an existing file (e.g. a host-wide cached blob) by hard link when on
   * the same filesystem, else by copying; the content is always re-hashed.
   */
  async ingestFile(file: string, digest: string, what = digest): Promise<IngestResult> {
    const existing = await this.stat(digest);
    if (existing) return { digest, size: existing.size, path: this.blobPath(digest) };
    const dest = this.blobPath(digest);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    const tmp = await this.tempName();
    try {
      await fsp.link(file, tmp);
      const got = await hashFile(tmp);
      if (got !== digest) throw new DigestMismatchError(`${what}: digest mismatch: expected ${digest}, got ${got}`);
      await fsp.rename(tmp, dest);
      const st = await fsp.stat(dest);
      return { digest, size: st.size, path: dest };
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      if (e instanceof DigestMismatchError) throw e;
      return this.ingest(digest, undefined, async () => createReadStream(file), what);
    }
  }

  /** Removes ingest leftovers older than maxAgeMs (crashed writers). */
  async sweepIngest(maxAgeMs = 24 * 3600_000): Promise<void> {
    const dir = path.join(this.root, "ingest");
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch {
      return;
    }
    const now = Date.now();
    for (const n of names) {
      const p = path.join(dir, n);
      try {
        const st = await fsp.stat(p);
        if (now - st.mtimeMs > maxAgeMs) await fsp.rm(p, { force: true });
      } catch {
        /* raced */
      }
    }
  }

  private async tempName(): Promise<string> {
    const dir = path.join(this.root, "ingest");
    await fsp.mkdir(dir, { recursive: true });
    return path.join(dir, `${Date.now()}-${process.pid}-${randomBytes(6).toString("hex")}`);
  }

  private async write(source: ByteSource, want: { digest?: string; expectedSize?: number; what: string }): Promise<IngestResult> {
    const tmp = await this.tempName();
    const fh = await fsp.open(tmp, "wx", 0o644);
    const hash = createHash("sha256");
    let size = 0;
    let closed = false;
    try {
      for await (const chunk of source) {
        size += chunk.length;
        if (want.expectedSize !== undefined && size > want.expectedSize) {
          throw new DigestMismatchError(`${want.what}: more data than the declared size ${want.expectedSize}`);
        }
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.length - off);
          off += bytesWritten;
        }
      }
      if (want.expectedSize !== undefined && size !== want.expectedSize) {
        throw new DigestMismatchError(`${want.what}: size mismatch: expected ${want.expectedSize} bytes, got ${size}`);
      }
      const digest = `sha256:${hash.digest("hex")}`;
      if (want.digest !== undefined && digest !== want.digest) {
        throw new DigestMismatchError(`${want.what}: digest mismatch: expected ${want.digest}, got ${digest}`);
      }
      await fh.sync();
      await fh.close();
      closed = true;
      const dest = this.blobPath(digest);
      await fsp.mkdir(path.dirname(dest), { recursive: true });
      await fsp.rename(tmp, dest);
      await fsyncDir(path.dirname(dest));
      return { digest, size, path: dest };
    } catch (e) {
      if (!closed) await fh.close().catch(() => {});
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }
}

export async function hashFile(file: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return `sha256:${h.digest("hex")}`;
}

export async function fsyncDir(dir: string): Promise<void> {
  try {
    const fh = await fsp.open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}
