// The sbx-agent wire protocol, version 1: constants mirrored from
// agent/proto.h (see agent/PROTOCOL.md; a test compares the two), plus a
// frame encoder and a strict, incremental decoder. Bytes from the agent are
// untrusted: every length, tag, count and number is checked.

export const PROTOCOL_VERSION = 1;

/** u32 length prefix covers type + payload: 1 ..= MAX_FRAME. */
export const MAX_FRAME = 1024 * 1024 + 4096;
export const MAX_NUMBER_DIGITS = 19;
export const STDIN_BUFFER_MAX = 1024 * 1024;
export const MAX_CONNECTIONS = 64;

export const MsgType = {
  HELLO: 1,
  EXEC: 2,
  STDIN: 3,
  STDIN_CLOSE: 4,
  SIGNAL: 5,
  OK: 128,
  ERR: 129,
  EXIT: 130,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

export const Tag = {
  REQ: 1,
  ID: 2,
  ARG: 3,
  ENV: 4,
  CWD: 5,
  TIMEOUT_MS: 6,
  OFFSET: 7,
  DATA: 8,
  SIGNAL: 9,
  CODE: 10,
  MSG: 11,
  VERSION: 12,
  FEATURES: 13,
  FLAGS: 14,
  PID: 15,
  REASON: 16,
  UID: 17,
  GID: 18,
} as const;
export type Tag = (typeof Tag)[keyof typeof Tag];

export const Flags = { STDOUT_NULL: 1, STDERR_NULL: 2 } as const;

export const EXEC_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const REASONS = ["exited", "signaled", "timeout", "failed"] as const;

const REPEATABLE = new Set<number>([Tag.ARG, Tag.ENV]);
const KNOWN_TAGS = new Set<number>(Object.values(Tag));
const NUMERIC_TAGS = new Set<number>([Tag.REQ, Tag.TIMEOUT_MS, Tag.OFFSET, Tag.SIGNAL, Tag.CODE, Tag.VERSION, Tag.FLAGS, Tag.PID, Tag.UID, Tag.GID]);
const BINARY_TAGS = new Set<number>([Tag.DATA]);
/** Types the agent may send us. */
const AGENT_TYPES = new Set<number>([MsgType.OK, MsgType.ERR, MsgType.EXIT]);

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

export type FieldValue = string | number | bigint | Uint8Array;
export type Field = [Tag, FieldValue];

export interface Frame {
  type: number;
  fields: { tag: number; value: Buffer }[];
}

// ---------------------------------------------------------------- encode

function fieldBytes(v: FieldValue): Buffer {
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v) || v < 0) throw new ProtocolError(`bad number ${v}`);
    return Buffer.from(String(v), "ascii");
  }
  if (typeof v === "bigint") {
    if (v < 0n) throw new ProtocolError(`bad number ${v}`);
    return Buffer.from(v.toString(), "ascii");
  }
  if (typeof v === "string") {
    if (v.includes("\0")) throw new ProtocolError("NUL in string field");
    return Buffer.from(v, "utf8");
  }
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** One frame as one buffer. */
export function encodeFrame(type: number, fields: Field[]): Buffer {
  const parts = encodeFrameParts(type, fields);
  return Buffer.concat(parts);
}

/**
 * One frame as the buffers to write in order, the DATA bytes among them
 * uncopied: a 1 MiB stdin chunk is written from the caller's buffer.
 */
export function encodeFrameParts(type: number, fields: Field[]): Buffer[] {
  const parts: Buffer[] = [];
  let len = 1;
  for (const [tag, v] of fields) {
    const b = fieldBytes(v);
    const h = Buffer.allocUnsafe(5);
    h.writeUInt8(tag, 0);
    h.writeUInt32BE(b.length, 1);
    parts.push(h, b);
    len += 5 + b.length;
  }
  if (len > MAX_FRAME) throw new ProtocolError(`frame too large (${len})`);
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(len, 0);
  head.writeUInt8(type, 4);
  return [head, ...parts];
}

// ---------------------------------------------------------------- decode

const utf8 = new TextDecoder("utf-8", { fatal: true });

export function parseNumber(b: Buffer): number {
  if (b.length === 0 || b.length > MAX_NUMBER_DIGITS) throw new ProtocolError("bad number length");
  for (const c of b) if (c < 0x30 || c > 0x39) throw new ProtocolError("bad number digit");
  const n = Number(b.toString("ascii"));
  if (!Number.isSafeInteger(n)) throw new ProtocolError("number out of range");
  return n;
}

export function parseString(b: Buffer): string {
  if (b.includes(0)) throw new ProtocolError("NUL in string");
  try {
    return utf8.decode(b);
  } catch {
    throw new ProtocolError("invalid UTF-8");
  }
}

/** Validates one frame's payload (after the length prefix). */
export function parseFrame(body: Buffer): Frame {
  if (body.length < 1) throw new ProtocolError("empty frame");
  const type = body[0]!;
  if (!AGENT_TYPES.has(type)) throw new ProtocolError(`unexpected message type ${type}`);
  const fields: Frame["fields"] = [];
  const seen = new Set<number>();
  let p = 1;
  while (p < body.length) {
    if (body.length - p < 5) throw new ProtocolError("truncated field header");
    const tag = body[p]!;
    const len = body.readUInt32BE(p + 1);
    p += 5;
    if (len > body.length - p) throw new ProtocolError("field overruns frame");
    if (!KNOWN_TAGS.has(tag)) throw new ProtocolError(`unknown tag ${tag}`);
    if (!REPEATABLE.has(tag)) {
      if (seen.has(tag)) throw new ProtocolError(`repeated tag ${tag}`);
      seen.add(tag);
    }
    const value = body.subarray(p, p + len);
    if (NUMERIC_TAGS.has(tag)) parseNumber(value);
    else if (!BINARY_TAGS.has(tag)) parseString(value);
    fields.push({ tag, value });
    p += len;
  }
  return { type, fields };
}

/** Incremental decoder: push bytes, get whole validated frames. Throws ProtocolError. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(data: Buffer): Frame[] {
    this.chunks.push(data);
    this.buffered += data.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const head = this.peek(4);
      const len = head.readUInt32BE(0);
      if (len < 1 || len > MAX_FRAME) throw new ProtocolError(`bad frame length ${len}`);
      if (this.buffered < 4 + len) break;
      const all = this.take(4 + len);
      out.push(parseFrame(all.subarray(4)));
    }
    return out;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    const b = Buffer.concat(this.chunks);
    this.chunks = [b];
    return b;
  }

  private take(n: number): Buffer {
    const b = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = b.length > n ? [b.subarray(n)] : [];
    this.buffered -= n;
    return b.subarray(0, n);
  }
}

// ---------------------------------------------------------------- field access

export function getField(f: Frame, tag: Tag): Buffer | undefined {
  return f.fields.find((x) => x.tag === tag)?.value;
}
export function getNumber(f: Frame, tag: Tag): number | undefined {
  const v = getField(f, tag);
  return v === undefined ? undefined : parseNumber(v);
}
export function getString(f: Frame, tag: Tag): string | undefined {
  const v = getField(f, tag);
  return v === undefined ? undefined : parseString(v);
}
