// The bodies of stdin POSTs (up to 4 MiB each) are read into buffers that
// are kept and reused (buffer-pool.ts): Fastify's own parser concatenates
// each body into a fresh buffer, whose page faults cost the server ~1.2 s
// of CPU per GiB of stdin here, more than everything else it does for it.
import type { FastifyInstance, FastifyRequest } from "fastify";
import fastify from "fastify";
import { BufferPool } from "./buffer-pool.js";

const { FST_ERR_CTP_BODY_TOO_LARGE, FST_ERR_CTP_INVALID_CONTENT_LENGTH } = fastify.errorCodes;

/** A body declared this small gets an exact fresh buffer: the pool is for the big ones. */
const SMALL_BODY = 64 * 1024;

/**
 * Parses application/octet-stream bodies of up to `limit` bytes, big ones
 * into reused buffers. A buffer goes back only after a 2xx reply: the stdin
 * route answers 2xx once the agent has acknowledged every frame cut from
 * the body, so nothing refers to its bytes any more. After any other reply
 * the buffer is left to the garbage collector, since a write may still be
 * queued.
 */
export function parseOctetStreamBodies(app: FastifyInstance, limit: number, keep = 4): void {
  const pool = new BufferPool(limit, keep);
  const lent = new WeakMap<FastifyRequest, Buffer>();
  app.addContentTypeParser("application/octet-stream", (req, payload, done) => {
    const header = req.headers["content-length"];
    const declared = header === undefined ? undefined : Number(header);
    if (declared !== undefined && !(Number.isSafeInteger(declared) && declared >= 0)) return done(new FST_ERR_CTP_INVALID_CONTENT_LENGTH(), undefined);
    if (declared !== undefined && declared > limit) return done(new FST_ERR_CTP_BODY_TOO_LARGE(), undefined);
    const pooled = declared === undefined || declared > SMALL_BODY;
    const buf = pooled ? pool.take() : Buffer.allocUnsafe(declared);
    let len = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      payload.removeListener("data", onData);
      payload.resume(); // drain the rest, so the error reply can be written
      if (pooled) pool.give(buf); // nothing refers to it yet
      done(err, undefined);
    };
    const onData = (chunk: Buffer) => {
      // More than declared (declared ≤ limit was checked above), or an undeclared body past the limit.
      if (len + chunk.length > buf.length) return fail(declared !== undefined ? new FST_ERR_CTP_INVALID_CONTENT_LENGTH() : new FST_ERR_CTP_BODY_TOO_LARGE());
      chunk.copy(buf, len);
      len += chunk.length;
    };
    payload.on("data", onData);
    payload.once("error", fail);
    payload.once("end", () => {
      if (settled) return;
      if (declared !== undefined && declared !== len) return fail(new FST_ERR_CTP_INVALID_CONTENT_LENGTH());
      settled = true;
      if (pooled) lent.set(req, buf);
      done(null, buf.subarray(0, len));
    });
  });
  app.addHook("onResponse", (req, reply, next) => {
    const buf = lent.get(req);
    if (buf !== undefined && reply.statusCode >= 200 && reply.statusCode < 300) pool.give(buf);
    next();
  });
}
