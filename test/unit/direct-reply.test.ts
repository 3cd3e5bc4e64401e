// The SDK's direct reply reader (packages/sdk/src/direct-reply.ts): its own
// HTTP/1.1 response parsing against real sockets, node's HTTP server for
// well-formed replies and a raw TCP server for the cuts and the malformed ones.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type ServerResponse } from "node:http";
import * as net from "node:net";
import type { AddressInfo } from "node:net";
import { ConnectionPool, IDLE_CLOSE_MS, openDirect, MAX_HEAD_BYTES, type DirectReply } from "../../packages/sdk/src/direct-reply.js";

const limits = (timeoutMs = 5_000, signals: AbortSignal[] = []) => ({ signals, timeoutMs, timeoutError: () => new Error("no reply headers in time") });

function open(port: number, path = "/x", l = limits()): Promise<DirectReply> {
  return openDirect({ method: "GET", url: new URL(`http://127.0.0.1:${port}${path}`), headers: { authorization: "Bearer t" }, body: undefined }, l);
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as AddressInfo).port;
}

async function close(server: net.Server): Promise<void> {
  (server as { closeAllConnections?: () => void }).closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Reads the whole body with readInto() into a buffer of `size`, checking each count. */
async function readAll(reply: DirectReply, size: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  const dest = new Uint8Array(size);
  for (;;) {
    const n = await reply.readInto(dest);
    if (n === null) break;
    assert.ok(n >= 1 && n <= size, `a read of ${n} into ${size}`);
    parts.push(Buffer.from(dest.subarray(0, n)));
  }
  return Buffer.concat(parts);
}

// Every 4 KiB page has its own byte, and a line pattern runs through it: a
// misplaced, repeated or lost byte shows.
const BODY = Buffer.from(Array.from({ length: 40_000 }, (_, i) => `${i.toString(36)}:${String.fromCharCode(65 + (i % 26))}\n`).join(""));

test("a chunked body in pieces of any size arrives exact, into buffers of any size, with its trailers", async () => {
  const server = createServer((req, res: ServerResponse) => {
    assert.equal(req.headers.authorization, "Bearer t");
    assert.equal(req.headers.connection, "close");
    res.writeHead(200, { "content-type": "application/octet-stream", trailer: "x-sbx-exit-code", "x-sbx-offset": "0" });
    let at = 0;
    let piece = 0;
    const step = () => {
      if (at >= BODY.length) {
        res.addTrailers({ "x-sbx-exit-code": "42" });
        res.end();
        return;
      }
      // 1 byte, then growing pieces up to 70 KiB, so chunk headers fall anywhere in a read.
      const n = Math.min(BODY.length - at, [1, 2, 3, 17, 4096, 65_537, 70_000][piece++ % 7]!);
      res.write(BODY.subarray(at, at + n));
      at += n;
      setImmediate(step);
    };
    step();
  });
  const port = await listen(server);
  try {
    for (const size of [1, 7, 777, 65_536, 1 << 20]) {
      const reply = await open(port);
      assert.equal(reply.status, 200);
      assert.equal(reply.header("x-sbx-offset"), "0");
      assert.equal(reply.trailer("x-sbx-exit-code"), undefined, "no trailer before the end");
      const got = await readAll(reply, size);
      assert.ok(got.equals(BODY), `buffer of ${size}: ${got.length} bytes, want ${BODY.length}`);
      assert.equal(reply.trailer("x-sbx-exit-code"), "42");
      assert.equal(await reply.readInto(new Uint8Array(8)), null, "the end stays the end");
    }
    // A default read hands out buffers of its own.
    const reply = await open(port);
    const parts: Uint8Array[] = [];
    for (let c = await reply.read(); c !== null; c = await reply.read()) parts.push(c);
    assert.ok(Buffer.concat(parts).equals(BODY));
  } finally {
    await close(server);
  }
});

/** A raw TCP server: `answer` writes what it likes on each connection. */
async function rawServer(answer: (socket: net.Socket) => void): Promise<{ port: number; server: net.Server; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
    socket.once("data", () => answer(socket));
  });
  return { port: await listen(server), server, sockets };
}

async function writeSlowly(socket: net.Socket, bytes: Buffer): Promise<void> {
  for (const b of bytes) {
    socket.write(Buffer.of(b));
    await new Promise((r) => setImmediate(r));
  }
}

