// Octet-stream request bodies parsed into reused buffers, on a real Fastify
// server and real HTTP on loopback: each body arrives exactly as sent, big
// bodies reuse a few buffers, a body whose reply was not 2xx never has its
// buffer reused, and the limits answer 413 while the server keeps serving.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as http from "node:http";
import Fastify, { type FastifyInstance } from "fastify";
import { parseOctetStreamBodies } from "../../packages/server/src/api/body-buffers.js";

const LIMIT = 4 * 1024 * 1024;
let app: FastifyInstance;
let base: string;
/** A number per distinct ArrayBuffer a body arrived in. */
const bufferIds = new WeakMap<ArrayBufferLike, number>();
let nextId = 0;

function idOf(body: Buffer): number {
  let id = bufferIds.get(body.buffer);
  if (id === undefined) bufferIds.set(body.buffer, (id = nextId++));
  return id;
}

before(async () => {
  app = Fastify();
  parseOctetStreamBodies(app, LIMIT);
  const describe = (body: Buffer) => ({ sha: createHash("sha256").update(body).digest("hex"), length: body.length, buffer: idOf(body) });
  app.post("/ok", async (req) => describe(req.body as Buffer));
  app.post("/refused", async (req, reply) => reply.status(409).send(describe(req.body as Buffer)));
  base = await app.listen({ host: "127.0.0.1", port: 0 });
});

after(async () => {
  await app.close();
});

interface Described {
  sha: string;
  length: number;
  buffer: number;
}

/** POSTs `body`, with its length declared or (chunked) not. */
function post(path: string, body: Buffer, declareLength = true): Promise<{ status: number; json: Described & { message?: string } }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { "content-type": "application/octet-stream" };
    if (declareLength) headers["content-length"] = body.length;
    const req = http.request(`${base}${path}`, { method: "POST", headers }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
    });
    req.on("error", reject);
    if (declareLength) req.end(body);
    else {
      // Chunked: in pieces, so the parser sees no length up front.
      for (let i = 0; i < body.length; i += 256 * 1024) req.write(body.subarray(i, i + 256 * 1024));
      req.end();
    }
  });
}

function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) b.fill((seed * 31 + i / 4096) % 251, i, Math.min(size, i + 4096));
  return b;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

test("big bodies arrive exactly as sent, in a few reused buffers", async () => {
  const ids = new Set<number>();
  for (let i = 0; i < 6; i++) {
    const body = pattern(LIMIT - i * 100_000, i); // each shorter than the last: a stale tail would show
    const res = await post("/ok", body, i % 2 === 0);
    assert.equal(res.status, 200);
    assert.equal(res.json.length, body.length);
    assert.equal(res.json.sha, sha(body), `body ${i} arrived as sent`);
    ids.add(res.json.buffer);
  }
  assert.ok(ids.size <= 2, `6 bodies used ${ids.size} buffers`);
});

test("a body whose reply was not 2xx never has its buffer reused", async () => {
  const refused = await post("/refused", pattern(LIMIT, 7));
  assert.equal(refused.status, 409);
  for (let i = 0; i < 4; i++) {
    const res = await post("/ok", pattern(LIMIT, 8 + i));
    assert.equal(res.status, 200);
    assert.notEqual(res.json.buffer, refused.json.buffer, "the refused body's buffer came back");
  }
});

test("a small body gets a buffer of its own size and arrives as sent", async () => {
  const body = Buffer.from("hello, stdin\n");
  const res = await post("/ok", body);
  assert.equal(res.status, 200);
  assert.equal(res.json.sha, sha(body));
  const empty = await post("/ok", Buffer.alloc(0));
  assert.equal(empty.status, 200);
  assert.equal(empty.json.length, 0);
});

test("bodies over the limit get 413, declared or chunked, and the server keeps serving", async () => {
  const declared = await post("/ok", pattern(LIMIT + 1, 1));
  assert.equal(declared.status, 413);
  const chunked = await post("/ok", pattern(LIMIT + 300_000, 2), false);
  assert.equal(chunked.status, 413);
  const body = pattern(LIMIT, 3);
  const res = await post("/ok", body);
  assert.equal(res.status, 200);
  assert.equal(res.json.sha, sha(body));
});
