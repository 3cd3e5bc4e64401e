// Directory trees → OCI layer tar streams, for builds:
//   - a build sandbox's overlayfs upper dir (what its RUN steps changed):
//     whiteouts (char device 0/0) become `.wh.NAME`, opaque dirs
//     (trusted.overlay.opaque=y) get a `.wh..wh..opq` member, and ownership is
//     shifted back from the sandbox's host uid range to the image's own ids;
//   - a subtree of an image's merged view (COPY --from), placed under a
//     destination path.
// Entries come out sorted by name, so a tree gives the same tar every time.
// Hard links inside the tree are kept as hard links. xattrs are not carried
// (file capabilities set by a RUN step are lost; sandboxes run with
// no_new_privs, so they would not take effect anyway). Sockets are skipped.
// Upper dirs that use overlayfs features a layer cannot express
// (redirect_dir, metacopy) are refused.

import { execFile } from "node:child_process";
import type { Stats } from "node:fs";
import * as fsp from "node:fs/promises";
import { promisify } from "node:util";
import { LayerUnpackError } from "./errors.js";
import { TAR_END, tarHeader, tarPadding, type TarEntry } from "./tar.js";

const execFileP = promisify(execFile);

export interface TreeTarOptions {
  /** Host uid/gid of the tree's root user: ids uidBase..uidBase+65535 map to 0..65535, others to 0. */
  uidBase: number;
  /** The tree is an overlayfs upper dir: translate whiteouts and opaque dirs. */
  overlay: boolean;
  /** Relative paths left out with everything below them (e.g. ".sbx"). */
  exclude?: ReadonlySet<string>;
  /** Member names are placed under this relative path ("" = at the root). */
  prefix?: string;
  /** Parent directories of `prefix` to emit first (so the archive is self-contained). */
  prefixDirs?: boolean;
  signal?: AbortSignal;
}

const ID_RANGE = 65536;
const READ_CHUNK = 1 << 20;

/** getfattr dump paths use octal escapes for special bytes. */
function unescapeAttrPath(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "\\" && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      out.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else out.push(s.charCodeAt(i) & 0xff);
  }
  return Buffer.from(out);
}

/** Relative paths (as latin1 strings of the raw bytes) of dirs marked opaque; refuses redirect/metacopy. */
async function overlayXattrs(root: string): Promise<Set<string>> {
  let out: string;
  try {
    ({ stdout: out } = await execFileP(
      "getfattr",
      ["--recursive", "--physical", "--dump", "--absolute-names", "--encoding=text", "-m", "^trusted\\.overlay\\.(opaque|redirect|metacopy)$", root],
      { encoding: "latin1", maxBuffer: 256 << 20 },
    ));
  } catch (e) {
    const partial = (e as { stdout?: string }).stdout;
    if (typeof partial !== "string") throw new LayerUnpackError(`reading overlay attributes of ${root} failed: ${(e as Error).message}`);
    out = partial; // getfattr exits 1 when some file vanished or has no such attribute
  }
  const opaque = new Set<string>();
  let file: string | null = null;
  const rootPrefix = Buffer.from(root.replace(/\/+$/, "") + "/").toString("latin1");
  for (const line of out.split("\n")) {
    if (line.startsWith("# file: ")) {
      const abs = unescapeAttrPath(line.slice(8)).toString("latin1");
      file = abs === rootPrefix.slice(0, -1) ? "" : abs.startsWith(rootPrefix) ? abs.slice(rootPrefix.length) : null;
      continue;
    }
    const m = /^trusted\.overlay\.(opaque|redirect|metacopy)(?:="?(.*?)"?)?$/.exec(line);
    if (!m || file === null) continue;
    if (m[1] === "opaque" && m[2] === "y") opaque.add(file);
    if (m[1] === "redirect" || m[1] === "metacopy") {
      throw new LayerUnpackError(`cannot capture ${JSON.stringify(file)}: overlayfs ${m[1]} is in use, which a layer cannot express`);
    }
  }
  return opaque;
}

function mapId(id: number, base: number): number {
  return id >= base && id < base + ID_RANGE ? id - base : 0;
}

function joinRel(a: string, b: string): string {
  return a === "" ? b : `${a}/${b}`;
}

