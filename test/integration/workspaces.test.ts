// Tenancy: a token belongs to a workspace, and a workspace never sees or
// touches another's apps, sandboxes, secrets, volumes or images; what is
// another's is answered exactly as what does not exist (no existence oracle).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { AuthError, NotFoundError, SbxClient, type App, type Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let a: SbxClient;
let b: SbxClient;
let tokenA: string;
let tokenB: string;
let appA: App;
let sbA: Sandbox;
let execA: string;

before(async () => {
  server = await startTestServer();
  const admin = server.client();
  tokenA = (await admin.workspaces.create("team-a")).token;
  tokenB = (await admin.workspaces.create("team-b")).token;
  a = new SbxClient({ serverUrl: server.url, token: tokenA });
  b = new SbxClient({ serverUrl: server.url, token: tokenB });
  appA = await a.apps.fromName("shared", { createIfMissing: true });
  await a.secrets.create("creds", { API_KEY: "a-only" });
  await a.volumes.fromName("data", { createIfMissing: true });
  sbA = await a.sandboxes.create(appA, undefined, { name: "box", tags: { team: "a" } });
  const p = await sbA.exec(["echo", "from a"]);
  await p.wait();
  execA = p.execId;
});

after(async () => {
  await sbA?.terminate().catch(() => undefined);
  a?.close();
  b?.close();
  await server?.stop();
});

/** The error for another workspace's object, and for a made-up one, side by side. */
async function sameAsMissing(mine: () => Promise<unknown>, missing: () => Promise<unknown>): Promise<void> {
  const e1 = await mine().then(() => null, (e: unknown) => e);
  const e2 = await missing().then(() => null, (e: unknown) => e);
  assert.ok(e1 instanceof NotFoundError, `expected NotFoundError, got ${String(e1)}`);
  assert.ok(e2 instanceof NotFoundError, `expected NotFoundError, got ${String(e2)}`);
}

const fakeSandbox = "sb-aaaaaaaaaaaaaaaaaaaa";

async function raw(token: string, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, text: await res.text() };
}

test("another workspace's sandbox is answered as a missing one, on every route", async () => {
  await sameAsMissing(() => b.sandboxes.fromId(sbA.sandboxId), () => b.sandboxes.fromId(fakeSandbox));
  const paths: Array<[string, string, unknown?]> = [
    ["GET", "/v1/sandboxes/ID"],
    ["GET", "/v1/sandboxes/ID/wait?timeoutMs=0"],
    ["GET", "/v1/sandboxes/ID/events"],
    ["GET", "/v1/sandboxes/ID/events/stream"],
    ["POST", "/v1/sandboxes/ID/terminate"],
    ["PUT", "/v1/sandboxes/ID/tags", { tags: { x: "y" } }],
    ["POST", "/v1/sandboxes/ID/execs", { argv: ["true"] }],
    ["GET", `/v1/sandboxes/ID/execs/${execA}`],
    ["GET", `/v1/sandboxes/ID/execs/${execA}/stdout`],
    ["GET", `/v1/sandboxes/ID/execs/${execA}/wait?timeoutMs=0`],
  ];
  for (const [method, path, body] of paths) {
    const theirs = await raw(tokenB, method, path.replace("ID", sbA.sandboxId), body);
    const none = await raw(tokenB, method, path.replace("ID", fakeSandbox), body);
    assert.equal(theirs.status, 404, `${method} ${path}: ${theirs.status} ${theirs.text}`);
    assert.equal(
      theirs.text.replaceAll(sbA.sandboxId, "ID"),
      none.text.replaceAll(fakeSandbox, "ID"),
      `${method} ${path} tells the two apart`,
    );
  }
  // And A's sandbox is untouched: still running, still tagged by A only.
  const still = await a.sandboxes.fromId(sbA.sandboxId);
  assert.equal(await still.poll(), null);
  assert.deepEqual(await still.getTags(), { team: "a" });
});

test("apps, names and lists are per workspace", async () => {
  await assert.rejects(b.apps.fromName("shared"), NotFoundError);
  const appB = await b.apps.fromName("shared", { createIfMissing: true });
  assert.notEqual(appB.appId, appA.appId);
  await assert.rejects(b.sandboxes.fromName("shared", "box"), NotFoundError);
  const seen: string[] = [];
  for await (const sb of b.sandboxes.list({})) seen.push(sb.sandboxId);
  assert.ok(!seen.includes(sbA.sandboxId));
  for await (const sb of b.sandboxes.list({ appId: appA.appId })) seen.push(sb.sandboxId);
  assert.ok(!seen.includes(sbA.sandboxId));
  // Creating in another workspace's app is refused as for a missing app.
  const r = await raw(tokenB, "POST", "/v1/sandboxes", { appId: appA.appId, image: { kind: "debianSlim" } });
  assert.equal(r.status, 404);
  // The same name can run in both workspaces at once.
  const boxB = await b.sandboxes.create(appB, undefined, { name: "box" });
  await boxB.terminate();
});

test("secrets and volumes are per workspace", async () => {
  assert.deepEqual(await b.secrets.list(), []);
  const appB = await b.apps.fromName("shared", { createIfMissing: true });
  await assert.rejects(
    b.sandboxes.create(appB, undefined, { secrets: [await b.secrets.fromName("creds")] }),
    NotFoundError,
  );
  assert.deepEqual(await b.volumes.list(), []);
  await assert.rejects(b.volumes.delete("data"), NotFoundError);
  assert.equal((await a.volumes.list()).length, 1);
  // B's own secret of the same name holds B's value.
  await b.secrets.create("creds", { API_KEY: "b-only" });
  const sb = await b.sandboxes.create(appB, undefined, { secrets: [await b.secrets.fromName("creds")] });
  const p = await sb.exec(["sh", "-c", "echo $API_KEY"]);
  assert.equal(await p.stdout.readText(), "b-only\n");
  await sb.terminate();
});

test("images are per workspace: another's image id is unknown until one uses that image itself", async () => {
  const info = await a.sandboxes.fromId(sbA.sandboxId);
  const imageId = (await raw(tokenA, "GET", `/v1/sandboxes/${info.sandboxId}`)).text.match(/"imageId":"(sha256:[a-f0-9]{64})"/)![1]!;
  const fresh = await server.client().workspaces.create("team-c");
  const c = new SbxClient({ serverUrl: server.url, token: fresh.token });
  const appC = await c.apps.fromName("x", { createIfMissing: true });
  await assert.rejects(c.sandboxes.create(appC, c.images.fromId(imageId)), NotFoundError);
  c.close();
});

test("only the admin token manages workspaces", async () => {
  await assert.rejects(a.workspaces.create("sneaky"), AuthError);
  await assert.rejects(a.workspaces.list(), AuthError);
  const listed = (await server.client().workspaces.list()).map((w) => w.name);
  assert.ok(listed.includes("team-a") && listed.includes("team-b") && !listed.includes("sneaky"));
  // The admin's own workspace does not see team-a's sandbox either.
  await assert.rejects(server.client().sandboxes.fromId(sbA.sandboxId), NotFoundError);
});
