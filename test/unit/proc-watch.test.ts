// ProcessWatch on real processes: alive while the process runs, dead as soon
// as it exits even while it waits to be reaped (this host's init reaps
// orphans 1–2 s late), never alive for a start time that is not its own, and
// one open file however often it is asked.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { ProcessWatch, parseProcStat } from "../../packages/server/src/runtime/proc-watch.js";

const startTimeOf = (pid: number): string => parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"))!.startTime;
const openFds = (): number => readdirSync("/proc/self/fd").length;

test("parses the state and start time, whatever the command's name holds", () => {
  const text = "42 (a) (b c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 18446744073709551615\n";
  assert.deepEqual(parseProcStat(text), { state: "S", startTime: "123456" });
  assert.equal(parseProcStat("garbage"), null);
});

test("alive while running; one open file for many looks; dead once it exits", async () => {
  const child = spawn("sleep", ["30"], { stdio: "ignore" });
  const pid = child.pid!;
  const watch = new ProcessWatch(pid, startTimeOf(pid));
  try {
    const before = openFds();
    for (let i = 0; i < 50; i++) assert.equal(watch.alive(), true);
    assert.equal(openFds(), before + 1, "the watch keeps one file open");
    assert.equal(new ProcessWatch(pid, "1").alive(), false, "another start time is another process");
  } finally {
    child.kill("SIGKILL");
  }
  await new Promise((r) => child.once("exit", r));
  assert.equal(watch.alive(), false);
});

test("an orphan that exited is dead to the watch before anyone reaps it", async () => {
  // `sh` starts the sleep in the background and exits: the sleep becomes
  // init's child, and init reaps it when it gets round to it.
  const pid = Number(execFileSync("sh", ["-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"], { encoding: "utf8" }).trim());
  const watch = new ProcessWatch(pid, startTimeOf(pid));
  assert.equal(watch.alive(), true);
  const t0 = Date.now();
  while (watch.alive() && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(watch.alive(), false, "the orphan never read as dead");
  watch.close();
});
