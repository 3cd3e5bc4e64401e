// Kill the server at each step of create, then start again: the sandbox is
// fully rolled back — no mount, loop device, network namespace, veth, cgroup,
// runtime container, directory or uid/address claim left — while a sandbox
// that was running is left alone. Runs the runtime (the local backend) in a
// child process that SIGKILLs itself at the step (LocalBackendOptions
// .faultInjection), then calls cleanupOrphans() as a restarted server does.
// Image unpack happens before the backend (images/) and is not covered here.
//
//   node --import tsx --test test/reliability/create-crash.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CREATE_STEPS, createLocalBackend, type LocalSandbox } from "../../packages/server/src/runtime/index.js";
import { leftovers, mountsUnder } from "../support/leaks.js";
import type { RuntimeSpec } from "../../packages/server/src/core/ports.js";
import { ensureBaseRootfsTar } from "../../packages/server/src/images/index.js";

const AGENT_DIR = join(import.meta.dirname, "../../agent/build");
// The Debian base rootfs the server builds its default image from (cached host-wide; built if missing).
const BASE_TAR = process.env.SBX_BASE_TAR ?? (await ensureBaseRootfsTar());
const CHILD = join(import.meta.dirname, "create-crash-child.ts");

let tmp: string;
let dataDir: string;
let layer: string;

before(() => {
  tmp = mkdtempSync("/var/tmp/sbx-crash-");
  chmodSync(tmp, 0o711);
  dataDir = join(tmp, "data");
  layer = join(tmp, "layer");
  mkdirSync(layer);
  execFileSync("tar", ["-xf", BASE_TAR, "-C", layer, "--numeric-owner"]);
});

after(() => {
  if (tmp && mountsUnder(tmp).length === 0) rmSync(tmp, { recursive: true, force: true });
});

const spec = (sandboxId: string): RuntimeSpec => ({
  sandboxId,
  image: { imageId: "sha256:crash", layers: [layer], config: { env: [] } },
  env: {},
  memoryLimitBytes: 256 << 20,
  pidsLimit: 128,
  blockNetwork: false,
});

test("SIGKILL at each create step, then cleanupOrphans: fully rolled back; a running sandbox is kept", async () => {
  const backend = createLocalBackend({ dataDir, agentDir: AGENT_DIR, log: () => undefined });
  const survivor = (await backend.create(spec(`crash-keep-${process.pid}`))) as LocalSandbox;
  try {
    for (const step of CREATE_STEPS) {
      const id = `crash-${step}-${process.pid}`;
      const child = spawn(process.execPath, ["--import", "tsx", CHILD, dataDir, AGENT_DIR, layer, id, step], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout!.on("data", (d) => (out += d));
      child.stderr!.on("data", (d) => (out += d));
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on("exit", (c, s) => r([c, s])));
      assert.equal(signal, "SIGKILL", `step ${step}: the child should have died at the step (exit ${code}): ${out}`);
      // Something was left behind at this step (the test would prove nothing otherwise).
      assert.notDeepEqual(leftovers(dataDir, id), [], `step ${step}: nothing to clean up?`);

      // "Restart": a new backend on the same data dir, told which sandboxes run.
      const restarted = createLocalBackend({ dataDir, agentDir: AGENT_DIR, log: () => undefined });
      const cleaned = await restarted.cleanupOrphans([survivor.sandboxId]);
      assert.ok(cleaned.includes(id), `step ${step}: ${id} not cleaned (${cleaned.join(", ")})`);
      assert.deepEqual(leftovers(dataDir, id), [], `step ${step}: left behind`);
    }
    // The running sandbox was left alone and still serves.
    assert.ok(survivor.isAlive(), "the running sandbox survived the orphan cleanups");
    await survivor.exec({ execId: "after", argv: ["true"], env: {}, timeoutMs: 10_000, stdoutIgnore: false, stderrIgnore: false });
    for (let i = 0; i < 100 && !(await survivor.execStatus("after")); i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await survivor.execStatus("after"), { code: 0, reason: "exited" });
  } finally {
    await survivor.destroy();
    await backend.close?.(); // its spare disks (the children took some of them)
    // A child killed late may have made a spare of its own: a backend made
    // now adopts every complete one and its close removes them.
    await createLocalBackend({ dataDir, agentDir: AGENT_DIR, log: () => undefined }).close?.();
  }
  assert.deepEqual(leftovers(dataDir, survivor.sandboxId).filter((l) => !l.startsWith("dir ")), [], "the survivor's destroy left something");
  assert.deepEqual(mountsUnder(dataDir), [], "nothing of the disk pool stays mounted");
});
