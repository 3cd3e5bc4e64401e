// The spare-disk pool (packages/server/src/runtime/disk-pool.ts) with the
// real mkfs.ext4: demand-driven refills, complete images only, images of
// another size or left unfinished by a crash are removed, and a spare is a
// fresh, empty ext4 filesystem.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskPool } from "../../packages/server/src/runtime/disk-pool.js";

const MiB = 1024 * 1024;
const skip = process.getuid?.() !== 0 ? "needs root" : false;

async function waitFor(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("disk pool: empty until asked, then refilled to its size with formatted images", { skip }, async () => {
  const root = mkdtempSync(join(tmpdir(), "sbx-disk-pool-"));
  const dir = join(root, "pool");
  try {
    const logs: string[] = [];
    const pool = new DiskPool(dir, 64 * MiB, 2, (m) => logs.push(m));
    assert.deepEqual(readdirSync(dir), [], "nothing is made before a create asks");
    assert.equal(pool.takeInto(join(root, "a.img")), false, "none ready: the caller formats its own");
    await waitFor(() => readdirSync(dir).filter((n) => n.endsWith(".img")).length === 2);
    assert.equal(pool.takeInto(join(root, "b.img")), true);
    assert.equal(statSync(join(root, "b.img")).size, 64 * MiB);
    // A fresh ext4 that no one mounted: its superblock says so.
    const info = execFileSync("dumpe2fs", ["-h", join(root, "b.img")], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    assert.match(info, /Filesystem state:\s+clean/);
    assert.match(info, /Mount count:\s+0/);
    assert.doesNotMatch(info, /has_journal/);
    await waitFor(() => readdirSync(dir).filter((n) => n.endsWith(".img")).length === 2); // refilled after the take
    await pool.close();
    assert.deepEqual(logs, []);

    // A new server keeps complete images of its size, drops the rest.
    writeFileSync(join(dir, "left-by-a-crash.tmp"), "");
    const other = new DiskPool(dir, 32 * MiB, 2, () => undefined);
    assert.deepEqual(readdirSync(dir), [], "images of another size and unfinished ones are removed");
    await other.close();
    const same = new DiskPool(dir, 64 * MiB, 2, () => undefined);
    assert.equal(same.takeInto(join(root, "c.img")), false);
    await same.close();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  assert.ok(!existsSync(root));
});
