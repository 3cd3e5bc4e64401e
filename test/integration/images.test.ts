// Image subsystem against a real docker-registry and the real (host-wide,
// cached) mmdebstrap base. Needs root, docker-registry, skopeo, mmdebstrap,
// attr (setfattr/getfattr), GNU tar.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as http from "node:http";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  BaseImageError,
  DigestMismatchError,
  ImageNotFoundError,
  ImageRefError,
  LayerUnpackError,
  RegistryAuthError,
  createImageService,
} from "../../packages/server/src/images/index.js";
import { writeTar } from "../../packages/server/src/images/tar.js";
import { pushImage, pushPythonSlim, type LayerSpec } from "../support/images.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";

let reg: TestRegistry;
const tmpDirs: string[] = [];
const services: Array<{ close(): void }> = [];

async function dataDir(): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-images-test-"));
  tmpDirs.push(d);
  return d;
}

function service(dir: string, extra: Parameters<typeof createImageService>[0] | object = {}) {
  const s = createImageService({ dataDir: dir, ...extra });
  services.push(s);
  return s;
}

async function listLayerDirs(dir: string): Promise<string[]> {
  return (await fsp.readdir(path.join(dir, "layers", "sha256"))).filter((n) => !n.startsWith("."));
}

const THREE_LAYERS: LayerSpec[] = [
  { files: { "etc/base.txt": "base", "a/x": "x1", "a/y": "y1", "d/1": "one", "d/2": "two", "keep/k": "k" } },
  { files: { "a/.wh.x": "", "d/.wh..wh..opq": "", "d/new": "new", "b/added": "added" } },
  { files: { "etc/top.txt": "top", "keep/.wh.k": "" } },
];

before(async () => {
  reg = await startRegistry();
  await pushImage(reg.host, "test/three:v1", { layers: THREE_LAYERS, config: { cmd: ["/bin/sh"], workdir: "/work", env: ["A=1"] } });
});

after(async () => {
  for (const s of services) s.close();
  await reg?.stop();
  for (const d of tmpDirs) await fsp.rm(d, { recursive: true, force: true });
});

