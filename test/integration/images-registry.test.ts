// The registry client against real registries: Debian's docker-registry
// demanding token auth (a token server issuing RS256 JWTs, see
// test/support/registry.ts), reached through a mirror; gzip, zstd and plain
// tar layers; a flaky proxy that cuts blob downloads (resumed with Range);
// blobs shared between images; an OCI index.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import { AuthError, type SbxClient } from "sbx";
import { createImageService } from "../../packages/server/src/images/index.js";
import { pushImage, type LayerSpec } from "../support/images.js";
import { startRegistry, type TestRegistry } from "../support/registry.js";
import { startTestServer, type TestServer } from "../support/server.js";
import { ensureBaseLayer } from "../../packages/server/src/images/base-image.js";

const CREDS = { username: "alice", password: "s3cret-pass" };
/** A registry name that does not resolve: only a mirror can serve it. */
const PRIVATE = "private.example:5000";

let authReg: TestRegistry;
let plainReg: TestRegistry;
let server: TestServer;
let client: SbxClient;
const tmpDirs: string[] = [];
const services: { close(): void }[] = [];

/** Five layers in the three encodings a registry may hold, on the Debian base (so a sandbox can run it). */
function fiveLayers(base: Awaited<ReturnType<typeof ensureBaseLayer>>): LayerSpec[] {
  return [
    { blob: base },
    { files: { "layers/2": "two (gzip)\n" }, compression: "gzip" },
    { files: { "layers/3": "three (zstd)\n" }, compression: "zstd" },
    { files: { "layers/4": "four (plain tar)\n" }, compression: "none" },
    { files: { "layers/5": "five (zstd)\n", "layers/big": "x".repeat(200_000) }, compression: "zstd" },
  ];
}

before(async () => {
  authReg = await startRegistry({ auth: CREDS });
  plainReg = await startRegistry();
  const base = await ensureBaseLayer();
  await pushImage(authReg.host, "team/five:v1", { layers: fiveLayers(base), config: { env: ["PATH=/usr/bin:/bin", "FIVE=5"] }, creds: CREDS });
  server = await startTestServer({ mirrors: { [PRIVATE]: authReg.url } });
  client = server.client();
});

after(async () => {
  for (const s of services) s.close();
  await server?.stop();
  await authReg?.stop();
  await plainReg?.stop();
  for (const d of tmpDirs) await fsp.rm(d, { recursive: true, force: true });
});

async function dataDir(): Promise<string> {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-images-reg-"));
  tmpDirs.push(d);
  return d;
}

describe("token auth through a mirror", { timeout: 300_000 }, () => {
  test("a 5-layer image (gzip, zstd, plain) from a registry that demands token auth", async () => {
    const app = await client.apps.fromName("it-images-registry", { createIfMissing: true });
    const secret = client.secrets.fromObject({ REGISTRY_USERNAME: CREDS.username, REGISTRY_PASSWORD: CREDS.password });
    const before = authReg.tokenRequests.length;
    const image = client.images.fromRegistry(`${PRIVATE}/team/five:v1`, secret);
    const sb = await client.sandboxes.create(app, image);
    try {
      const p = await sb.exec(["sh", "-c", "cat /layers/2 /layers/3 /layers/4 /layers/5; wc -c < /layers/big; echo $FIVE"]);
      assert.equal(await p.stdout.readText(), "two (gzip)\nthree (zstd)\nfour (plain tar)\nfive (zstd)\n200000\n5\n");
    } finally {
      await sb.terminate();
    }
    // The registry's token service was asked, with the user and the pull scope: the mirror served it.
    const asked = authReg.tokenRequests.slice(before);
    assert.ok(asked.some((r) => r.granted && r.user === "alice" && r.scopes.includes("repository:team/five:pull")), JSON.stringify(asked));
    const info = await client.images.inspect(image.imageId!);
    assert.equal(info.layers.length, 5);
  });

  test("a wrong password is an AuthError saying the credentials were rejected; none at all says they are missing", async () => {
    const app = await client.apps.fromName("it-images-registry", { createIfMissing: true });
    const wrong = client.secrets.fromObject({ REGISTRY_USERNAME: CREDS.username, REGISTRY_PASSWORD: "not-the-password" });
    await assert.rejects(client.sandboxes.create(app, client.images.fromRegistry(`${PRIVATE}/team/five:v1`, wrong)), (e: unknown) => {
      assert.ok(e instanceof AuthError, String(e));
      assert.match(e.message, /rejected the credentials for user "alice"/);
      assert.ok(e.message.includes(`${PRIVATE}/team/five:v1`), e.message);
      return true;
    });
    await assert.rejects(client.sandboxes.create(app, client.images.fromRegistry(`${PRIVATE}/team/five:v1`)), (e: unknown) => {
      assert.ok(e instanceof AuthError, String(e));
      assert.match(e.message, /credentials are missing/);
      return true;
    });
  });

  test("without the mirror the registry name does not resolve", async () => {
    const s = createImageService({ dataDir: await dataDir() });
    services.push(s);
    await assert.rejects(s.resolve({ kind: "registry", ref: `${PRIVATE}/team/five:v1`, auth: CREDS }), /cannot reach registry private\.example:5000/);
  });
});

