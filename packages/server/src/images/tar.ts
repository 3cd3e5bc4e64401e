// Minimal tar support in Node: a streaming header checker placed in front of
// GNU tar (refuses members that would land outside the target dir, before
// tar sees their header; hashes the uncompressed stream for the diff id), and
// a small writer (whiteout device nodes, test fixtures).

import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

const BLOCK = 512;
const MAX_META = 1 << 20; // GNU long names / pax headers

export class UnsafeTarError extends Error {}

/** Bounds on one layer, checked while it streams (a gzip bomb stops at maxBytes). */
export interface TarLimits {
  /** Uncompressed bytes of the whole archive. */
  maxBytes: number;
  /** Members (files, dirs, links…). */
  maxEntries: number;
}

export const DEFAULT_TAR_LIMITS: TarLimits = { maxBytes: 64 * 1024 ** 3, maxEntries: 2_000_000 };

/** "./a//b/" → ["a", "b"]: a member name as path components. */
function components(name: Buffer): string[] {
  return name.toString("latin1").split("/").filter((c) => c !== "" && c !== ".");
}

function cstr(buf: Buffer, off: number, len: number): Buffer {
  const s = buf.subarray(off, off + len);
  const nul = s.indexOf(0);
  return nul === -1 ? s : s.subarray(0, nul);
}

