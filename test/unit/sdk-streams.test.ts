// Output streams (UTF-8 decoding, resume after a dropped connection) and stdin
// (offsets, partial acks, re-sending after a drop): pure client logic against
// a tiny local HTTP server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as nodeRequest, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { SbxError } from "../../packages/sdk/src/errors.js";
import { HttpClient } from "../../packages/sdk/src/http.js";
import { IncomingReply, type StreamReply } from "../../packages/sdk/src/transport.js";
import {
  EMPTY_SOURCE,
  ResumableByteSource,
  SbxReadableStream,
  SbxWritableStream,
  SseParser,
  StdinSender,
  outputStream,
  type ByteSource,
} from "../../packages/sdk/src/streams.js";

function chunks(...parts: (number[] | string)[]): ByteSource {
  const queue = parts.map((p) => (typeof p === "string" ? new TextEncoder().encode(p) : Uint8Array.from(p)));
  return { next: async () => queue.shift() ?? null, cancel: () => {} };
}

const euro = [0xe2, 0x82, 0xac]; // €
const grin = [0xf0, 0x9f, 0x98, 0x80]; // 😀

test("text mode decodes UTF-8 split across chunks", async () => {
  const s = new SbxReadableStream<string>(chunks("h", [0xc3], [0xa9, 0x6c], [euro[0]!], [euro[1]!, euro[2]!], ...grin.map((b) => [b]), "!"), "text");
  const seen: string[] = [];
  for await (const piece of s) {
    assert.equal(typeof piece, "string");
    seen.push(piece);
  }
  assert.equal(seen.join(""), "hél€😀!");
  assert.ok(!seen.some((p) => p.includes("\uFFFD")));
});

test("text mode never throws on invalid bytes", async () => {
  const s = new SbxReadableStream<string>(chunks("a", [0xff, 0xfe], "b", [0xc3, 0x28], [0xe2, 0x82]), "text");
  assert.equal(await s.readText(), "a\uFFFD\uFFFDb\uFFFD(\uFFFD");
});

test("a byte-order mark is kept", async () => {
  const s = new SbxReadableStream<string>(chunks([0xef, 0xbb, 0xbf], "x"), "text");
  assert.equal(await s.readText(), "\uFEFFx");
});

test("binary mode yields the bytes; readBytes on an unread text stream is exact", async () => {
  const bin = new SbxReadableStream<Uint8Array>(chunks([1, 2], [0xff]), "binary");
  const got: number[] = [];
  for await (const piece of bin) {
    assert.ok(piece instanceof Uint8Array);
    got.push(...piece);
  }
  assert.deepEqual(got, [1, 2, 0xff]);
  const text = new SbxReadableStream<string>(chunks([0xff, 0x41], [0xc3]), "text");
  assert.deepEqual([...(await text.readBytes())], [0xff, 0x41, 0xc3]);
  const bin2 = new SbxReadableStream<Uint8Array>(chunks(euro.slice(0, 1), euro.slice(1)), "binary");
  assert.equal(await bin2.readText(), "€");
});

test("an ignored stream is empty", async () => {
  assert.equal(await new SbxReadableStream<string>(EMPTY_SOURCE, "text").readText(), "");
});

