// The host spawner (packages/server/src/host-spawner.ts): the real sbx-agent
// in --host-spawner mode starting real host processes, and what happens when
// it dies. Needs root (its run dir is under /run) and the agent build.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostSpawner, SPAWNER_ROOT, useHostSpawner } from "../../packages/server/src/host-spawner.js";
import { directRunner, runTool, toolRunner } from "../../packages/server/src/run-tool.js";

const AGENT = join(import.meta.dirname, "../../agent/build/sbx-agent");
const skip = process.getuid?.() !== 0 ? "needs root" : !existsSync(AGENT) ? "no agent build (make -C agent)" : false;
const log: string[] = [];

/** The pids of this process's children that are host spawners. */
function spawnerChildren(): number[] {
  return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--host-spawner");
      } catch {
        return false;
      }
    })
    .map(Number);
}
// The spawner inherits the server's environment when it starts.
process.env.SPAWNER_TEST_VAR = "from-the-server";

describe("host spawner", { skip }, () => {
  let s: HostSpawner;
  const tmp = mkdtempSync(join(tmpdir(), "sbx-spawner-test-"));
  before(async () => {
    s = await HostSpawner.start(AGENT, (m) => log.push(m));
  });
  after(async () => {
    s.close();
    rmSync(tmp, { recursive: true, force: true });
    // close() sends SIGKILL and returns: let the process go, or the next
    // test could take it for the spawner it starts itself.
    await waitFor(() => spawnerChildren().length === 0);
  });

  test("exit code, stdout and the tail of stderr of a host process; its files are removed", async () => {
    const r = await s.run("sh", ["-c", "echo out; echo err >&2; exit 3"], {});
    assert.deepEqual(r, { code: 3, signal: null, stdout: "out\n", stderr: "err\n" });
    assert.deepEqual(readdir(join(SPAWNER_ROOT, String(process.pid), "procs")), [], "per-run files are removed");
  });

  test("input on stdin (larger than the pipe and the agent's buffer), cwd, and the server's environment", async () => {
    const input = "x".repeat(3 << 20) + "\nend\n";
    const r = await s.run("sh", ["-c", 'wc -c; pwd; echo "$SPAWNER_TEST_VAR"'], { input, cwd: tmp });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${input.length}\n${tmp}\nfrom-the-server\n`);
  });

  test("outputFile: the tool's stdout and stderr are appended to the file", async () => {
    const file = join(tmp, "console.log");
    for (const word of ["one", "two"]) {
      const r = await s.run("sh", ["-c", `echo ${word}; echo ${word}-err >&2`], { outputFile: file });
      assert.equal(r.code, 0);
      assert.equal(r.stdout, "");
    }
    assert.equal(readFileSync(file, "utf8"), "one\none-err\ntwo\ntwo-err\n");
  });

  test("a missing command fails like a missing command; a signal is reported as one", async () => {
    const missing = await s.run("sbx-no-such-tool", [], {});
    assert.equal(missing.code, 127);
    assert.match(missing.stderr, /sbx-no-such-tool/);
    const killed = await s.run("sh", ["-c", "kill -KILL $$"], {});
    assert.equal(killed.code, null);
    assert.equal(killed.signal, "signal 9");
  });

  test("many at once", async () => {
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => s.run("sh", ["-c", `echo ${i}`], {})));
    assert.deepEqual(
      rs.map((r) => r.stdout),
      rs.map((_, i) => `${i}\n`),
    );
  });
});

describe("useHostSpawner", { skip }, () => {
  test("routes runTool through one shared spawner; when the spawner dies, runs fall back to forking the server", async () => {
    const release1 = await useHostSpawner(AGENT, (m) => log.push(m));
    const release2 = await useHostSpawner(AGENT, (m) => log.push(m));
    try {
      const spawner = toolRunner();
      assert.ok(spawner instanceof HostSpawner, "compose() hands tools to the spawner");
      const children = spawnerChildren();
      assert.equal(children.length, 1, "one spawner, a child of this process");
      const pid = children[0]!;
      // The tool's parent is the spawner, not this process.
      const ppid = (await runTool("sh", ["-c", "echo $PPID"], {}, (m) => new Error(m))).trim();
      assert.equal(Number(ppid), pid);

      release1();
      assert.equal(toolRunner(), spawner, "still used while another server holds it");
      process.kill(pid, "SIGKILL");
      await waitFor(() => toolRunner() === directRunner);
      assert.equal((await runTool("sh", ["-c", "echo still"], {}, (m) => new Error(m))).trim(), "still");
      assert.ok(log.some((m) => /host spawner exited/.test(m)), "the fallback is logged");
    } finally {
      release1();
      release2();
    }
  });
});

function readdir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}