test("a head cut into single bytes after a 100 Continue, then a length-delimited body", async () => {
  const body = BODY.subarray(0, 5000);
  const { port, server } = await rawServer((s) => {
    void writeSlowly(s, Buffer.from(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Made\r\nContent-Length: ${body.length}\r\nX-Two: a\r\nx-two: b\r\n\r\n`)).then(() => s.end(body));
  });
  try {
    const reply = await open(port);
    assert.equal(reply.status, 201);
    assert.equal(reply.statusText, "Made");
    assert.equal(reply.header("x-two"), "a, b");
    assert.ok((await readAll(reply, 999)).equals(body));
  } finally {
    await close(server);
  }
});

test("a body delimited by the close ends at the close", async () => {
  const { port, server } = await rawServer((s) => s.end(Buffer.concat([Buffer.from("HTTP/1.1 200 OK\r\n\r\n"), BODY])));
  try {
    assert.ok((await readAll(await open(port), 4096)).equals(BODY));
  } finally {
    await close(server);
  }
});

test("a connection cut inside a body is an error, not an end: chunked, at a chunk's edge, and length-delimited", async () => {
  const heads = [
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n5\r\n01"],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "a\r\n0123456789\r\n"],
    ["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "0123456789"],
  ] as const;
  for (const [head, sent] of heads) {
    const { port, server } = await rawServer((s) => s.end(head + sent));
    try {
      const reply = await open(port);
      await assert.rejects(readAll(reply, 64), (err: unknown) => {
        assert.equal((err as { code?: string }).code, "ECONNRESET");
        assert.match(String(err), /closed before the reply ended/);
        return true;
      });
    } finally {
      await close(server);
    }
  }
});

test("a reply that is not HTTP/1.1 is refused with what is wrong", async () => {
  const cases: [string, RegExp][] = [
    ["SSH-2.0-OpenSSH\r\n\r\n", /status line/],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", /chunk size "zz"/],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", /not followed by CRLF/],
    ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", /transfer-encoding gzip/],
    ["HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", /content-length -1/],
    [`HTTP/1.1 200 OK\r\nX-Big: ${"a".repeat(MAX_HEAD_BYTES)}\r\n\r\n`, /head is over/],
  ];
  for (const [wire, why] of cases) {
    const { port, server } = await rawServer((s) => s.end(wire));
    try {
      await assert.rejects(
        open(port).then((r) => readAll(r, 64)),
        (err: unknown) => {
          assert.ok(err instanceof Error, `${JSON.stringify(wire.slice(0, 60))}: ${String(err)}`);
          assert.equal((err as { code?: string }).code, "EPROTO", String(err));
          assert.match(String(err), why);
          return true;
        },
      );
    } finally {
      await close(server);
    }
  }
});

test("no headers within the deadline, or an abort, rejects with its reason and closes the connection", async () => {
  const { port, server, sockets } = await rawServer(() => {});
  try {
    await assert.rejects(open(port, "/x", limits(200)), /no reply headers in time/);
    const ac = new AbortController();
    const opening = open(port, "/x", limits(5_000, [ac.signal]));
    setTimeout(() => ac.abort(new Error("the caller gave up")), 50);
    await assert.rejects(opening, /the caller gave up/);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(sockets.length, 2);
    for (const s of sockets) assert.ok(s.readableEnded || s.destroyed, "the server saw the connection close");
  } finally {
    await close(server);
  }
});

test("an abort while a body is read rejects the read; cancel() ends reads and closes the connection", async () => {
  const { port, server, sockets } = await rawServer((s) => s.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"));
  try {
    const ac = new AbortController();
    const reply = await open(port, "/x", limits(5_000, [ac.signal]));
    const dest = new Uint8Array(16);
    assert.equal(await reply.readInto(dest), 3);
    const pending = reply.readInto(dest);
    ac.abort(new Error("stop reading"));
    await assert.rejects(pending, /stop reading/);

    const second = await open(port);
    assert.equal(await second.readInto(dest), 3);
    second.cancel();
    assert.equal(await second.readInto(dest), null);
    await new Promise((r) => setTimeout(r, 100));
    for (const s of sockets) assert.ok(s.readableEnded || s.destroyed);
  } finally {
    await close(server);
  }
});

test("a reader slower than the server holds the socket back instead of buffering", async () => {
  // 64 MiB offered at once (more than loopback's socket buffers hold); the client reads 64 KiB every 20 ms.
  const big = Buffer.alloc(64 << 20, 7);
  let finished = false;
  const server = createServer((_req, res) => {
    res.writeHead(200);
    res.end(big, () => (finished = true));
  });
  const port = await listen(server);
  try {
    const reply = await open(port);
    const dest = new Uint8Array(64 << 10);
    let n = 0;
    for (let i = 0; i < 10; i++) {
      n += (await reply.readInto(dest)) ?? 0;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(finished, false, "the server could not send it all: the client does not read ahead of its reader");
    n += (await readAll(reply, 1 << 20)).length;
    assert.equal(n, big.length);
  } finally {
    await close(server);
  }
});

test("an error reply's body is read whole as text", async () => {
  const server = createServer((_req, res) => {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "not_found", message: "no such exec" } }));
  });
  const port = await listen(server);
  try {
    const reply = await open(port);
    assert.equal(reply.status, 404);
    assert.deepEqual(JSON.parse(await reply.text()), { error: { code: "not_found", message: "no such exec" } });
  } finally {
    await close(server);
  }
});

// ---- kept-alive connections (the SDK's unary calls and streams over plain HTTP) ----

function pooledOpen(pool: ConnectionPool, port: number, method = "GET", opts: { body?: string; idempotent?: boolean; deadlineCoversBody?: boolean; timeoutMs?: number } = {}) {
  return openDirect(
    { method, url: new URL(`http://127.0.0.1:${port}/x`), headers: {}, body: opts.body, idempotent: opts.idempotent ?? method !== "POST" },
    limits(opts.timeoutMs ?? 5_000),
    { pool, deadlineCoversBody: opts.deadlineCoversBody ?? true },
  );
}

test("a pool reuses one connection for calls one after another, skips one the server closed, and closes idle ones", async () => {
  let connections = 0;
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (d: Buffer) => parts.push(d));
    req.on("end", () => {
      if (req.url === "/x" && req.method === "DELETE") {
        res.writeHead(204);
        res.end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ method: req.method, body: Buffer.concat(parts).toString() }));
    });
  });
  server.on("connection", () => connections++);
  const port = await listen(server);
  const pool = new ConnectionPool(new URL(`http://127.0.0.1:${port}`));
  try {
    for (let i = 0; i < 5; i++) {
      const r = await pooledOpen(pool, port, "POST", { body: `{"i":${i}}` });
      assert.deepEqual(JSON.parse(await r.text()), { method: "POST", body: `{"i":${i}}` });
    }
    const del = await pooledOpen(pool, port, "DELETE");
    assert.equal(del.status, 204);
    assert.equal(await del.text(), "");
    assert.equal(connections, 1, "one connection for six calls");
    // The server drops its idle connections: the pool sees it and opens another.
    server.closeIdleConnections();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(JSON.parse(await (await pooledOpen(pool, port)).text()).method, "GET");
    assert.equal(connections, 2);
    // Idle past IDLE_CLOSE_MS: the pool closes it.
    await new Promise((r) => setTimeout(r, IDLE_CLOSE_MS + 500));
    assert.equal(server.connections ?? (await new Promise<number>((r) => server.getConnections((_e, n) => r(n)))), 0);
  } finally {
    pool.close();
    await close(server);
  }
});

