// An output stream sent through sendStream, from the real output reader on
// real files to a real HTTP client on loopback: the bytes arrive intact
// while the reader refills the few buffers the writer hands back (a buffer
// given back before the socket took its bytes would show as corrupted
// output here), the trailer follows, and a client that leaves mid-stream
// ends the reader without hanging the server.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import * as http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { ChunkBuffers, sendStream } from "../../packages/server/src/api/stream-reply.js";
import { abortOnClose } from "../../packages/server/src/api/request-signal.js";
import { FileOutputReader } from "../../packages/server/src/runtime/index.js";

const SANDBOX = "sb-stream";
const SIZE = 24 * 1024 * 1024 + 12345; // many full 1 MiB reads and a short last one
let dataDir: string;
let app: FastifyInstance;
let base: string;
let expected: Buffer;
/** What each request's buffers did, by exec id. */
const seen = new Map<string, { distinct: Set<ArrayBufferLike>; lends: number; lentAtEnd: number; readerEnded: boolean }>();

function writeProcess(execId: string, bytes: Buffer, exited: boolean): void {
  const dir = join(dataDir, "sandboxes", SANDBOX, "run", "procs", execId);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "stdout"), bytes);
  if (exited) writeFileSync(join(dir, "exit"), "3 exited\n");
}

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "sbx-stream-reply-"));
  // Every 4 KiB page has its own byte: a chunk sent from a buffer that was
  // already refilled with later bytes cannot go unnoticed.
  expected = Buffer.alloc(SIZE);
  for (let i = 0; i < SIZE; i += 4096) expected.fill((i / 4096) % 251, i, Math.min(SIZE, i + 4096));
  writeProcess("ex-done", expected, true);
  writeProcess("ex-running", expected.subarray(0, 4 << 20), false);

  const reader = new FileOutputReader(dataDir, 50);
  app = Fastify();
  app.get("/:execId", async (req, reply) => {
    const { execId } = req.params as { execId: string };
    const signal = abortOnClose(reply);
    const buffers = new ChunkBuffers();
    const stats = { distinct: new Set<ArrayBufferLike>(), lends: 0, lentAtEnd: -1, readerEnded: false };
    seen.set(execId, stats);
    const lend = buffers.lend.bind(buffers);
    buffers.lend = (size: number) => {
      const b = lend(size);
      stats.distinct.add(b.buffer);
      stats.lends++;
      return b;
    };
    const exited = () => execId === "ex-done";
    const inner = reader.follow(SANDBOX, execId, "stdout", 0, exited, signal, { buffers });
    const chunks = (async function* () {
      try {
        yield* inner;
      } finally {
        stats.readerEnded = true;
      }
    })();
    await sendStream(reply, chunks, {
      headers: { "content-type": "application/octet-stream" },
      trailer: { name: "x-exit", value: async () => String((await reader.exitStatus(SANDBOX, execId))?.code ?? "") },
      buffers,
      signal,
    });
    stats.lentAtEnd = buffers.lentCount;
  });
  base = await app.listen({ host: "127.0.0.1", port: 0 });
});

after(async () => {
  await app.close();
  await rm(dataDir, { recursive: true, force: true });
});

/** GETs a stream, reading it slowly enough that the server's writes back up. */
function get(path: string, method = "GET"): Promise<{ status: number; body: Buffer; trailers: NodeJS.Dict<string>; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method }, (res) => {
      const parts: Buffer[] = [];
      let n = 0;
      res.on("data", (d: Buffer) => {
        parts.push(d);
        if (++n % 64 === 0) {
          res.pause();
          setTimeout(() => res.resume(), 5);
        }
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts), trailers: res.trailers, headers: res.headers }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

test("a stream arrives intact from a few reused buffers, with its trailer", async () => {
  const res = await get("/ex-done");
  assert.equal(res.status, 200);
  assert.equal(res.body.length, SIZE);
  const digest = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  assert.equal(digest(res.body), digest(expected), "the bytes arrived as written");
  assert.equal(res.trailers["x-exit"], "3");
  const stats = seen.get("ex-done")!;
  assert.ok(stats.lends >= 24, `the reader made ${stats.lends} big reads`);
  assert.ok(stats.distinct.size <= 4, `${stats.lends} big reads used ${stats.distinct.size} buffers`);
  assert.equal(stats.lentAtEnd, 0, "every lent buffer came back");
});

test("HEAD answers with the headers and reads nothing", async () => {
  const res = await get("/ex-done", "HEAD");
  assert.equal(res.status, 200);
  assert.equal(res.headers["content-type"], "application/octet-stream");
  assert.equal(res.body.length, 0);
  assert.equal(seen.get("ex-done")!.lends, 0);
});

test("a client that leaves mid-stream ends the reader; the server keeps serving", async () => {
  // The process is still running: without the client's leaving noticed, the
  // reader would wait for more output forever.
  await new Promise<void>((resolve, reject) => {
    const req = http.get(`${base}/ex-running`, (res) => {
      let got = 0;
      res.on("data", (d: Buffer) => {
        got += d.length;
        if (got >= 4 << 20) {
          req.destroy();
          resolve();
        }
      });
      res.on("error", () => {});
    });
    req.on("error", (e) => (req.destroyed ? undefined : reject(e)));
  });
  const stats = seen.get("ex-running")!;
  const deadline = Date.now() + 5_000;
  while (!stats.readerEnded && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(stats.readerEnded, "the reader ended after the client left");
  const res = await get("/ex-done");
  assert.equal(res.body.length, SIZE);
});
