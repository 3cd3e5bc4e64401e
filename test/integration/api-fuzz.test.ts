// Property-based fuzzing of the two busiest bodies, create and exec, against
// the real server: whatever arrives, the answer is a success or a 4xx with a
// JSON error naming what is wrong, never a 5xx, and the server stays up.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { App, Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let app: App;
let sb: Sandbox;

before(async () => {
  server = await startTestServer();
  const c = server.client();
  app = await c.apps.fromName("it-fuzz", { createIfMissing: true });
  sb = await c.sandboxes.create(app);
});

after(async () => {
  await server?.stop();
});

/** Any JSON value, biased towards the shapes the API expects. */
const anyJson = fc.jsonValue({ maxDepth: 3 });
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(fc.oneof(arb, anyJson as fc.Arbitrary<unknown>), { nil: undefined });
const argv = fc.array(fc.oneof(fc.string(), fc.constantFrom("true", "echo", "/bin/sh", "\u0000", "../../x")), { maxLength: 4 });
const env = fc.dictionary(fc.oneof(fc.string(), fc.constantFrom("PATH", "A_B", "1X", "")), fc.string(), { maxKeys: 3 });
const ms = fc.oneof(fc.integer(), fc.double(), fc.constantFrom(0, 1000, 1500, -1000, 86_400_000, 86_401_000));

async function post(path: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

function assertNoServerError(r: { status: number; text: string }, body: unknown): void {
  assert.ok(r.status < 500, `status ${r.status} for ${JSON.stringify(body)}: ${r.text}`);
  if (r.status >= 400) {
    const err = (JSON.parse(r.text) as { error: { code: string; message: string } }).error;
    assert.ok(err.message.length > 0, `empty error message for ${JSON.stringify(body)}`);
  }
}

test("fuzzed create bodies: only 2xx or 4xx", async () => {
  const created: string[] = [];
  await fc.assert(
    fc.asyncProperty(
      fc.record(
        {
          appId: fc.oneof(fc.constant(app.appId), fc.string(), fc.constant("ap-nonexistent0000000")),
          image: fc.oneof(
            fc.constant({ kind: "debianSlim" }),
            fc.record({ kind: fc.constantFrom("registry", "id", "debianSlim", "nope"), ref: fc.string(), imageId: fc.string() }),
            anyJson,
          ),
          command: maybe(argv),
          timeoutMs: maybe(ms),
          idleTimeoutMs: maybe(ms),
          workdir: maybe(fc.oneof(fc.string(), fc.constantFrom("/tmp", "/proc/self/fd/7", "rel", "/../etc", "/.sbx"))),
          env: maybe(env),
          name: maybe(fc.string({ maxLength: 80 })),
          tags: maybe(fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 })),
          cpu: maybe(fc.double()),
          memoryLimitMiB: maybe(fc.integer()),
          blockNetwork: maybe(fc.boolean()),
          encryptedPorts: maybe(fc.array(fc.integer(), { maxLength: 2 })),
          readinessProbe: maybe(fc.record({ kind: fc.constantFrom("tcp", "exec"), port: fc.integer(), argv })),
        },
        { requiredKeys: [] },
      ),
      async (body) => {
        const r = await post("/v1/sandboxes", body);
        assertNoServerError(r, body);
        if (r.status === 201) created.push((JSON.parse(r.text) as { sandboxId: string }).sandboxId);
      },
    ),
    { numRuns: 150, seed: 42 },
  );
  const c = server.client();
  for (const id of created) await (await c.sandboxes.fromId(id)).terminate().catch(() => undefined);
});

test("fuzzed exec bodies: only 2xx or 4xx, and the sandbox keeps working", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record(
        {
          argv: fc.oneof(argv, anyJson),
          workdir: maybe(fc.oneof(fc.string(), fc.constantFrom("/tmp", "/proc/self/fd/7", "/nonexistent"))),
          env: maybe(env),
          timeoutMs: maybe(ms),
          stdout: maybe(fc.constantFrom("pipe", "ignore", "file")),
        },
        { requiredKeys: [] },
      ),
      async (body) => assertNoServerError(await post(`/v1/sandboxes/${sb.sandboxId}/execs`, body), body),
    ),
    { numRuns: 150, seed: 7 },
  );
  const p = await sb.exec(["echo", "still fine"]);
  assert.equal(await p.stdout.readText(), "still fine\n");
  const health = await fetch(`${server.url}/healthz`);
  assert.equal(health.status, 200);
});