describe("registry pulls", () => {
  test("three layers with whiteouts and an opaque dir become overlayfs lowerdirs", async () => {
    const dir = await dataDir();
    const img = await service(dir).resolve({ kind: "registry", ref: `${reg.host}/test/three:v1` });
    assert.match(img.imageId, /^sha256:[a-f0-9]{64}$/);
    assert.equal(img.layers.length, 3);
    assert.deepEqual(img.config, { env: ["A=1"], workdir: "/work", cmd: ["/bin/sh"] });
    const [l1, l2, l3] = img.layers as [string, string, string];
    for (const l of img.layers) assert.ok(path.isAbsolute(l) && l.startsWith(path.join(dir, "layers", "sha256")));
    assert.equal(await fsp.readFile(path.join(l1, "a/x"), "utf8"), "x1");

    // whiteout: .wh.x removed, x is a 0/0 char device
    const wx = await fsp.lstat(path.join(l2, "a/x"));
    assert.ok(wx.isCharacterDevice());
    assert.equal(wx.rdev, 0);
    await assert.rejects(fsp.lstat(path.join(l2, "a/.wh.x")));
    const wk = await fsp.lstat(path.join(l3, "keep/k"));
    assert.ok(wk.isCharacterDevice());
    // opaque dir: marker removed, xattr set
    await assert.rejects(fsp.lstat(path.join(l2, "d/.wh..wh..opq")));
    const xattr = execFileSync("getfattr", ["--absolute-names", "--only-values", "-n", "trusted.overlay.opaque", path.join(l2, "d")]).toString();
    assert.equal(xattr, "y");
    assert.equal(await fsp.readFile(path.join(l2, "d/new"), "utf8"), "new");

    // And overlayfs agrees.
    const mnt = await dataDir();
    execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${l3}:${l2}:${l1}`, mnt]);
    try {
      assert.deepEqual((await fsp.readdir(path.join(mnt, "a"))).sort(), ["y"]);
      assert.deepEqual((await fsp.readdir(path.join(mnt, "d"))).sort(), ["new"]);
      assert.deepEqual(await fsp.readdir(path.join(mnt, "keep")), []);
      assert.equal(await fsp.readFile(path.join(mnt, "etc/base.txt"), "utf8"), "base");
      assert.equal(await fsp.readFile(path.join(mnt, "etc/top.txt"), "utf8"), "top");
    } finally {
      execFileSync("umount", [mnt]);
    }

    // resolve by id
    const byId = await service(dir).resolve({ kind: "id", imageId: img.imageId });
    assert.deepEqual(byId, img);
  });

  test("pulling twice downloads and unpacks once", async () => {
    const dir = await dataDir();
    const s1 = service(dir);
    const [a, b] = await Promise.all([
      s1.resolve({ kind: "registry", ref: `${reg.host}/test/three:v1` }),
      s1.resolve({ kind: "registry", ref: `${reg.host}/test/three:v1` }),
    ]);
    assert.deepEqual(a, b);
    assert.equal((await listLayerDirs(dir)).length, 3);
    const stamp = async () =>
      Promise.all([
        ...a.layers.map(async (l) => (await fsp.stat(l)).ino + ":" + (await fsp.stat(l)).mtimeMs),
        ...(await fsp.readdir(path.join(dir, "content/blobs/sha256"))).map(async (n) => {
          const st = await fsp.stat(path.join(dir, "content/blobs/sha256", n));
          return `${n}:${st.ino}:${st.mtimeMs}`;
        }),
      ]);
    const before = await stamp();
    // same process: cached; new process (new service, same data dir): checks the registry, reuses blobs & layers
    await s1.resolve({ kind: "registry", ref: `${reg.host}/test/three:v1` });
    const c = await service(dir).resolve({ kind: "registry", ref: `${reg.host}/test/three:v1` });
    assert.deepEqual(c, a);
    assert.deepEqual(await stamp(), before);
    assert.equal((await listLayerDirs(dir)).length, 3);
    assert.deepEqual(await fsp.readdir(path.join(dir, "content/ingest")), []);
  });

  test("a corrupted blob in the registry is a digest error and leaves nothing behind", async () => {
    const pushed = await pushImage(reg.host, "test/corrupt:v1", { layers: [{ files: { "f/corrupt-me": "some data ".repeat(100) } }] });
    const data = reg.blobDataPath(pushed.layers[0]!.digest);
    const buf = await fsp.readFile(data);
    buf[buf.length - 20] ^= 0xff;
    await fsp.writeFile(data, buf);
    const dir = await dataDir();
    await assert.rejects(service(dir).resolve({ kind: "registry", ref: `${reg.host}/test/corrupt:v1` }), (e: unknown) => {
      assert.ok(e instanceof DigestMismatchError, String(e));
      assert.match((e as Error).message, /test\/corrupt:v1/);
      assert.match((e as Error).message, new RegExp(pushed.layers[0]!.digest));
      return true;
    });
    await assert.rejects(fsp.stat(path.join(dir, "content/blobs/sha256", pushed.layers[0]!.digest.slice(7))));
    assert.deepEqual(await fsp.readdir(path.join(dir, "content/ingest")), []);
  });

  test("unknown tag and unknown repository are ImageNotFoundError naming ref and host", async () => {
    const s = service(await dataDir());
    for (const ref of [`${reg.host}/test/three:nope`, `${reg.host}/no/such:v1`]) {
      await assert.rejects(s.resolve({ kind: "registry", ref }), (e: unknown) => {
        assert.ok(e instanceof ImageNotFoundError, String(e));
        assert.ok((e as Error).message.includes(ref));
        assert.ok((e as Error).message.includes(reg.host));
        return true;
      });
    }
    await assert.rejects(s.resolve({ kind: "id", imageId: "sha256:" + "0".repeat(64) }), ImageNotFoundError);
    await assert.rejects(s.resolve({ kind: "id", imageId: "../../etc/passwd" }), ImageRefError);
    await assert.rejects(s.resolve({ kind: "registry", ref: "Bad:ref:x" }), ImageRefError);
  });

  test("a layer with a '..' member is refused and nothing is written outside", async () => {
    const evil = writeTar([
      { name: "ok.txt", type: "file", data: "ok" },
      { name: "../escaped.txt", type: "file", data: "evil" },
    ]);
    await pushImage(reg.host, "test/evil:v1", { layers: [{ tar: evil }] });
    const dir = await dataDir();
    await assert.rejects(service(dir).resolve({ kind: "registry", ref: `${reg.host}/test/evil:v1` }), (e: unknown) => {
      assert.ok(e instanceof LayerUnpackError, String(e));
      assert.match((e as Error).message, /'\.\.' component/);
      return true;
    });
    await assert.rejects(fsp.stat(path.join(dir, "layers/sha256/escaped.txt")));
    await assert.rejects(fsp.stat(path.join(dir, "layers/escaped.txt")));
    assert.deepEqual(await fsp.readdir(path.join(dir, "layers/sha256")), []);
  });

  test("absolute member names (also via pax headers) are refused", async () => {
    const long = "/" + "x/".repeat(80) + "abs.txt";
    for (const [i, name] of ["/abs.txt", long].entries()) {
      await pushImage(reg.host, `test/abs:v${i}`, { layers: [{ tar: writeTar([{ name, type: "file", data: "evil" }]) }] });
      const dir = await dataDir();
      await assert.rejects(service(dir).resolve({ kind: "registry", ref: `${reg.host}/test/abs:v${i}` }), /absolute path/);
      assert.deepEqual(await fsp.readdir(path.join(dir, "layers/sha256")), []);
    }
  });

  test("bearer token auth: anonymous refused, wrong password rejected, right password accepted", async () => {
    // A fake registry speaking just enough of the token protocol.
    const srv = http.createServer((req, res) => {
      const base = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
      if (req.url!.startsWith("/token")) {
        const u = new URL(req.url!, base);
        assert.equal(u.searchParams.get("service"), "fake");
        assert.equal(u.searchParams.get("scope"), "repository:private/img:pull");
        if (req.headers.authorization === `Basic ${Buffer.from("alice:secret").toString("base64")}`) {
          res.setHeader("content-type", "application/json");
          return res.end(JSON.stringify({ token: "good-token" }));
        }
        res.statusCode = 401;
        return res.end();
      }
      if (req.headers.authorization !== "Bearer good-token") {
        res.statusCode = 401;
        res.setHeader("www-authenticate", `Bearer realm="${base}/token",service="fake",scope="repository:private/img:pull"`);
        return res.end();
      }
      res.statusCode = 404;
      res.end(JSON.stringify({ errors: [{ code: "MANIFEST_UNKNOWN" }] }));
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const host = `127.0.0.1:${(srv.address() as { port: number }).port}`;
      const s = service(await dataDir());
      const ref = `${host}/private/img:v1`;
      await assert.rejects(s.resolve({ kind: "registry", ref }), (e: unknown) => {
        assert.ok(e instanceof RegistryAuthError, String(e));
        assert.match((e as Error).message, /credentials are missing/);
        assert.ok((e as Error).message.includes(ref));
        return true;
      });
      await assert.rejects(s.resolve({ kind: "registry", ref, auth: { username: "alice", password: "wrong" } }), (e: unknown) => {
        assert.ok(e instanceof RegistryAuthError, String(e));
        assert.match((e as Error).message, /rejected the credentials for user "alice"/);
        return true;
      });
      // Past auth, the manifest is missing: ImageNotFoundError proves the token was used.
      await assert.rejects(s.resolve({ kind: "registry", ref, auth: { username: "alice", password: "secret" } }), ImageNotFoundError);
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });

  test("a registry that is not running is a RegistryError", async () => {
    const s = service(await dataDir());
    await assert.rejects(s.resolve({ kind: "registry", ref: "127.0.0.1:1/x:y" }), /cannot reach registry 127\.0\.0\.1:1/);
  });
});

describe("Debian base", { timeout: 600_000 }, () => {
  test("python:3.13-slim resolves through a docker.io mirror", async () => {
    await pushPythonSlim(reg.host);
    const dir = await dataDir();
    const img = await service(dir, { mirrors: { "docker.io": reg.url } }).resolve({ kind: "registry", ref: "python:3.13-slim" });
    assert.equal(img.layers.length, 1);
    const l = img.layers[0]!;
    assert.equal(await fsp.readlink(path.join(l, "usr/bin/python")), "python3");
    for (const f of ["usr/bin/python3", "bin/bash", "bin/sh", "bin/date", "bin/cat"]) await fsp.stat(path.join(l, f));
    assert.deepEqual(img.config.cmd, ["python3"]);
    const out = execFileSync("chroot", [l, "/usr/bin/python", "-c", "import sys; print(sys.version_info[:2])"]).toString();
    assert.equal(out.trim(), "(3, 11)");
  });

  test("debianSlim resolves; unsupported python versions are refused clearly", async () => {
    const dir = await dataDir();
    const s = service(dir);
    const [img, again] = await Promise.all([s.resolve({ kind: "debianSlim" }), s.resolve({ kind: "debianSlim", pythonVersion: "3.11" })]);
    assert.deepEqual(img, again);
    assert.equal(img.layers.length, 1);
    const l = img.layers[0]!;
    await fsp.stat(path.join(l, "usr/bin/python3"));
    assert.equal(await fsp.readlink(path.join(l, "usr/bin/python")), "python3");
    assert.ok((await fsp.stat(path.join(l, "dev"))).isDirectory());
    assert.ok((await fsp.stat(path.join(l, "etc/ssl/certs/ca-certificates.crt"))).size > 0);
    assert.deepEqual(img.config, { env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], cmd: ["/bin/bash"] });
    assert.deepEqual(await service(dir).resolve({ kind: "id", imageId: img.imageId }), img);
    // A second data dir gets the same image id from the host-wide cache.
    const other = await service(await dataDir()).resolve({ kind: "debianSlim" });
    assert.equal(other.imageId, img.imageId);
    await assert.rejects(s.resolve({ kind: "debianSlim", pythonVersion: "3.12" }), (e: unknown) => {
      assert.ok(e instanceof BaseImageError);
      assert.match((e as Error).message, /"3\.12" is not available.*3\.11/);
      return true;
    });
  });
});
