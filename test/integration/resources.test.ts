// Resources: cgroup limits from cpu / cpuLimit / memoryMiB / memoryLimitMiB,
// the OOM killer's verdict, and admission against the host's capacity.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { ResourceExhaustedError, type App, type SbxClient } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let client: SbxClient;
let app: App;

before(async () => {
  // Room for two half-core sandboxes, and one more may wait.
  server = await startTestServer({ extraArgs: ["--capacity-cpu", "1", "--queue-size", "1"] });
  client = server.client();
  app = await client.apps.fromName("it-resources", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
});

/** The sandbox's own cgroup v1 file, or null on a host without that hierarchy. */
async function cgroupFile(sandboxId: string, controller: string, file: string): Promise<string | null> {
  for (const path of [`/sys/fs/cgroup/${controller}/sbx/${sandboxId}/${file}`, `/sys/fs/cgroup/sbx/${sandboxId}/${file}`]) {
    try {
      return (await readFile(path, "utf8")).trim();
    } catch {
      /* next */
    }
  }
  return null;
}

describe("cgroup limits", () => {
  test("cpu, cpuLimit, memoryMiB and memoryLimitMiB become cgroup settings", async () => {
    const sb = await client.sandboxes.create(app, undefined, { cpu: 0.25, cpuLimit: 0.5, memoryMiB: 64, memoryLimitMiB: 256 });
    try {
      assert.equal(await cgroupFile(sb.sandboxId, "memory", "memory.limit_in_bytes"), String(256 * 1024 * 1024));
      assert.equal(await cgroupFile(sb.sandboxId, "memory", "memory.soft_limit_in_bytes"), String(64 * 1024 * 1024));
      assert.equal(await cgroupFile(sb.sandboxId, "cpu", "cpu.cfs_quota_us"), "50000");
      assert.equal(await cgroupFile(sb.sandboxId, "cpu", "cpu.shares"), "256");
      const pids = await cgroupFile(sb.sandboxId, "pids", "pids.max");
      assert.ok(pids !== null && Number(pids) > 0, `pids.max is ${pids}`);
    } finally {
      await sb.terminate();
    }
  });

  test("an entrypoint killed by the OOM killer finishes with reason oom and 137", async () => {
    const sb = await client.sandboxes.create(app, undefined, {
      memoryLimitMiB: 64,
      command: ["python3", "-c", "x = bytearray(512 * 1024 * 1024); print(len(x))"],
    });
    assert.equal(await sb.wait(), 137);
    const finished = (await sb.events()).find((e) => e.type === "Finished");
    assert.equal(finished?.reason, "oom");
  });

  test("an exec killed by the OOM killer returns 137; the sandbox lives on", async () => {
    const sb = await client.sandboxes.create(app, undefined, { memoryLimitMiB: 64 });
    try {
      const p = await sb.exec(["python3", "-c", "x = bytearray(512 * 1024 * 1024)"]);
      assert.equal(await p.wait(), 137);
      const q = await sb.exec(["echo", "alive"]);
      assert.equal(await q.stdout.readText(), "alive\n");
    } finally {
      await sb.terminate();
    }
  });
});

describe("admission", () => {
  test("beyond capacity a create waits (Created), then starts when capacity frees; past the queue it fails", async () => {
    const a = await client.sandboxes.create(app, undefined, { cpu: 0.5 });
    const b = await client.sandboxes.create(app, undefined, { cpu: 0.5 });
    let cStarted = false;
    const c = client.sandboxes.create(app, undefined, { cpu: 0.5 }).then((sb) => {
      cStarted = true;
      return sb;
    });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(cStarted, false, "the third sandbox should wait for capacity");
    // The queue holds one: a fourth is refused at once.
    await assert.rejects(client.sandboxes.create(app, undefined, { cpu: 0.5 }), ResourceExhaustedError);
    await a.terminate({ wait: true });
    const cs = await c;
    const events = (await cs.events()).map((e) => e.type);
    assert.deepEqual(events.slice(0, 3), ["Created", "Scheduled", "Started"]);
    const p = await cs.exec(["true"]);
    assert.equal(await p.wait(), 0);
    await b.terminate();
    await cs.terminate();
  });

  test("a sandbox asking for more than the host has is refused", async () => {
    await assert.rejects(client.sandboxes.create(app, undefined, { cpu: 4 }), (err: unknown) => {
      assert.ok(err instanceof ResourceExhaustedError);
      assert.match((err as Error).message, /more than this host offers/);
      return true;
    });
  });
});