async function serve(handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void) {
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("end", () => handler(req, res, Buffer.concat(parts)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const http = new HttpClient({ serverUrl: `http://127.0.0.1:${port}`, token: undefined, timeoutMs: 5_000, connectTimeoutMs: 5_000, maxRetries: 3 });
  return {
    http,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

// 3 000 characters, many of them multi-byte, so cuts fall inside characters.
const TEXT = Array.from({ length: 1000 }, (_, i) => `${i % 10}é€`).join("") + "😀end";
const BYTES = Buffer.from(TEXT, "utf8");

test("a stream resumes from the byte offset reached after the connection drops", async () => {
  const offsets: number[] = [];
  const cuts = [1001, 2502, 5003]; // byte positions where the server cuts the connection
  const srv = await serve((req, res) => {
    const url = new URL(req.url!, "http://x");
    assert.equal(url.pathname, "/v1/sandboxes/sb-1/execs/ex-1/stdout");
    const offset = Number(url.searchParams.get("offset"));
    offsets.push(offset);
    res.writeHead(200, { "content-type": "application/octet-stream", "x-sbx-offset": String(offset) });
    const cut = cuts.find((c) => c > offset);
    if (cut === undefined) {
      // The last connection: trickle the rest and end cleanly.
      res.write(BYTES.subarray(offset, offset + 7));
      setTimeout(() => res.end(BYTES.subarray(offset + 7)), 20);
      return;
    }
    res.write(BYTES.subarray(offset, cut - 500));
    setTimeout(() => {
      res.write(BYTES.subarray(cut - 500, cut), () => setTimeout(() => res.socket?.destroy(), 20));
    }, 10);
  });
  try {
    const s = outputStream<string>(srv.http, "/v1/sandboxes/sb-1/execs/ex-1", "stdout", "text", true, undefined);
    const text = await s.readText();
    assert.equal(text.length, TEXT.length);
    assert.equal(text, TEXT);
    assert.deepEqual(offsets, [0, ...cuts]);
  } finally {
    await srv.close();
  }
});

test("a binary stream resumes too; progress resets the reconnect budget", async () => {
  let calls = 0;
  const srv = await serve((req, res) => {
    calls++;
    res.writeHead(200, { "x-sbx-offset": new URL(req.url!, "http://x").searchParams.get("offset") ?? "0" });
    res.write(Buffer.from([calls]), () => setTimeout(() => res.socket?.destroy(), 10));
  });
  try {
    const s = outputStream<Uint8Array>(srv.http, "/v1/sandboxes/sb-1/execs/ex-2", "stderr", "binary", true, undefined);
    const got: number[] = [];
    // Every connection delivers one byte then drops: progress resets the retry budget.
    const reader = s.getReader();
    for (let i = 0; i < 12; i++) got.push(...(await reader.read()).value!);
    assert.deepEqual(got, Array.from({ length: 12 }, (_, i) => i + 1));
    reader.releaseLock();
    await s.cancel();
  } finally {
    await srv.close();
  }
});

test("a BYOB read of a binary stream fills the reader's own buffer, and resumes after drops like any read", async () => {
  const offsets: number[] = [];
  const cuts = [999, 2500, 5003];
  const srv = await serve((req, res) => {
    const offset = Number(new URL(req.url!, "http://x").searchParams.get("offset"));
    offsets.push(offset);
    res.writeHead(200, { "x-sbx-offset": String(offset), trailer: "x-sbx-exit-code" });
    const cut = cuts.find((c) => c > offset);
    if (cut === undefined) {
      res.write(BYTES.subarray(offset, offset + 3));
      res.addTrailers({ "x-sbx-exit-code": "5" });
      setTimeout(() => res.end(BYTES.subarray(offset + 3)), 10);
      return;
    }
    res.write(BYTES.subarray(offset, cut), () => setTimeout(() => res.socket?.destroy(), 20));
  });
  try {
    let code: number | undefined;
    const s = outputStream<Uint8Array>(srv.http, "/v1/sandboxes/sb-1/execs/ex-3", "stdout", "binary", true, undefined, (c) => (code = c));
    const reader = s.getReader({ mode: "byob" });
    let buf = new Uint8Array(333);
    const got: Buffer[] = [];
    for (;;) {
      const { done, value } = await reader.read(buf);
      if (done) break;
      assert.equal(value!.buffer.byteLength, 333, "the reader's own buffer, handed back");
      got.push(Buffer.from(value!));
      buf = new Uint8Array(value!.buffer);
    }
    assert.ok(Buffer.concat(got).equals(BYTES));
    assert.deepEqual(offsets, [0, ...cuts]);
    assert.equal(code, 5, "the exit code trailer reaches the process");
  } finally {
    await srv.close();
  }
});

test("a BYOB read through node's client (the HTTPS path) fills the reader's buffer exactly too; closing the client ends a read in progress", async () => {
  const srv = await serve((req, res) => {
    const offset = Number(new URL(req.url!, "http://x").searchParams.get("offset"));
    res.writeHead(200, { "x-sbx-offset": String(offset) });
    if (req.url!.includes("/hang/")) {
      res.write(BYTES.subarray(0, 10)); // then nothing: the process runs on
      return;
    }
    res.end(BYTES.subarray(offset));
  });
  try {
    // As over HTTPS: the reply read through node's client.
    const viaNode = (offset: number) =>
      new Promise<StreamReply>((resolve, reject) => {
        const url = srv.http.url("/s", { offset });
        nodeRequest(url, (res) => resolve(new IncomingReply(res, () => undefined))).on("error", reject).end();
      });
    const source = new ResumableByteSource((offset) => viaNode(offset), { label: "test" });
    const reader = new SbxReadableStream<Uint8Array>(source, "binary").getReader({ mode: "byob" });
    let buf = new Uint8Array(100);
    const got: Buffer[] = [];
    for (;;) {
      const { done, value } = await reader.read(buf);
      if (done) break;
      got.push(Buffer.from(value!));
      buf = new Uint8Array(value!.buffer);
    }
    assert.ok(Buffer.concat(got).equals(BYTES));

    const hanging = outputStream<Uint8Array>(srv.http, "/v1/sandboxes/sb-1/hang/ex-4", "stdout", "binary", true, undefined).getReader({ mode: "byob" });
    assert.equal((await hanging.read(new Uint8Array(64))).value!.length, 10);
    const pending = hanging.read(new Uint8Array(64));
    srv.http.close();
    await assert.rejects(pending, (err: unknown) => err instanceof SbxError && err.code === "client_closed");
  } finally {
    await srv.close();
  }
});

test("a stream gives up after a bounded number of drops without progress", async () => {
  let calls = 0;
  const srv = await serve((_req, res) => {
    calls++;
    res.writeHead(200, { "x-sbx-offset": "0" });
    res.flushHeaders();
    setTimeout(() => res.socket?.destroy(), 10);
  });
  try {
    const source = new ResumableByteSource(
      (offset, signal) => srv.http.stream({ method: "GET", path: "/s", query: { offset }, signal }),
      { label: "test stream", maxReconnects: 2 },
    );
    const s = new SbxReadableStream<string>(source, "text");
    await assert.rejects(s.readText(), (err: unknown) => {
      assert.ok(err instanceof SbxError);
      assert.equal(err.code, "unavailable");
      assert.match(err.message, /dropped 3 times/);
      return true;
    });
    assert.equal(calls, 3);
  } finally {
    await srv.close();
  }
});

test("stdin writes carry offsets, survive a dropped connection and re-send what was not acked", async () => {
  const received: number[] = [];
  const log: string[] = [];
  let dropNext = true;
  let closed = false;
  const srv = await serve((req, res, body) => {
    const url = new URL(req.url!, "http://x");
    if (url.pathname.endsWith("/stdin/close")) {
      closed = true;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ offset: received.length }));
      return;
    }
    const offset = Number(url.searchParams.get("offset"));
    log.push(`${offset}+${body.length}`);
    if (offset > received.length) {
      res.writeHead(409, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "conflict", message: "offset beyond" } }));
      return;
    }
    // Skip what we have, accept at most 4 bytes per request (a partial ack).
    const fresh = [...body.subarray(received.length - offset)].slice(0, 4);
    received.push(...fresh);
    if (dropNext && received.length >= 6) {
      // Applied, but the reply is lost: the client must re-send, the dedup makes it harmless.
      dropNext = false;
      res.socket?.destroy();
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ offset: received.length }));
  });
  try {
    const stdin = new SbxWritableStream(new StdinSender(srv.http, "/v1/sandboxes/sb-1/execs/ex-1", undefined, 0));
    await Promise.all([stdin.writeText("hello "), stdin.writeBytes(Uint8Array.from([0xe2, 0x82])), stdin.writeText("\u00ac world")]);
    const writer = stdin.getWriter();
    await writer.write("!");
    writer.releaseLock();
    await stdin.close();
    assert.deepEqual(Buffer.from(received), Buffer.concat([Buffer.from("hello "), Buffer.from([0xe2, 0x82]), Buffer.from("\u00ac world!")]));
    assert.ok(closed);
    assert.ok(log.length > 4, log.join(" "));
  } finally {
    await srv.close();
  }
});

