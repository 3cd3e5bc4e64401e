// The server can die without losing anything: SIGKILL it with sandboxes
// running and output streaming, start it again, and every sandbox is adopted
// with every byte and exit code intact.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { App, SbxClient } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let app: App;

before(async () => {
  server = await startTestServer();
  app = await server.client().apps.fromName("it-restart", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
});

test("SIGKILL the server mid-stream: sandboxes are adopted, no byte or exit code lost", async () => {
  const c1: SbxClient = server.client();
  const sbs = await Promise.all(Array.from({ length: 3 }, () => c1.sandboxes.create(app)));
  const procs = await Promise.all(
    sbs.map((sb) => sb.exec(["sh", "-c", "for i in $(seq 1 40); do echo line-$i; sleep 0.05; done; exit 7"])),
  );
  const finishedBefore = await sbs[0]!.exec(["sh", "-c", "echo early; exit 3"]);
  assert.equal(await finishedBefore.wait(), 3);

  await server.kill();
  await new Promise((r) => setTimeout(r, 1000)); // output keeps being written meanwhile
  await server.restart();

  const c2 = server.client();
  const expected = Array.from({ length: 40 }, (_, i) => `line-${i + 1}\n`).join("");
  for (let i = 0; i < sbs.length; i++) {
    const sb = await c2.sandboxes.fromId(sbs[i]!.sandboxId);
    assert.equal(await sb.poll(), null, "the sandbox should still be running");
    const p = await sb.exec(["echo", "after restart"]);
    assert.equal(await p.stdout.readText(), "after restart\n");
  }
  // The processes started before the kill: full output and exit codes, read through the new server.
  for (const p of procs) {
    assert.equal(await p.stdout.readText(), expected);
    assert.equal(await p.wait(), 7);
  }
  assert.equal(await finishedBefore.stdout.readText(), "early\n");
  for (const sb of sbs) await sb.terminate();
});

test("a sandbox cannot point the restarted server at a host socket", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sbx-trap-"));
  const trapPath = join(dir, "host.sock");
  let connections = 0;
  const trap = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => trap.listen(trapPath, r));
  try {
    const c = server.client();
    const sb = await c.sandboxes.create(app);
    const plant = await sb.exec(["sh", "-c", `rm /.sbx/agent.sock && ln -s ${trapPath} /.sbx/agent.sock && echo ok`]);
    assert.equal(await plant.stdout.readText(), "ok\n");
    await server.kill();
    await server.restart();
    const again = await server.client().sandboxes.fromId(sb.sandboxId);
    await again.exec(["true"]).catch(() => undefined);
    assert.equal(connections, 0, "the server connected to a host socket the sandbox pointed it at");
    await again.terminate().catch(() => undefined);
  } finally {
    trap.close();
    await rm(dir, { recursive: true, force: true });
  }
});
