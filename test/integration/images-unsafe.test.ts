// Hostile layers from a real registry: every crafted archive is refused or
// confined, and nothing outside the layer dir is created or changed. Two
// sentinel trees are snapshotted (listing, type, mode, owner, size, mtime,
// sha256 of contents) before and after: one inside the data dir, at the
// place "../../../sentinel" reaches from a layer's unpack dir, one elsewhere
// in /tmp, named by absolute paths.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { gzipSync } from "node:zlib";
import { LayerUnpackError, createImageService } from "../../packages/server/src/images/index.js";
import { writeTar, type TarEntry } from "../../packages/server/src/images/tar.js";
import { pushImage, type LayerSpec } from "../support/images.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

let reg: TestRegistry;
let dataDir: string;
let outside: string;
let inside: string;
const services: { close(): void }[] = [];

async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for (const n of (await fsp.readdir(dir)).sort()) {
      const p = path.join(dir, n);
      const st = await fsp.lstat(p);
      let hash = "";
      if (st.isFile()) hash = createHash("sha256").update(await fsp.readFile(p)).digest("hex");
      if (st.isSymbolicLink()) hash = await fsp.readlink(p);
      out.push(`${path.relative(root, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} ${st.nlink} ${hash}`);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}

async function makeSentinel(dir: string): Promise<void> {
  await fsp.mkdir(path.join(dir, "sub"), { recursive: true });
  await fsp.writeFile(path.join(dir, "victim.txt"), "original\n");
  await fsp.writeFile(path.join(dir, "sub", "file"), "untouched\n");
  await fsp.chmod(path.join(dir, "victim.txt"), 0o644);
}

before(async () => {
  reg = await startRegistry();
  dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-unsafe-data-"));
  outside = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-unsafe-sentinel-"));
  inside = path.join(dataDir, "sentinel"); // <data>/layers/sha256/.tmp-x/../../../sentinel
  await makeSentinel(outside);
  await makeSentinel(inside);
});

after(async () => {
  for (const s of services) s.close();
  await reg?.stop();
  await fsp.rm(dataDir, { recursive: true, force: true });
  await fsp.rm(outside, { recursive: true, force: true });
});

const rel = "../../../sentinel";

/** name → [layer, what must happen]. */
function hostileCases(): Record<string, { layer: LayerSpec; refused?: RegExp }> {
  const t = (entries: TarEntry[]): LayerSpec => ({ tar: writeTar(entries) });
  const longDots = "d/".repeat(60) + "../".repeat(70) + "sentinel/pwned-pax"; // ≥ 100 bytes: goes in a pax path header
  return {
    "dot-dot name": { layer: t([{ name: `${rel}/pwned`, type: "file", data: "x" }]), refused: /'\.\.' component/ },
    "dot-dot in a pax path": { layer: t([{ name: longDots, type: "file", data: "x" }]), refused: /'\.\.' component/ },
    "absolute name": { layer: t([{ name: `${outside}/pwned`, type: "file", data: "x" }]), refused: /absolute path/ },
    "file through an absolute symlink": {
      layer: t([
        { name: "esc", type: "symlink", linkname: outside },
        { name: "esc/pwned", type: "file", data: "x" },
      ]),
      refused: /goes through the symlink "esc"/,
    },
    "overwrite through a relative symlink": {
      layer: t([
        { name: "a/up", type: "symlink", linkname: `../${rel}` },
        { name: "a/up/victim.txt", type: "file", data: "pwned\n" },
      ]),
      refused: /goes through the symlink "a\/up"/,
    },
    "dir through a symlink": {
      layer: t([
        { name: "s", type: "symlink", linkname: `${outside}/sub` },
        { name: "s/newdir/", type: "dir" },
      ]),
      refused: /goes through the symlink/,
    },
    "hard link out with dot-dot": { layer: t([{ name: "hl", type: "hardlink", linkname: `${rel}/victim.txt` }]), refused: /hard link target .*'\.\.' component/ },
    "hard link to an absolute path": { layer: t([{ name: "hl", type: "hardlink", linkname: `${outside}/victim.txt` }]), refused: /absolute path/ },
    "hard link through a symlink": {
      layer: t([
        { name: "sl", type: "symlink", linkname: outside },
        { name: "hl", type: "hardlink", linkname: "sl/victim.txt" },
      ]),
      refused: /goes through a symlink/,
    },
    "char device": { layer: t([{ name: "dev-mem", type: "char", devmajor: 1, devminor: 1 }]), refused: /device node/ },
    "block device": { layer: t([{ name: "disk", type: "block", devmajor: 8, devminor: 0 }]), refused: /device node/ },
  };
}

