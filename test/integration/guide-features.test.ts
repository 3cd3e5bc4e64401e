// The guide's JavaScript examples beyond the first ones (timeouts, readiness
// probes, volumes, secrets, entrypoint, fromId, named sandboxes, tags and
// list, detach), run as the user would run them: the files in test/guide,
// unchanged but for the import line and class name, executed by node against
// a real server, with python:3.13-slim coming from a local registry mirror.
// Each test checks what the example prints and, through the SDK, what it left
// behind; then it terminates what the example left running in "my-app".
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { NotFoundError, type App, type SbxClient } from "sbx";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { pushPythonSlim } from "../support/images.js";
import { REPO, startTestServer, type TestServer } from "../support/server.js";

let registry: TestRegistry;
let server: TestServer;
let client: SbxClient;
let app: App;

before(async () => {
  registry = await startRegistry();
  await pushPythonSlim(registry.host);
  server = await startTestServer({ mirrors: { "docker.io": registry.url } });
  client = server.client();
  app = await client.apps.fromName("my-app", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
  await registry?.stop();
});

afterEach(async () => {
  for (const id of await running()) await (await client.sandboxes.fromId(id)).terminate().catch(() => undefined);
});

interface Run {
  stdout: string;
  stderr: string;
  /** The exit code of node (0 on success). */
  code: number;
  ms: number;
}

/** Runs a guide example with node; never throws on its failure (the caller checks). */
function runExample(file: string, timeoutMs = 120_000): Promise<Run> {
  const start = Date.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO, "test/guide", file)],
      {
        cwd: REPO,
        env: { ...process.env, SBX_SERVER_URL: server.url, SBX_TOKEN: server.token, SBX_CONFIG: "/nonexistent" },
        timeout: timeoutMs,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ stdout, stderr, code, ms: Date.now() - start });
      },
    );
  });
}

function ok(r: Run): void {
  assert.equal(r.code, 0, `the example failed (${r.code}):\n${r.stderr}`);
  assert.equal(r.stderr, "", "nothing on stderr");
}

/** Ids of the running sandboxes of "my-app". */
async function running(): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const sb of client.sandboxes.list({ appId: app.appId })) ids.add(sb.sandboxId);
  return ids;
}

/** Runs an example that leaves one sandbox running; returns the run and that sandbox's id. */
async function runLeavingOne(file: string): Promise<{ run: Run; id: string }> {
  const before = await running();
  const run = await runExample(file);
  ok(run);
  const added = [...(await running())].filter((id) => !before.has(id));
  assert.equal(added.length, 1, `one new running sandbox (got ${added.join(", ") || "none"})`);
  return { run, id: added[0]! };
}

test("guide: timeouts — a 10-minute sandbox, detached, keeps running", async () => {
  const { run, id } = await runLeavingOne("timeouts.mjs");
  assert.equal(run.stdout, "");
  const sb = await client.sandboxes.fromId(id);
  assert.equal(await sb.poll(), null);
  assert.equal(sb.state, "started");
});

test("guide: TCP readiness probe — waits for http.server on 8080, then terminates", async () => {
  const before = await running();
  const run = await runExample("readiness-tcp.mjs");
  ok(run);
  assert.equal(run.stdout, "");
  assert.deepEqual(await running(), before, "terminate left nothing running");
});

test("guide: exec readiness probe — waitUntilReady returns once /tmp/ready exists (after ~5 s)", async () => {
  const run = await runExample("readiness-exec.mjs");
  ok(run);
  assert.equal(run.stdout, "");
  assert.ok(run.ms >= 5_000, `waitUntilReady waited for the 5 s sleep (the example took ${run.ms} ms)`);
  assert.ok(run.ms < 60_000, `and not much longer (${run.ms} ms)`);
});

test("guide: waitUntilReady in try/catch — a sandbox without a probe fails to become ready", async () => {
  const before = await running();
  const run = await runExample("readiness-catch.mjs");
  ok(run);
  assert.equal(run.stdout, "Sandbox failed to become ready\n");
  assert.ok(run.ms < 60_000, `the error came at once, not after a timeout (${run.ms} ms)`);
  assert.deepEqual(await running(), before, "the catch block terminated it");
});