function parseNumeric(buf: Buffer, off: number, len: number): number {
  const f = buf.subarray(off, off + len);
  if (f[0] !== undefined && (f[0] & 0x80) !== 0) {
    // base-256 (positive only)
    if (f[0] === 0xff) throw new UnsafeTarError("negative base-256 number in tar header");
    let v = f[0] & 0x7f;
    for (let i = 1; i < f.length; i++) {
      v = v * 256 + f[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new UnsafeTarError("number too large in tar header");
    }
    return v;
  }
  const s = cstr(buf, off, len).toString("latin1").trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new UnsafeTarError(`bad octal number ${JSON.stringify(s)} in tar header`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let stored: number;
  try {
    stored = parseNumeric(h, 148, 8);
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let off = 0;
  while (off < data.length) {
    const sp = data.indexOf(0x20, off);
    if (sp === -1) break;
    const len = parseInt(data.subarray(off, sp).toString("latin1"), 10);
    if (!Number.isFinite(len) || len <= 0 || off + len > data.length) throw new UnsafeTarError("malformed pax header");
    const rec = data.subarray(sp + 1, off + len - 1); // without trailing \n
    const eq = rec.indexOf(0x3d);
    if (eq !== -1) out.set(rec.subarray(0, eq).toString("utf8"), Buffer.from(rec.subarray(eq + 1)));
    off += len;
  }
  return out;
}

function octalField(buf: Buffer, off: number, len: number, v: number): void {
  buf.write(v.toString(8).padStart(len - 1, "0"), off, len - 1, "latin1");
  buf[off + len - 1] = 0;
}

/** Throws when a member name is absolute or has a ".." component. */
export function checkMemberName(name: Buffer | string, what = "member"): void {
  const s = typeof name === "string" ? name : name.toString("latin1");
  if (s.startsWith("/")) throw new UnsafeTarError(`${what} ${JSON.stringify(s)} has an absolute path`);
  if (s.split("/").includes("..")) throw new UnsafeTarError(`${what} ${JSON.stringify(s)} has a '..' component`);
}

/**
 * Pass-through transform over an uncompressed tar stream. Parses every header
 * and errors (without forwarding that header) on:
 *   - absolute names or ".." components (names, hard link targets);
 *   - a member whose path goes through a symlink of this archive ("a" → "/etc"
 *     then "a/passwd"): each layer unpacks into its own empty dir, so only the
 *     archive's own symlinks could lead outside it;
 *   - device nodes (char / block): no image needs them, the runtime makes /dev;
 *   - more than `limits` bytes or members.
 * Setuid / setgid bits are cleared in the forwarded header (sandboxes run with
 * no_new_privs, so they could only matter to a process outside). The sha256
 * is computed over the original input bytes (`digest()` after the stream ends).
 */
export class TarChecker extends Transform {
  private readonly limits: TarLimits;
  private readonly symlinks = new Set<string>();
  private total = 0;
  /** setuid/setgid bits cleared so far. */
  strippedSetuid = 0;

  constructor(limits: TarLimits = DEFAULT_TAR_LIMITS) {
    super();
    this.limits = limits;
  }

  private readonly hash: Hash = createHash("sha256");
  private mode: "header" | "meta" | "data" | "drain" = "header";
  private hbuf: Buffer[] = [];
  private hlen = 0;
  private remaining = 0; // data/meta bytes incl. padding still to pass
  private metaType = "";
  private metaSize = 0;
  private meta: Buffer[] = [];
  private metaLen = 0;
  private pending: { longName?: Buffer; longLink?: Buffer; pax?: Map<string, Buffer> } = {};
  private seenZero = false;
  private zeroRun = 0;
  entries = 0;
  private result?: string;

  digest(): string {
    if (this.result === undefined) this.result = `sha256:${this.hash.digest("hex")}`;
    return this.result;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    try {
      this.hash.update(chunk);
      this.total += chunk.length;
      if (this.total > this.limits.maxBytes) {
        throw new UnsafeTarError(`layer is larger than ${this.limits.maxBytes} bytes uncompressed`);
      }
      this.consume(chunk);
      cb();
    } catch (e) {
      cb(e as Error);
    }
  }

  override _flush(cb: TransformCallback): void {
    if (this.mode === "header" && this.hlen !== 0 && !this.seenZero) return cb(new UnsafeTarError("truncated tar header"));
    if ((this.mode === "data" || this.mode === "meta") && this.remaining > 0) return cb(new UnsafeTarError("truncated tar archive"));
    this.digest();
    cb();
  }

  private consume(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.mode === "drain") return;
      if (this.mode === "data") {
        const n = Math.min(this.remaining, chunk.length - off);
        this.push(chunk.subarray(off, off + n));
        off += n;
        this.remaining -= n;
        if (this.remaining === 0) this.mode = "header";
        continue;
      }
      if (this.mode === "meta") {
        const n = Math.min(this.remaining, chunk.length - off);
        const part = chunk.subarray(off, off + n);
        this.push(part);
        const keep = Math.min(part.length, Math.max(0, this.metaSize - this.metaLen));
        if (keep > 0) {
          this.meta.push(Buffer.from(part.subarray(0, keep)));
          this.metaLen += keep;
        }
        off += n;
        this.remaining -= n;
        if (this.remaining === 0) {
          this.finishMeta(Buffer.concat(this.meta));
          this.meta = [];
          this.metaLen = 0;
          this.mode = "header";
        }
        continue;
      }
      // header
      const n = Math.min(BLOCK - this.hlen, chunk.length - off);
      this.hbuf.push(chunk.subarray(off, off + n));
      this.hlen += n;
      off += n;
      if (this.hlen < BLOCK) continue;
      const h = Buffer.concat(this.hbuf);
      this.hbuf = [];
      this.hlen = 0;
      this.header(h);
    }
  }

  private header(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      this.seenZero = true;
      this.push(h);
      // End of archive: tar stops reading here; keep hashing the rest, feed nothing more.
      if (++this.zeroRun >= 2) this.mode = "drain";
      return;
    }
    if (!checksumOk(h)) {
      if (this.seenZero) {
        // Trailing garbage after the end-of-archive marker: stop feeding tar.
        this.mode = "drain";
        return;
      }
      throw new UnsafeTarError("invalid tar header checksum (corrupt or not a tar archive)");
    }
    this.seenZero = false;
    this.zeroRun = 0;
    const type = String.fromCharCode(h[156]!);
    let size = parseNumeric(h, 124, 12);
    let padded = Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L" || type === "K" || type === "x" || type === "g") {
      if (size > MAX_META) throw new UnsafeTarError(`tar meta header too large (${size} bytes)`);
      this.push(h);
      this.metaType = type;
      this.metaSize = size;
      this.remaining = padded;
      this.mode = padded > 0 ? "meta" : "header";
      if (padded === 0) this.finishMeta(Buffer.alloc(0));
      return;
    }
    if (type === "S" || type === "M" || type === "V") {
      throw new UnsafeTarError(`unsupported tar member type ${JSON.stringify(type)}`);
    }
    const paxSize = this.pending.pax?.get("size");
    if (paxSize !== undefined) {
      const n = Number(paxSize.toString("latin1"));
      if (!Number.isSafeInteger(n) || n < 0) throw new UnsafeTarError("bad pax size");
      size = n;
      padded = Math.ceil(size / BLOCK) * BLOCK;
    }
    const magic = h.subarray(257, 263).toString("latin1");
    let name = cstr(h, 0, 100);
    if (magic === "ustar\0") {
      const prefix = cstr(h, 345, 155);
      if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from("/"), name]);
    }
    const names: Buffer[] = [name];
    const p = this.pending;
    if (p.longName) names.push(p.longName);
    if (p.pax?.has("path")) names.push(p.pax.get("path")!);
    if (p.pax?.has("GNU.sparse.name")) names.push(p.pax.get("GNU.sparse.name")!);
    for (const n of names) checkMemberName(n);
    // GNU tar uses the last of: header name, GNU long name, pax path.
    const effective = p.pax?.get("path") ?? p.longName ?? name;
    const parts = components(effective);
    for (let i = 1; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (this.symlinks.has(prefix)) {
        throw new UnsafeTarError(`member ${JSON.stringify(effective.toString("latin1"))} goes through the symlink ${JSON.stringify(prefix)} of the same layer`);
      }
    }
    if (type === "3" || type === "4") {
      throw new UnsafeTarError(`member ${JSON.stringify(effective.toString("latin1"))} is a device node`);
    }
    if (type === "1") {
      const links = [cstr(h, 157, 100)];
      if (p.longLink) links.push(p.longLink);
      if (p.pax?.has("linkpath")) links.push(p.pax.get("linkpath")!);
      for (const l of links) checkMemberName(l, "hard link target");
      const target = components(p.pax?.get("linkpath") ?? p.longLink ?? links[0]!);
      for (let i = 1; i <= target.length; i++) {
        if (this.symlinks.has(target.slice(0, i).join("/")) && i < target.length) {
          throw new UnsafeTarError(`hard link target ${JSON.stringify(target.join("/"))} goes through a symlink of the same layer`);
        }
      }
    }
    if (type === "2") this.symlinks.add(parts.join("/"));
    if (++this.entries > this.limits.maxEntries) throw new UnsafeTarError(`layer has more than ${this.limits.maxEntries} members`);
    // Clear setuid/setgid (mode field, octal) and fix the checksum.
    const mode = parseNumeric(h, 100, 8);
    if ((mode & 0o6000) !== 0 && type !== "5") {
      h = Buffer.from(h);
      octalField(h, 100, 8, mode & ~0o6000);
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      octalField(h, 148, 7, sum);
      h[155] = 0x20;
      this.strippedSetuid++;
    }
    this.pending = {};
    this.push(h);
    this.remaining = padded;
    this.mode = padded > 0 ? "data" : "header";
  }

  private finishMeta(data: Buffer): void {
    if (this.metaType === "L") this.pending.longName = cstr(data, 0, data.length);
    else if (this.metaType === "K") this.pending.longLink = cstr(data, 0, data.length);
    else if (this.metaType === "x") this.pending.pax = parsePax(data);
    else if (this.metaType === "g") {
      const g = parsePax(data);
      const gp = g.get("path");
      if (gp) checkMemberName(gp, "global pax path");
    }
  }
}

