import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  encodeFrame,
  FrameDecoder,
  getNumber,
  getString,
  MAX_FRAME,
  MsgType,
  PROTOCOL_VERSION,
  ProtocolError,
  STDIN_BUFFER_MAX,
  Tag,
  Flags,
} from "./proto.js";

const PROTO_H = join(import.meta.dirname, "../../../../../agent/proto.h");

test("constants match agent/proto.h", () => {
  const h = readFileSync(PROTO_H, "utf8");
  const defs = new Map<string, string>();
  for (const m of h.matchAll(/^#define (SBX_\w+) (.+?)\s*(?:\/\*.*)?$/gm)) defs.set(m[1]!, m[2]!.trim());
  const num = (k: string) => {
    const v = defs.get(k);
    assert.ok(v !== undefined, `${k} missing in proto.h`);
    return Function(`return (${v.replace(/u\b/g, "")})`)() as number;
  };
  assert.equal(num("SBX_PROTO_VERSION"), PROTOCOL_VERSION);
  assert.equal(num("SBX_FRAME_MAX"), MAX_FRAME);
  assert.equal(num("SBX_STDIN_BUF"), STDIN_BUFFER_MAX);
  for (const [k, v] of Object.entries(MsgType)) assert.equal(num(`SBX_T_${k}`), v, k);
  for (const [k, v] of Object.entries(Tag)) assert.equal(num(`SBX_F_${k}`), v, k);
  assert.equal(num("SBX_F_LAST"), Math.max(...Object.values(Tag)));
  assert.equal(num("SBX_FLAG_STDOUT_NULL"), Flags.STDOUT_NULL);
  assert.equal(num("SBX_FLAG_STDERR_NULL"), Flags.STDERR_NULL);
});

function reply(type: number, fields: [number, Buffer | string][]): Buffer {
  const parts = fields.map(([t, v]) => {
    const b = Buffer.from(v);
    const h = Buffer.alloc(5);
    h[0] = t;
    h.writeUInt32BE(b.length, 1);
    return Buffer.concat([h, b]);
  });
  const body = Buffer.concat([Buffer.from([type]), ...parts]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

test("decoder: whole frames across arbitrary splits", () => {
  const a = reply(MsgType.OK, [[Tag.REQ, "7"], [Tag.PID, "42"]]);
  const b = reply(MsgType.EXIT, [[Tag.ID, "e1"], [Tag.CODE, "0"], [Tag.REASON, "exited"]]);
  const all = Buffer.concat([a, b]);
  for (let cut = 0; cut <= all.length; cut++) {
    const d = new FrameDecoder();
    const frames = [...d.push(all.subarray(0, cut)), ...d.push(all.subarray(cut))];
    assert.equal(frames.length, 2);
    assert.equal(getNumber(frames[0]!, Tag.PID), 42);
    assert.equal(getString(frames[1]!, Tag.REASON), "exited");
  }
});

test("decoder rejects malformed agent bytes", () => {
  const bad: Buffer[] = [
    Buffer.from([0, 0, 0, 0]), // zero length
    Buffer.from([0, 0x20, 0, 0, MsgType.OK]), // over max
    reply(MsgType.HELLO, [[Tag.REQ, "1"]]), // a request type from the agent
    reply(MsgType.OK, [[Tag.REQ, "1"], [Tag.REQ, "2"]]), // repeated singleton
    reply(MsgType.OK, [[Tag.REQ, "-1"]]), // sign
    reply(MsgType.OK, [[Tag.REQ, "12345678901234567890"]]), // 20 digits
    reply(MsgType.OK, [[99, "x"]]), // unknown tag
    reply(MsgType.ERR, [[Tag.REQ, "1"], [Tag.MSG, Buffer.from([0xff, 0xfe])]]), // bad UTF-8
    reply(MsgType.ERR, [[Tag.REQ, "1"], [Tag.MSG, "a\0b"]]), // NUL
  ];
  // field overrunning the frame
  const over = reply(MsgType.OK, [[Tag.REQ, "1"]]);
  over.writeUInt32BE(100, 6);
  bad.push(over);
  for (const b of bad) assert.throws(() => new FrameDecoder().push(b), ProtocolError, b.toString("hex"));
});

test("encoder: length prefix and fields", () => {
  const f = encodeFrame(MsgType.STDIN, [[Tag.REQ, 3], [Tag.ID, "x"], [Tag.DATA, new Uint8Array([1, 2])]]);
  assert.equal(f.readUInt32BE(0), f.length - 4);
  assert.equal(f[4], MsgType.STDIN);
  assert.throws(() => encodeFrame(MsgType.EXEC, [[Tag.ARG, "a\0"]]), ProtocolError);
  assert.throws(() => encodeFrame(MsgType.STDIN, [[Tag.DATA, new Uint8Array(MAX_FRAME)]]), ProtocolError);
});