/**
 * Streams the tree at `root` as an uncompressed tar (see the file comment).
 * Names are relative paths as raw bytes (latin1 strings internally).
 */
export async function* treeTar(root: string, opts: TreeTarOptions): AsyncGenerator<Buffer> {
  const opaque = opts.overlay ? await overlayXattrs(root) : new Set<string>();
  const exclude = opts.exclude ?? new Set<string>();
  const prefix = (opts.prefix ?? "").split("/").filter((c) => c !== "" && c !== ".").join("/");
  const links = new Map<string, string>();
  const name = (rel: string) => Buffer.from(rel === "" ? prefix : joinRel(prefix, rel), "latin1");
  const base = (st: Stats): Omit<TarEntry, "name" | "type"> => ({
    mode: st.mode & 0o7777,
    uid: mapId(st.uid, opts.uidBase),
    gid: mapId(st.gid, opts.uidBase),
    mtime: Math.max(0, Math.floor(st.mtimeMs / 1000)),
  });

  if (opts.prefixDirs && prefix !== "") {
    const parts = prefix.split("/");
    for (let i = 1; i < parts.length; i++) {
      yield tarHeader({ name: Buffer.from(parts.slice(0, i).join("/") + "/", "latin1"), type: "dir", mode: 0o755 }, 0);
    }
  }

  async function* entry(abs: Buffer, rel: string, st: Stats): AsyncGenerator<Buffer> {
    opts.signal?.throwIfAborted();
    if (st.isDirectory()) {
      if (rel !== "" || prefix !== "") yield tarHeader({ name: Buffer.concat([name(rel), Buffer.from("/")]), type: "dir", ...base(st) }, 0);
      if (opaque.has(rel)) yield tarHeader({ name: name(joinRel(rel, ".wh..wh..opq")), type: "file", mode: 0 }, 0);
      const children = (await fsp.readdir(abs, { encoding: "buffer" })).sort(Buffer.compare);
      for (const c of children) {
        const crel = joinRel(rel, c.toString("latin1"));
        if (exclude.has(crel)) continue;
        const cabs = Buffer.concat([abs, Buffer.from("/"), c]);
        let cst: Stats;
        try {
          cst = await fsp.lstat(cabs);
        } catch {
          continue; // vanished
        }
        yield* entry(cabs, crel, cst);
      }
      return;
    }
    if (st.isCharacterDevice() || st.isBlockDevice()) {
      if (opts.overlay && st.isCharacterDevice() && st.rdev === 0) {
        const slash = rel.lastIndexOf("/");
        const wh = slash === -1 ? `.wh.${rel}` : `${rel.slice(0, slash)}/.wh.${rel.slice(slash + 1)}`;
        yield tarHeader({ name: name(wh), type: "file", mode: 0 }, 0);
      }
      return; // other device nodes: a sandbox cannot make them, an image may not carry them
    }
    if (st.isSymbolicLink()) {
      const target = (await fsp.readlink(abs, { encoding: "buffer" })).toString("utf8");
      yield tarHeader({ name: name(rel), type: "symlink", linkname: target, ...base(st) }, 0);
      return;
    }
    if (st.isFIFO()) {
      yield tarHeader({ name: name(rel), type: "fifo", ...base(st) }, 0);
      return;
    }
    if (!st.isFile()) return; // sockets
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = links.get(key);
      if (first !== undefined) {
        yield tarHeader({ name: name(rel), type: "hardlink", linkname: Buffer.from(joinRel(prefix, first), "latin1").toString("utf8"), ...base(st) }, 0);
        return;
      }
      links.set(key, rel);
    }
    yield tarHeader({ name: name(rel), type: "file", ...base(st) }, st.size);
    const fh = await fsp.open(abs, "r");
    try {
      let left = st.size;
      const buf = Buffer.alloc(Math.min(READ_CHUNK, Math.max(1, st.size)));
      while (left > 0) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, left), null);
        if (bytesRead === 0) {
          yield Buffer.alloc(left); // shrank while read: pad to the size announced
          break;
        }
        left -= bytesRead;
        yield Buffer.from(buf.subarray(0, bytesRead));
      }
    } finally {
      await fh.close();
    }
    yield tarPadding(st.size);
  }

  const rootAbs = Buffer.from(root);
  yield* entry(rootAbs, "", await fsp.lstat(rootAbs));
  yield TAR_END;
}
