// The real server, SIGKILLed by itself at each step of a create (image
// unpack, then each runtime step), then started again: the half-made
// sandbox is recorded as failed and nothing of it is left on the host, and a
// sandbox that was running throughout is adopted untouched.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import type { App } from "sbx";
import { CREATE_STEPS } from "../../packages/server/src/runtime/index.js";
import { ensureBaseLayer } from "../../packages/server/src/images/index.js";
import { startRegistry, type Registry } from "../support/registry.js";
import { pushImage } from "../support/images.js";
import { leftovers, mountsUnder } from "../support/leaks.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let registry: Registry;
let app: App;

before(async () => {
  registry = await startRegistry();
  server = await startTestServer({ mirrors: { "docker.io": registry.url } });
  app = await server.client().apps.fromName("it-crash", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
  await registry?.stop();
});

/** Sandbox ids the store holds, with their state, read straight from SQLite. */
function stored(): Map<string, { state: string; reason: string | null }> {
  const db = new Database(join(server.dataDir, "sbx.db"), { readonly: true });
  try {
    const rows = db.prepare("SELECT sandbox_id, state, finish_reason FROM sandboxes").all() as Array<{
      sandbox_id: string;
      state: string;
      finish_reason: string | null;
    }>;
    return new Map(rows.map((r) => [r.sandbox_id, { state: r.state, reason: r.finish_reason }]));
  } finally {
    db.close();
  }
}

/** Creates with the server set to die at `step`; returns the id of the half-made sandbox. */
async function crashAt(step: string, image?: string): Promise<string> {
  const before = new Set(stored().keys());
  await server.kill();
  await server.restart({ SBX_TEST_KILL_AT_STEP: step });
  const c = server.client();
  const create = c.sandboxes.create(app, image ? c.images.fromRegistry(image) : undefined);
  await assert.rejects(create, undefined, `step ${step}: the create should die with the server`);
  await server.exited();
  await server.restart();
  const fresh = [...stored().keys()].filter((id) => !before.has(id));
  assert.equal(fresh.length, 1, `step ${step}: expected one new sandbox record, got ${fresh.join(", ")}`);
  return fresh[0]!;
}

test("a kill at each step of create leaves a failed record and nothing on the host; a running sandbox survives", async () => {
  const survivor = await server.client().sandboxes.create(app);
  const p = await survivor.exec(["sh", "-c", "echo before > /tmp/mark"]);
  assert.equal(await p.wait(), 0);

  // Image unpack: a layer half unpacked into a temp dir when the server dies.
  await pushImage(registry.host, "library/crashy:1", {
    layers: [{ blob: await ensureBaseLayer() }, { files: { "hello.txt": "hi\n" } }],
  });
  const unpackId = await crashAt("unpack", "crashy:1");
  const layersDir = join(server.dataDir, "layers", "sha256");
  assert.deepEqual(readdirSync(layersDir).filter((n) => n.startsWith(".tmp-")), [], "a half-unpacked layer was left");
  const ok = await server.client().sandboxes.create(app, server.client().images.fromRegistry("crashy:1"));
  const cat = await ok.exec(["cat", "/hello.txt"]);
  assert.equal(await cat.stdout.readText(), "hi\n");
  await ok.terminate({ wait: true });
  const ids = [unpackId];

  for (const step of CREATE_STEPS) ids.push(await crashAt(step));

  const records = stored();
  for (const id of ids) {
    assert.deepEqual(records.get(id), { state: "finished", reason: "failed" }, `${id}: not recorded as failed`);
    assert.deepEqual(leftovers(server.dataDir, id).filter((l) => !l.startsWith("dir ")), [], `${id}: left behind`);
  }
  // The survivor was adopted after every restart and still holds its state.
  const again = await server.client().sandboxes.fromId(survivor.sandboxId);
  assert.equal(await again.poll(), null);
  const q = await again.exec(["cat", "/tmp/mark"]);
  assert.equal(await q.stdout.readText(), "before\n");
  await again.terminate({ wait: true });
  assert.deepEqual(mountsUnder(join(server.dataDir, "sandboxes", survivor.sandboxId)), []);
});
