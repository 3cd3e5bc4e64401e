// The guide's "Custom Images" JavaScript example, run as the user would run
// it (test/guide/custom-images.mjs: only the import line and class name
// changed) against a real server whose docker.io mirror is a local registry
// serving python:3.13-slim with pip. There is no internet here: the
// unchanged example's `pip install pandas numpy` cannot reach PyPI and must
// fail with a build error naming the command and showing pip's output; the
// variant whose RUN needs no network builds, and its sandbox runs.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { pushPythonSlimWithPip } from "../support/images.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { REPO, startTestServer, type TestServer } from "../support/server.js";

let registry: TestRegistry;
let server: TestServer;

before(async () => {
  registry = await startRegistry();
  await pushPythonSlimWithPip(registry.host);
  server = await startTestServer({ mirrors: { "docker.io": registry.url } });
});

after(async () => {
  await server?.stop();
  await registry?.stop();
});

function runExample(file: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO, "test/guide", file)],
      {
        cwd: REPO,
        env: { ...process.env, SBX_SERVER_URL: server.url, SBX_TOKEN: server.token, SBX_CONFIG: "/nonexistent" },
        timeout: 300_000,
      },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

test("guide: Custom Images, with a RUN that needs no internet, builds and runs", { timeout: 300_000 }, async () => {
  const { code, stderr } = await runExample("custom-images-offline.mjs");
  assert.equal(code, 0, stderr);
  // The detached sandbox runs the built image.
  const c = server.client();
  const app = await c.apps.fromName("my-app");
  const running = [];
  for await (const sb of c.sandboxes.list({ appId: app.appId })) running.push(sb);
  assert.equal(running.length, 1);
  const sb = running[0]!;
  const p = await sb.exec(["sh", "-c", "cat /built.json; cut -d' ' -f1 /pip-version"]);
  assert.equal(await p.stdout.readText(), '{"offline": true}\npip\n');
  await sb.terminate();
});

test("guide: Custom Images unchanged, PyPI unreachable: a build error naming the command, with pip's output", { timeout: 300_000 }, async () => {
  const t0 = Date.now();
  const { code, stdout, stderr } = await runExample("custom-images.mjs");
  assert.notEqual(code, 0, `the example succeeded without PyPI?\n${stdout}`);
  assert.match(stderr, /InvalidError: image build failed: RUN pip install pandas numpy exited with code 1/);
  // pip's own words about not finding pandas (it cannot reach the index).
  assert.match(stderr, /Could not find a version that satisfies the requirement pandas|No matching distribution found for pandas/);
  assert.ok(Date.now() - t0 < 120_000, `took ${Date.now() - t0} ms`);
});