test("stdin writes own their bytes: the caller may refill its buffer at once, and a reused copy buffer never mixes writes", async () => {
  const received: Buffer[] = [];
  const srv = await serve((req, res, body) => {
    received.push(Buffer.from(body));
    const offset = Number(new URL(req.url!, "http://x").searchParams.get("offset"));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ offset: offset + body.length }));
  });
  try {
    const sender = new StdinSender(srv.http, "/v1/sandboxes/sb-1/execs/ex-1", undefined, 0);
    const buf = new Uint8Array(8);
    const expected: number[] = [];
    // Awaited writes (the second and later copy into the first's buffer),
    // then queued ones that overlap, each written from the same caller buffer.
    for (const fill of [1, 2, 3]) {
      buf.fill(fill);
      await sender.write(buf);
      expected.push(...buf);
    }
    const queued: Promise<void>[] = [];
    for (const [fill, len] of [[4, 8], [5, 3], [6, 8]] as const) {
      buf.fill(fill);
      queued.push(sender.write(buf.subarray(0, len)));
      expected.push(...buf.subarray(0, len));
    }
    buf.fill(0);
    await Promise.all(queued);
    assert.deepEqual([...Buffer.concat(received)], expected);
  } finally {
    await srv.close();
  }
});

test("stdin of a process looked up by id starts at the server's offset", async () => {
  const offsets: number[] = [];
  let total = 5; // bytes another handle wrote earlier
  const srv = await serve((req, res, body) => {
    const offset = Number(new URL(req.url!, "http://x").searchParams.get("offset"));
    offsets.push(offset);
    total = Math.max(total, offset + body.length);
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ offset: total }));
  });
  try {
    const sender = new StdinSender(srv.http, "/v1/sandboxes/sb-1/execs/entry", undefined, undefined);
    await sender.write(new TextEncoder().encode("abc"));
    assert.deepEqual(offsets, [0, 5]);
    assert.equal(total, 8);
  } finally {
    await srv.close();
  }
});

test("the event-stream parser: any split, CRLF/CR/LF, comments, multi-line data, unnamed events", () => {
  const text = ": hello\r\nevent: Started\r\ndata: {\"a\":1}\r\n\r\nevent: x\rdata: one\rdata:two\r\rdata: plain\n\nid: 7\nevent: Finished\ndata: {}\n\n";
  const expected = [
    { event: "Started", data: '{"a":1}', id: undefined },
    { event: "x", data: "one\ntwo", id: undefined },
    { event: "message", data: "plain", id: undefined },
    { event: "Finished", data: "{}", id: "7" },
  ];
  // Whole, and cut at every position into two pieces.
  for (let cut = 0; cut <= text.length; cut++) {
    const p = new SseParser();
    const got = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))];
    assert.deepEqual(got, expected, `cut at ${cut}`);
  }
  // One character at a time.
  const p = new SseParser();
  const got = [...text].flatMap((c) => p.push(c));
  assert.deepEqual(got, expected);
  // An event without its blank line is not dispatched (yet).
  assert.deepEqual(new SseParser().push("event: a\ndata: b\n"), []);
});
