// Smoke run of the benchmark (`npm run bench -- --quick`): a few iterations
// of every section against the real server, runc, crun and podman. It must
// finish and write its JSON; no figure is asserted (timings do not belong in
// the test suite).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO } from "../support/server.js";

test("the benchmark's quick mode runs every section and writes its results", { timeout: 300_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "sbx-bench-smoke-"));
  try {
    const out = join(dir, "quick.json");
    // As `npm run bench` runs it: compiled, with plain node (a loader's source maps cost the SDK's streams 2-3x their CPU).
    execFileSync(process.execPath, [join(REPO, "node_modules/typescript/bin/tsc"), "-p", "bench"], { cwd: REPO, stdio: "inherit" });
    const child = spawn(process.execPath, ["bench/dist/run.js", "--quick", "--out", out], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
    const timer = setTimeout(() => child.kill("SIGTERM"), 280_000); // SIGTERM: the benchmark cleans up
    const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
    clearTimeout(timer);
    assert.equal(code, 0, `bench --quick exited ${code}:\n${output.slice(-6000)}`);

    const json = JSON.parse(await readFile(out, "utf8"));
    assert.equal(json.quick, true);
    for (const key of ["cpuModel", "cores", "memoryMiB", "kernel", "runc", "node", "date"]) assert.ok(key in json.machine, `machine.${key}`);
    for (const s of ["cold", "warm", "exec", "throughput", "burst", "density"]) {
      assert.ok(s in json.sections, `section ${s}`);
      assert.equal(json.sections[s].error, undefined, `section ${s} failed: ${json.sections[s].error}`);
    }
    assert.ok(json.table.length > 10, "the table has rows");
    assert.match(output, /sbx create \+ exec/);
    assert.deepEqual(json.leftoverMounts, []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
