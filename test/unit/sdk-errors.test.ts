// The SDK's one table of error code → class, and the HTTP layer's retries.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import {
  AlreadyExistsError,
  AuthError,
  ClientClosedError,
  ConflictError,
  InvalidError,
  NotFoundError,
  ResourceExhaustedError,
  SbxError,
  TimeoutError,
} from "../../packages/sdk/src/index.js";
import { ERROR_CLASSES, errorFromWire } from "../../packages/sdk/src/errors.js";
import { HttpClient } from "../../packages/sdk/src/http.js";
import { ERROR_STATUS, type ErrorCode } from "../../packages/sdk/src/wire.js";

const EXPECTED: Record<ErrorCode, (new (m: string) => SbxError) | null> = {
  invalid: InvalidError,
  unauthenticated: AuthError,
  not_found: NotFoundError,
  already_exists: AlreadyExistsError,
  conflict: ConflictError,
  timeout: TimeoutError,
  resource_exhausted: ResourceExhaustedError,
  unavailable: null,
  internal: null,
};

test("every wire error code maps to its class", () => {
  assert.deepEqual(Object.keys(ERROR_CLASSES).sort(), Object.keys(ERROR_STATUS).sort());
  for (const [code, status] of Object.entries(ERROR_STATUS) as [ErrorCode, number][]) {
    const err = errorFromWire(code, `message for ${code}`, status);
    const cls = EXPECTED[code];
    if (cls) assert.ok(err instanceof cls, `${code} → ${cls.name}`);
    else assert.equal(err.constructor, SbxError, `${code} → SbxError`);
    assert.equal(err.code, code);
    assert.equal(err.status, status);
    assert.equal(err.message, `message for ${code}`);
  }
});

test("unknown codes fall back to the status", () => {
  assert.ok(errorFromWire("weird", "m", 404) instanceof NotFoundError);
  assert.ok(errorFromWire(undefined, "m", 429) instanceof ResourceExhaustedError);
  const other = errorFromWire(undefined, "m", 418);
  assert.equal(other.constructor, SbxError);
  assert.equal(other.code, "internal");
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(handler: Handler): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

function http(url: string, extra: Partial<ConstructorParameters<typeof HttpClient>[0]> = {}): HttpClient {
  return new HttpClient({ serverUrl: url, token: "tok", timeoutMs: 5_000, connectTimeoutMs: 5_000, maxRetries: 3, ...extra });
}

test("an error body becomes its class with the server's message; the token is sent", async () => {
  let auth: string | undefined;
  const srv = await serve((req, res) => {
    auth = req.headers.authorization;
    res.writeHead(409, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "already_exists", message: "a sandbox named x is running", details: { name: "x" } } }));
  });
  try {
    await assert.rejects(http(srv.url).json({ method: "POST", path: "/v1/sandboxes", body: {} }), (err: unknown) => {
      assert.ok(err instanceof AlreadyExistsError);
      assert.equal(err.message, "a sandbox named x is running");
      assert.equal(err.status, 409);
      assert.deepEqual(err.details, { name: "x" });
      return true;
    });
    assert.equal(auth, "Bearer tok");
  } finally {
    await srv.close();
  }
});

test("a GET is retried on 503, a plain POST is not", async () => {
  let calls = 0;
  const srv = await serve((req, res) => {
    calls++;
    if (calls < 3) {
      res.writeHead(503, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "unavailable", message: "busy" } }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ ok: true, method: req.method }));
  });
  try {
    assert.deepEqual(await http(srv.url).json({ method: "GET", path: "/x" }), { ok: true, method: "GET" });
    assert.equal(calls, 3);
    calls = 0;
    await assert.rejects(http(srv.url).json({ method: "POST", path: "/x", body: {} }), (err: unknown) => {
      assert.ok(err instanceof SbxError);
      assert.equal(err.code, "unavailable");
      return true;
    });
    assert.equal(calls, 1);
    calls = 0;
    assert.deepEqual(await http(srv.url).json({ method: "POST", path: "/x", body: {}, idempotent: true }), { ok: true, method: "POST" });
    assert.equal(calls, 3);
  } finally {
    await srv.close();
  }
});

test("an unreachable server is an SbxError with code unavailable", async () => {
  const srv = await serve(() => {});
  const url = srv.url;
  await srv.close();
  await assert.rejects(http(url, { maxRetries: 1 }).json({ method: "GET", path: "/healthz" }), (err: unknown) => {
    assert.ok(err instanceof SbxError);
    assert.equal(err.code, "unavailable");
    assert.match(err.message, /cannot reach the sbx server/);
    return true;
  });
});

test("a slow reply is a TimeoutError; abort rejects with the signal's reason; close gives ClientClosedError", async () => {
  const srv = await serve(() => {
    /* never replies */
  });
  try {
    await assert.rejects(http(srv.url, { timeoutMs: 100 }).json({ method: "GET", path: "/slow" }), TimeoutError);
    const ac = new AbortController();
    const reason = new Error("stop");
    setTimeout(() => ac.abort(reason), 50);
    await assert.rejects(http(srv.url).json({ method: "GET", path: "/slow", signal: ac.signal }), (err) => err === reason);
    const client = http(srv.url);
    const pending = client.json({ method: "GET", path: "/slow" });
    setTimeout(() => client.close(), 50);
    await assert.rejects(pending, ClientClosedError);
    await assert.rejects(client.json({ method: "GET", path: "/slow" }), ClientClosedError);
  } finally {
    await srv.close();
  }
});
