// The mount checks a destroy runs many times (packages/server/src/runtime):
// mountsUnder reads only the mount table's lines that mention the dirs, and
// isMountPoint compares device numbers. Both against real tmpfs mounts:
// nested, stacked, a sibling whose name starts the same, a space in a name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountsUnder, unmountAll } from "../../packages/server/src/runtime/rootfs.js";
import { isMountPoint } from "../../packages/server/src/runtime/disk.js";

const skip = process.getuid?.() !== 0 ? "needs root" : false;
const mountTmpfs = (at: string) => execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m", "sbx-test", at]);

test("mountsUnder and isMountPoint: nested, stacked and look-alike mounts", { skip }, async () => {
  const root = mkdtempSync(join(tmpdir(), "sbx-mounts-"));
  const a = join(root, "with space");
  const sibling = join(root, "with space2");
  const plain = join(root, "plain");
  try {
    for (const d of [a, sibling, plain]) mkdirSync(d);
    mountTmpfs(a);
    mkdirSync(join(a, "inner"));
    mountTmpfs(join(a, "inner"));
    mountTmpfs(join(a, "inner")); // stacked on the same point
    mountTmpfs(sibling);

    assert.deepEqual(mountsUnder(a), [join(a, "inner"), join(a, "inner"), a], "deepest first, each stacked mount listed");
    assert.deepEqual(mountsUnder(sibling), [sibling], "a dir whose name only starts the same is not under it");
    assert.deepEqual(mountsUnder(plain), []);
    // A bind mount of a dir under it names it twice on one line (root and mount point): listed once.
    for (const d of ["src", "dst"]) mkdirSync(join(plain, d));
    execFileSync("mount", ["--bind", join(plain, "src"), join(plain, "dst")]);
    assert.deepEqual(mountsUnder(plain), [join(plain, "dst")]);
    assert.deepEqual(mountsUnder(join(root, "missing")), []);

    assert.equal(isMountPoint(a), true);
    assert.equal(isMountPoint(join(a, "inner")), true);
    assert.equal(isMountPoint(plain), false);
    assert.equal(isMountPoint(join(root, "missing")), false);

    await unmountAll(a);
    await unmountAll(sibling);
    await unmountAll(plain);
    assert.deepEqual(mountsUnder(root), []);
    assert.equal(isMountPoint(a), false);
  } finally {
    // Deepest first, each stacked one in turn, until none is left (bounded).
    for (let left = mountsUnder(root), i = 0; left.length > 0 && i < 20; left = mountsUnder(root), i++) {
      try {
        execFileSync("umount", ["-l", left[0]!]);
      } catch {
        /* gone meanwhile */
      }
    }
    if (mountsUnder(root).length === 0) rmSync(root, { recursive: true, force: true });
  }
});
