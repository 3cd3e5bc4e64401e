// The spare-disk pool (packages/server/src/runtime/disk-pool.ts) with the
// real mkfs.ext4 and loop mounts: demand-driven refills, a spare arrives as a
// dir with its empty ext4 already mounted, complete spares survive a restart
// while unfinished ones or ones of another size are unmounted and removed,
// and close() leaves nothing mounted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskPool } from "../../packages/server/src/runtime/disk-pool.js";
import { removeDisk } from "../../packages/server/src/runtime/disk.js";
import { diskPathsIn } from "../../packages/server/src/runtime/rootfs.js";
import { mountsUnder } from "../support/leaks.js";

const MiB = 1024 * 1024;
const skip = process.getuid?.() !== 0 ? "needs root" : false;

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Complete spares: dirs not named .tmp whose disk/ is mounted. */
const spares = (dir: string) => readdirSync(dir).filter((n) => !n.endsWith(".tmp") && mountsUnder(join(dir, n, "disk")).length === 1);

test("disk pool: empty until asked, then refilled with mounted spares; a take is a rename", { skip }, async () => {
  const root = mkdtempSync(join(tmpdir(), "sbx-disk-pool-"));
  const dir = join(root, "pool");
  const taken = [join(root, "a"), join(root, "b")];
  let loop: string | undefined;
  try {
    const logs: string[] = [];
    const pool = new DiskPool(dir, 64 * MiB, 2, (m) => logs.push(m));
    assert.deepEqual(readdirSync(dir), [], "nothing is made before a create asks");
    assert.equal(pool.takeAs(taken[0]!, () => assert.fail("no spare to prepare")), false, "none ready: the caller makes its own");
    await waitFor(() => pool.readyCount === 2);
    assert.equal(spares(dir).length, 2);

    assert.equal(
      pool.takeAs(taken[0]!, (spare) => writeFileSync(join(spare, "state.json"), "{}")),
      true,
    );
    const d = diskPathsIn(taken[0]!);
    assert.equal(readFileSync(join(taken[0]!, "state.json"), "utf8"), "{}", "prepare wrote into the spare before the move");
    assert.deepEqual(mountsUnder(taken[0]!), [d.disk], "the disk moved with its dir, still mounted");
    assert.equal(statSync(d.diskImage).size, 64 * MiB);
    assert.deepEqual(readdirSync(d.disk), ["lost+found"], "an empty filesystem");
    const mountLine = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === d.disk)!;
    loop = / - ext4 \/dev\/(loop\d+) /.exec(mountLine)?.[1];
    assert.ok(loop, mountLine);
    assert.equal(readFileSync(`/sys/block/${loop}/loop/dio`, "utf8").trim(), "1", "the loop device does direct I/O on the image");
    // removeDisk relies on it: the unmount frees the device, no scan of every loop device follows.
    assert.equal(readFileSync(`/sys/block/${loop}/loop/autoclear`, "utf8").trim(), "1", "the loop device goes with the mount");
    assert.match(mountLine.split(" ")[5]!, /nodev/);
    assert.match(mountLine.split(" ")[5]!, /nosuid/);
    writeFileSync(join(d.disk, "written"), "x"); // writable

    await waitFor(() => pool.readyCount === 2); // refilled after the take
    assert.equal(spares(dir).length, 2);
    assert.deepEqual(logs, []);

    // A server that dies keeps its spares mounted; the next one on this dir
    // hands them out at once and removes what is unfinished.
    mkdirSync(join(dir, "left-by-a-crash.tmp"));
    const next = new DiskPool(dir, 64 * MiB, 2, () => undefined);
    assert.equal(next.readyCount, 2);
    assert.equal(next.takeAs(taken[1]!, () => undefined), true);
    await waitFor(() => !readdirSync(dir).includes("left-by-a-crash.tmp"));
    await next.close();
    await pool.close(); // the first pool's record of the same spares: removing them twice is harmless
    assert.deepEqual(mountsUnder(dir), [], "close unmounts every spare");
    assert.deepEqual(readdirSync(dir), []);

    // Spares of another size (a changed --disk-size) are never handed out.
    const small = new DiskPool(dir, 32 * MiB, 1, () => undefined);
    small.takeAs(join(root, "none"), () => undefined);
    await waitFor(() => small.readyCount === 1);
    const big = new DiskPool(dir, 64 * MiB, 1, () => undefined);
    assert.equal(big.readyCount, 0);
    assert.equal(big.takeAs(join(root, "none"), () => undefined), false);
    await big.close();
    await small.close();
    assert.deepEqual(mountsUnder(dir), []);
    assert.deepEqual(readdirSync(dir), [], "the other size's spare was unmounted and removed");
  } finally {
    for (const t of taken) await removeDisk(diskPathsIn(t)).catch(() => undefined);
    for (const m of mountsUnder(root).reverse()) await removeDisk({ disk: m, diskImage: join(m, "..", "disk.img") }).catch(() => undefined);
    if (mountsUnder(root).length === 0) rmSync(root, { recursive: true, force: true });
  }
  assert.deepEqual(mountsUnder(root), []);
  let backing = "";
  try {
    backing = readFileSync(`/sys/block/${loop}/loop/backing_file`, "utf8");
  } catch {
    /* detached */
  }
  assert.ok(!backing.startsWith(root), `the taken disk's loop device was freed (${loop} still on ${backing.trim()})`);
});
