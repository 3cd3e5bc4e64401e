// The guide's first examples, run as the user would run them: unchanged
// files (import line and class name aside) executed by node against a real
// server, with python:3.13-slim coming from a local registry mirror.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { join } from "node:path";
import { startRegistry, type Registry } from "../support/registry.js";
import { pushPythonSlim } from "../support/images.js";
import { REPO, startTestServer, type TestServer } from "../support/server.js";

const run = promisify(execFile);
let registry: Registry;
let server: TestServer;

before(async () => {
  registry = await startRegistry();
  await pushPythonSlim(registry.host);
  server = await startTestServer({ mirrors: { "docker.io": registry.url } });
});

after(async () => {
  await server?.stop();
  await registry?.stop();
});

async function runExample(file: string): Promise<string> {
  const { stdout } = await run(process.execPath, [join(REPO, "test/guide", file)], {
    cwd: REPO,
    env: { ...process.env, SBX_SERVER_URL: server.url, SBX_TOKEN: server.token, SBX_CONFIG: "/nonexistent" },
    timeout: 120_000,
  });
  return stdout;
}

test("guide: hello, then the date loop streamed line by line", async () => {
  const out = await runExample("hello.mjs");
  assert.match(out, /^hello\n\n(\d\d:\d\d:\d\d\n){10}$/, `unexpected output:\n${out}`);
});

test("guide: return codes print 42 and 137", async () => {
  const out = await runExample("return-codes.mjs");
  assert.equal(out, "42\n137\n");
});

test("the image came through the mirror, not from the internet", async () => {
  const c = server.client();
  const app = await c.apps.fromName("my-app", { createIfMissing: true });
  const sb = await c.sandboxes.create(app, c.images.fromRegistry("python:3.13-slim"));
  const p = await sb.exec(["python", "-c", "import sys; print(sys.version_info[0])"]);
  assert.equal(await p.stdout.readText(), "3\n");
  assert.equal(await sb.terminate({ wait: true }), 137);
});