test("a connection the server closes as a request arrives: an idempotent call is sent again, any other fails", async () => {
  // Answers the first request on each connection, then closes the connection at the next one without a word.
  let requests = 0;
  const { port, server } = await rawServer(() => {});
  server.removeAllListeners("connection");
  server.on("connection", (socket) => {
    let served = 0;
    socket.on("error", () => {});
    socket.on("data", () => {
      requests++;
      if (served++ === 0) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      else socket.destroy();
    });
  });
  const pool = new ConnectionPool(new URL(`http://127.0.0.1:${port}`));
  try {
    assert.equal(await (await pooledOpen(pool, port)).text(), "ok");
    assert.equal(await (await pooledOpen(pool, port)).text(), "ok", "a GET on the closed connection goes again on a new one");
    assert.equal(requests, 3);
    await assert.rejects(pooledOpen(pool, port, "POST", { body: "{}" }), (err: unknown) => {
      assert.equal((err as { code?: string }).code, "ECONNRESET");
      return true;
    });
    assert.equal(requests, 4, "the POST was not sent twice");
  } finally {
    pool.close();
    await close(server);
  }
});

test("a reply with connection: close, or of HTTP/1.0, is not reused; a unary deadline covers the body", async () => {
  let connections = 0;
  const { port, server } = await rawServer((s) => {
    if (connections === 1) s.end("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na");
    else if (connections === 2) s.end("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb");
    else s.write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"); // and the rest never comes
  });
  server.on("connection", () => connections++);
  const pool = new ConnectionPool(new URL(`http://127.0.0.1:${port}`));
  try {
    assert.equal(await (await pooledOpen(pool, port)).text(), "a");
    assert.equal(await (await pooledOpen(pool, port)).text(), "b");
    const slow = await pooledOpen(pool, port, "GET", { timeoutMs: 300 });
    await assert.rejects(slow.text(), /no reply headers in time/);
    assert.equal(connections, 3);
  } finally {
    pool.close();
    await close(server);
  }
});