/**
 * A proxy in front of `target` that cuts the first download of each blob
 * after `cutAfter` bytes, and records every blob request with its Range.
 */
async function flakyProxy(target: string, cutAfter: number) {
  const seen: { digest: string; range: string | null }[] = [];
  const cut = new Set<string>();
  const t = new URL(target);
  const srv = http.createServer((req, res) => {
    const m = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? "");
    if (m && req.method === "GET") seen.push({ digest: m[1]!, range: (req.headers.range as string | undefined) ?? null });
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: { ...req.headers, host: t.host } }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      const cutThis = m && !req.headers.range && !cut.has(m[1]!) && Number(ur.headers["content-length"] ?? 0) > cutAfter;
      if (!cutThis) return void ur.pipe(res);
      cut.add(m![1]!);
      let sent = 0;
      ur.on("data", (chunk: Buffer) => {
        if (sent >= cutAfter) return;
        const part = chunk.subarray(0, cutAfter - sent);
        sent += part.length;
        if (sent >= cutAfter) {
          ur.destroy();
          res.write(part, () => setTimeout(() => res.socket?.destroy(), 50)); // the connection drops mid-body
        } else res.write(part);
      });
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(srv.address() as { port: number }).port}`,
    seen,
    cut,
    close: async () => {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    },
  };
}

describe("downloads", { timeout: 300_000 }, () => {
  test("a dropped blob download resumes with a Range request; shared blobs are fetched once", async () => {
    const payloads = new Map<number, string>();
    const big = (n: number) => {
      if (!payloads.has(n)) payloads.set(n, randomBytes(300_000).toString("base64")); // incompressible enough
      return { files: { [`data/${n}`]: payloads.get(n)! } };
    };
    const shared: LayerSpec[] = [big(1), big(2), { files: { "common/x": "x" } }];
    const a = await pushImage(plainReg.host, "flaky/a:v1", { layers: [...shared, big(3)] });
    const b = await pushImage(plainReg.host, "flaky/b:v1", { layers: [...shared, big(4)] });
    const proxy = await flakyProxy(plainReg.url, 50_000);
    try {
      const s = createImageService({ dataDir: await dataDir(), mirrors: { "flaky.example": proxy.url } });
      services.push(s);
      const ia = await s.resolve({ kind: "registry", ref: "flaky.example/flaky/a:v1" });
      assert.equal(ia.layers.length, 4);
      // Every big layer was cut once and then resumed from where it stopped.
      for (const l of a.layers.filter((_, i) => i !== 2)) {
        assert.ok(proxy.cut.has(l.digest), `layer ${l.digest} was not cut`);
        const reqs = proxy.seen.filter((r) => r.digest === l.digest);
        assert.deepEqual(reqs.map((r) => r.range), [null, "bytes=50000-"], JSON.stringify(reqs));
      }
      assert.equal(await fsp.readFile(path.join(ia.layers[0]!, "data/1"), "utf8"), payloads.get(1));
      // Image b shares three layers with a: only its own layer (and config) are downloaded.
      const before = proxy.seen.length;
      const ib = await s.resolve({ kind: "registry", ref: "flaky.example/flaky/b:v1" });
      const fetched = new Set(proxy.seen.slice(before).map((r) => r.digest));
      assert.deepEqual([...fetched].filter((d) => b.layers.some((l) => l.digest === d)), [b.layers[3]!.digest]);
      assert.deepEqual(ib.layers.slice(0, 3), ia.layers.slice(0, 3));
    } finally {
      await proxy.close();
    }
  });

  test("an OCI index resolves to this host's platform", async () => {
    const amd = await pushImage(plainReg.host, "multi/arch:amd64", { layers: [{ files: { arch: "amd64\n" } }] });
    const arm = await pushImage(plainReg.host, "multi/arch:arm64", { layers: [{ files: { arch: "arm64\n" } }] });
    const manifestSize = async (tag: string) => {
      const res = await fetch(`${plainReg.url}/v2/multi/arch/manifests/${tag}`, { headers: { accept: "application/vnd.oci.image.manifest.v1+json" } });
      return (await res.arrayBuffer()).byteLength;
    };
    const index = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: arm.manifestDigest, size: await manifestSize("arm64"), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
        { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: amd.manifestDigest, size: await manifestSize("amd64"), platform: { os: "linux", architecture: "amd64" } },
      ],
    };
    const put = await fetch(`${plainReg.url}/v2/multi/arch/manifests/both`, {
      method: "PUT",
      headers: { "content-type": "application/vnd.oci.image.index.v1+json" },
      body: JSON.stringify(index),
    });
    assert.equal(put.status, 201, await put.text());
    const s = createImageService({ dataDir: await dataDir() });
    services.push(s);
    const img = await s.resolve({ kind: "registry", ref: `${plainReg.host}/multi/arch:both` });
    const want = process.arch === "arm64" ? arm : amd;
    assert.equal(img.imageId, want.manifestDigest);
    assert.equal(await fsp.readFile(path.join(img.layers[0]!, "arch"), "utf8"), process.arch === "arm64" ? "arm64\n" : "amd64\n");
  });
});
