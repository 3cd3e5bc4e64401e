// Warm pools: a create whose shape matches claims a started sandbox, gets its
// own name, tags, env, secrets, workdir and timeout, and nothing a pool hands
// out was ever used before; the env of a claimed sandbox survives a restart.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { App, SbxClient, Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let client: SbxClient;
let app: App;

before(async () => {
  server = await startTestServer({ extraArgs: ["--warm-pool", "2"] });
  client = server.client();
  app = await client.apps.fromName("it-pools", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
});

const pooled = async (sb: Sandbox): Promise<boolean> =>
  (await sb.events()).some((e) => e.type === "Scheduled" && /warm pool/.test(e.reason ?? ""));

/** Creates until one comes from the pool (the pool fills in the background after the first). */
async function createPooled(params: Record<string, unknown> = {}, a: App = app): Promise<Sandbox> {
  for (let i = 0; i < 40; i++) {
    const sb = await client.sandboxes.create(a, undefined, params);
    if (await pooled(sb)) return sb;
    await sb.terminate();
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("no create was served from the warm pool");
}

test("a claimed sandbox gets its own env, secrets, workdir, name and tags", async () => {
  const secret = client.secrets.fromObject({ TOKEN: "s3cret" });
  const sb = await createPooled({
    env: { GREETING: "hi" },
    secrets: [secret],
    workdir: "/work/here",
    name: "pooled-one",
    tags: { kind: "pooled" },
  });
  const p = await sb.exec(["sh", "-c", 'echo "$GREETING $TOKEN"; pwd']);
  assert.equal(await p.stdout.readText(), "hi s3cret\n/work/here\n");
  const again = await client.sandboxes.fromName("it-pools", "pooled-one");
  assert.equal(again.sandboxId, sb.sandboxId);
  assert.deepEqual(await sb.getTags(), { kind: "pooled" });
  await sb.terminate();
});

test("a pool never hands out a sandbox anyone used", async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const sb = await createPooled();
    assert.ok(!seen.has(sb.sandboxId), "a sandbox was handed out twice");
    seen.add(sb.sandboxId);
    // Nothing of an earlier claim is in it.
    const p = await sb.exec(["sh", "-c", "ls /tmp; touch /tmp/used-by-me"]);
    assert.equal(await p.stdout.readText(), "");
    await sb.terminate();
  }
});

test("a pooled sandbox ran sbx's warm-up (true) before it was claimed, and nothing else", async () => {
  const sb = await createPooled();
  const procs = join(server.dataDir, "sandboxes", sb.sandboxId, "run", "procs");
  // Before the claimer's first command: the warm-up is the only process it has seen.
  assert.deepEqual(readdirSync(procs), ["sbx-warm-up"]);
  assert.equal(readFileSync(join(procs, "sbx-warm-up", "exit"), "utf8"), "0 exited\n");
  await sb.terminate();
});

test("a claimed sandbox's timeout is its own", async () => {
  const sb = await createPooled({ timeoutMs: 2000 });
  assert.equal(await sb.wait(), 124);
});

test("an app can turn its pool off", async () => {
  const other = await client.apps.fromName("it-pools-off", { createIfMissing: true });
  await client.apps.setWarmPoolSize(other, 0);
  for (let i = 0; i < 3; i++) {
    const sb = await client.sandboxes.create(other);
    assert.equal(await pooled(sb), false);
    await sb.terminate();
    await new Promise((r) => setTimeout(r, 300));
  }
});

test("after a restart: a claimed sandbox keeps its env; unclaimed pool sandboxes are removed", async () => {
  const sb = await createPooled({ env: { KEEP: "me" }, workdir: "/w" });
  await new Promise((r) => setTimeout(r, 2000)); // let the pool refill
  await server.kill();
  await server.restart();
  const again = await server.client().sandboxes.fromId(sb.sandboxId);
  const p = await again.exec(["sh", "-c", 'echo "$KEEP"; pwd']);
  assert.equal(await p.stdout.readText(), "me\n/w\n");
  // Only the claimed sandbox is left in the runtime: the pool's were orphans.
  const dirs = readdirSync(join(server.dataDir, "runc")).filter((d) => d.startsWith("sb-"));
  assert.deepEqual(dirs, [sb.sandboxId]);
  await again.terminate();
});