describe("hostile layers", { timeout: 300_000 }, () => {
  test("are refused or confined; nothing outside the layer dir is created or changed", async () => {
    const beforeOut = await snapshot(outside);
    const beforeIn = await snapshot(inside);
    const s = createImageService({ dataDir, layerLimits: { maxBytes: 1 << 20, maxEntries: 100 } });
    services.push(s);

    // Refused: each is an image of its own.
    const cases = hostileCases();
    let i = 0;
    for (const [name, c] of Object.entries(cases)) {
      const tag = `hostile/case:v${i++}`;
      await pushImage(reg.host, tag, { layers: [{ files: { "ok/first": "fine" } }, c.layer] });
      await assert.rejects(s.resolve({ kind: "registry", ref: `${reg.host}/${tag}` }), (e: unknown) => {
        assert.ok(e instanceof LayerUnpackError, `${name}: ${String(e)}`);
        assert.match((e as Error).message, c.refused!, name);
        return true;
      });
    }

    // Bounds: size (a gzip bomb: 64 MiB of zeros is 64 KiB compressed) and member count.
    const bomb = gzipSync(writeTar([{ name: "zeros", type: "file", data: Buffer.alloc(64 << 20) }]));
    await pushImage(reg.host, "hostile/bomb:v1", { layers: [{ tar: bomb }] });
    await assert.rejects(s.resolve({ kind: "registry", ref: `${reg.host}/hostile/bomb:v1` }), /larger than 1048576 bytes uncompressed/);
    const many = writeTar(Array.from({ length: 150 }, (_, k) => ({ name: `f${k}`, type: "file" as const, data: "" })));
    await pushImage(reg.host, "hostile/many:v1", { layers: [{ tar: many }] });
    await assert.rejects(s.resolve({ kind: "registry", ref: `${reg.host}/hostile/many:v1` }), /more than 100 members/);

    // Confined: accepted, but harmless.
    await pushImage(reg.host, "hostile/confined:v1", {
      layers: [
        {
          tar: writeTar([
            { name: "bin/", type: "dir" },
            { name: "bin/suid", type: "file", data: "#!/bin/sh\n", mode: 0o4755 },
            { name: "bin/sgid", type: "file", data: "#!/bin/sh\n", mode: 0o2755 },
            // A symlink pointing outside is just a symlink in the layer (it resolves inside a sandbox's root).
            { name: "etc/", type: "dir" },
            { name: "etc/alt", type: "symlink", linkname: `${outside}/victim.txt` },
            // A file member after a symlink of the same name is never written through the link.
            { name: "lnk", type: "symlink", linkname: `${outside}/victim.txt` },
            { name: "lnk", type: "file", data: "replaced the link\n" },
          ]),
        },
      ],
    });
    const ok = await s.resolve({ kind: "registry", ref: `${reg.host}/hostile/confined:v1` });
    const layer = ok.layers[0]!;
    assert.equal((await fsp.stat(path.join(layer, "bin/suid"))).mode & 0o7777, 0o755);
    assert.equal((await fsp.stat(path.join(layer, "bin/sgid"))).mode & 0o7777, 0o755);
    assert.equal(await fsp.readlink(path.join(layer, "etc/alt")), `${outside}/victim.txt`);
    // GNU tar defers links with absolute targets: "lnk" ends up the link itself, inside the layer.
    const lnk = await fsp.lstat(path.join(layer, "lnk"));
    assert.ok(lnk.isSymbolicLink() || lnk.isFile());

    // Nothing outside the layer dirs changed; no partial layer dir is left.
    assert.deepEqual(await snapshot(outside), beforeOut);
    assert.deepEqual(await snapshot(inside), beforeIn);
    const layerDirs = await fsp.readdir(path.join(dataDir, "layers/sha256"));
    assert.ok(!layerDirs.some((n) => n.startsWith(".tmp-")), layerDirs.join(" "));
    // Only the good first layers ("ok/first", shared by the refused images) and the confined layer were unpacked.
    assert.equal(layerDirs.length, 2, layerDirs.join(" "));
    const top = await fsp.readdir(dataDir);
    assert.deepEqual(top.sort(), ["content", "images", "layers", "sentinel"]);
  });
});