// ---------------------------------------------------------------- writer

export interface TarEntry {
  name: string | Buffer;
  type: "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";
  data?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number; // seconds
  linkname?: string;
  devmajor?: number;
  devminor?: number;
}

const TYPEFLAG: Record<TarEntry["type"], string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

function octal(buf: Buffer, off: number, len: number, v: number): void {
  const s = v.toString(8).padStart(len - 1, "0");
  if (s.length > len - 1) throw new Error(`tar field overflow: ${v}`);
  buf.write(s, off, len - 1, "latin1");
  buf[off + len - 1] = 0;
}

function rawHeader(name: Buffer, type: string, size: number, e: Partial<TarEntry>, linkname: Buffer): Buffer {
  const h = Buffer.alloc(BLOCK);
  name.copy(h, 0, 0, Math.min(100, name.length));
  octal(h, 100, 8, e.mode ?? 0o644);
  octal(h, 108, 8, e.uid ?? 0);
  octal(h, 116, 8, e.gid ?? 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, e.mtime ?? 0);
  h.write(type, 156, 1, "latin1");
  linkname.copy(h, 157, 0, Math.min(100, linkname.length));
  h.write("ustar\x0000", 257, 8, "latin1");
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  octal(h, 148, 7, sum);
  h[155] = 0x20;
  return h;
}

function pad(n: number): Buffer {
  const r = n % BLOCK;
  return r === 0 ? Buffer.alloc(0) : Buffer.alloc(BLOCK - r);
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

const MAX_OCTAL_SIZE = 8 ** 11 - 1;

/**
 * The header block(s) of one member whose data (`size` bytes, regular files
 * only) the caller writes next, followed by `tarPadding(size)`. Long or
 * non-ASCII names and sizes of 8 GiB or more get a pax header.
 */
export function tarHeader(e: Omit<TarEntry, "data">, size: number): Buffer {
  const name = Buffer.isBuffer(e.name) ? e.name : Buffer.from(e.name, "utf8");
  const link = Buffer.from(e.linkname ?? "", "utf8");
  const needPax = (b: Buffer) => b.length >= 100 || b.some((c) => c > 0x7e);
  const parts: Buffer[] = [];
  const recs: Buffer[] = [];
  if (needPax(name)) recs.push(paxRecord("path", name));
  if (needPax(link)) recs.push(paxRecord("linkpath", link));
  if (size > MAX_OCTAL_SIZE) recs.push(paxRecord("size", Buffer.from(String(size))));
  if (recs.length > 0) {
    const body = Buffer.concat(recs);
    parts.push(rawHeader(Buffer.from("PaxHeader"), "x", body.length, { mode: 0o644 }, Buffer.alloc(0)), body, pad(body.length));
  }
  const defMode = e.type === "dir" ? 0o755 : e.type === "symlink" ? 0o777 : 0o644;
  parts.push(rawHeader(name, TYPEFLAG[e.type], size > MAX_OCTAL_SIZE ? 0 : size, { ...e, mode: e.mode ?? defMode }, link));
  return Buffer.concat(parts);
}

/** Zero padding after `size` bytes of member data. */
export function tarPadding(size: number): Buffer {
  return pad(size);
}

/** The end-of-archive marker. */
export const TAR_END = Buffer.alloc(BLOCK * 2);

/** Serializes entries (ustar + pax headers for long or non-ASCII names) with the end marker. */
export function writeTar(entries: TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.type === "file" ? (Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data ?? "", "utf8")) : Buffer.alloc(0);
    parts.push(tarHeader(e, data.length));
    if (data.length) parts.push(data, pad(data.length));
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}