test("guide: volumes — my-volume mounted at /data, workdir /repo", async () => {
  await client.volumes.fromName("my-volume", { createIfMissing: true });
  const { run, id } = await runLeavingOne("volumes.mjs");
  assert.equal(run.stdout, "");
  const sb = await client.sandboxes.fromId(id);
  const p = await sb.exec(["sh", "-c", "pwd && echo from-the-guide > /data/guide.txt && cat /data/guide.txt"]);
  assert.equal(await p.stdout.readText(), "/repo\nfrom-the-guide\n");
  assert.equal(await p.wait(), 0);
  await sb.terminate({ wait: true });
  // The data outlived the sandbox.
  const vol = await client.volumes.fromName("my-volume");
  const sb2 = await client.sandboxes.create(app, client.images.fromRegistry("python:3.13-slim"), { volumes: { "/v": vol } });
  const cat = await sb2.exec(["cat", "/v/guide.txt"]);
  assert.equal(await cat.stdout.readText(), "from-the-guide\n");
  await sb2.terminate();
});

test("guide: inline secrets — prints hello", async () => {
  const { run } = await runLeavingOne("secrets.mjs");
  assert.equal(run.stdout, "hello\n\n");
  assert.doesNotMatch(server.log(), /MY_SECRET[^\n]*hello/, "the value is not in the server's log");
});

test("guide: entrypoint — http.server runs as the entrypoint until its 10 s timeout", async () => {
  const { run, id } = await runLeavingOne("entrypoint.mjs");
  assert.equal(run.stdout, "");
  const sb = await client.sandboxes.fromId(id);
  // The entrypoint serves on 8080.
  const probe = await sb.exec([
    "python3",
    "-c",
    "import time, urllib.request\n" +
      "for _ in range(100):\n" +
      "    try:\n" +
      "        print(urllib.request.urlopen('http://127.0.0.1:8080/').status); break\n" +
      "    except OSError: time.sleep(0.05)\n",
  ]);
  assert.equal(await probe.stdout.readText(), "200\n");
  assert.equal(await sb.wait(), 124, "the sandbox's timeout ended it");
  assert.equal(sb.finishReason, "timeout");
  const finished = (await sb.events()).find((e) => e.type === "Finished");
  assert.equal(finished?.reason, "timeout");
});

test("guide: fromId — a second handle runs echo hello", async () => {
  const before = await running();
  const run = await runExample("from-id.mjs");
  ok(run);
  assert.equal(run.stdout, "hello\n\n");
  assert.deepEqual(await running(), before, "sb2.terminate() ended it");
});

test("guide: named sandboxes — the second create with the name throws AlreadyExistsError", async () => {
  const run = await runExample("named.mjs");
  assert.notEqual(run.code, 0, "the example fails");
  assert.equal(run.stdout, "");
  assert.match(run.stderr, /AlreadyExistsError/);
  assert.match(run.stderr, /my-name/, "the message names the sandbox");
  // sb1 is still running under the name; once it finished the name is free.
  const sb1 = await client.sandboxes.fromName("my-app", "my-name");
  assert.equal(sb1.name, "my-name");
  assert.equal((await running()).size, 1);
  await sb1.terminate({ wait: true });
  await assert.rejects(client.sandboxes.fromName("my-app", "my-name"), NotFoundError);
});

test("guide: fromName — finds the running sandbox of that name (console.assert holds)", async () => {
  const { run, id } = await runLeavingOne("from-name.mjs");
  assert.equal(run.stdout, "");
  assert.doesNotMatch(run.stderr, /Assertion failed/);
  assert.equal((await client.sandboxes.fromName("my-app", "my-name")).sandboxId, id);
});

test("guide: tagging and list — all, all, then only the latest", async () => {
  assert.equal((await running()).size, 0, "my-app starts empty");
  const run = await runExample("tags.mjs");
  ok(run);
  const lines = run.stdout.split("\n");
  assert.equal(lines.pop(), "");
  assert.equal(lines.length, 5, `five ids:\n${run.stdout}`);
  const all = new Set(lines.slice(0, 2));
  assert.equal(all.size, 2);
  assert.deepEqual(new Set(lines.slice(2, 4)), all, "major_version 1 matches both");
  const latest = lines[4]!;
  assert.ok(all.has(latest));
  const other = [...all].find((id) => id !== latest)!;
  assert.deepEqual(await (await client.sandboxes.fromId(latest)).getTags(), { major_version: "1", minor_version: "2" });
  assert.deepEqual(await (await client.sandboxes.fromId(other)).getTags(), { major_version: "1", minor_version: "1" });
  for (const id of all) assert.match(id, /^sb-/);
});

test("guide: detach — the script ends at once, the sandbox keeps running", async () => {
  const { run, id } = await runLeavingOne("detach.mjs");
  assert.equal(run.stdout, "");
  assert.ok(run.ms < 30_000, `node exited promptly after detach (${run.ms} ms)`);
  assert.equal(await (await client.sandboxes.fromId(id)).poll(), null);
});
