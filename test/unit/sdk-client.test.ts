// The SDK's services against a small in-memory fake of the HTTP API: the
// guide's flows, request shapes, config resolution. The real server is
// exercised by the integration tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AlreadyExistsError,
  ClientClosedError,
  InvalidError,
  NotFoundError,
  Probe,
  SbxClient,
  SbxError,
} from "../../packages/sdk/src/index.js";
import type { Sandbox as WireSandbox } from "../../packages/sdk/src/wire.js";

interface FakeExec {
  argv: string[];
  out: string;
  code: number;
}

function fakeApi() {
  const sandboxes = new Map<string, WireSandbox>();
  const execs = new Map<string, FakeExec>();
  const requests: { method: string; path: string; body: unknown }[] = [];
  let n = 0;
  const send = (res: ServerResponse, status: number, value: unknown) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(value));
  };
  const fail = (res: ServerResponse, status: number, code: string, message: string) => send(res, status, { error: { code, message } });
  const handle = (req: IncomingMessage, res: ServerResponse, raw: string) => {
    const url = new URL(req.url!, "http://x");
    const body = raw ? JSON.parse(raw) : undefined;
    requests.push({ method: req.method!, path: url.pathname + url.search, body });
    if (req.headers.authorization !== "Bearer secret-token") return fail(res, 401, "unauthenticated", "bad token");
    const parts = url.pathname.split("/").filter(Boolean); // v1, sandboxes, id, ...
    if (req.method === "POST" && url.pathname === "/v1/apps/lookup") {
      if (body.name === "missing" && !body.createIfMissing) return fail(res, 404, "not_found", "app missing not found");
      return send(res, 200, { appId: "ap-1", name: body.name, createdAt: "2024-01-01T00:00:00Z" });
    }
    if (req.method === "POST" && url.pathname === "/v1/sandboxes") {
      if (body.name && [...sandboxes.values()].some((s) => s.name === body.name && s.state !== "finished")) {
        return fail(res, 409, "already_exists", `a sandbox named ${body.name} is running`);
      }
      const sb: WireSandbox = {
        sandboxId: `sb-${++n}`,
        appId: body.appId,
        name: body.name ?? null,
        state: "started",
        returncode: null,
        finishReason: null,
        imageId: `sha256:${"a".repeat(64)}`,
        tags: body.tags ?? {},
        createdAt: "2024-01-01T00:00:00Z",
      };
      sandboxes.set(sb.sandboxId, sb);
      return send(res, 200, sb);
    }
    if (req.method === "GET" && url.pathname === "/v1/sandboxes") {
      const tags = url.searchParams.getAll("tag").map((t) => t.split("="));
      const all = [...sandboxes.values()].filter(
        (s) => s.state !== "finished" && s.appId === (url.searchParams.get("appId") ?? s.appId) && tags.every(([k, v]) => s.tags[k!] === v),
      );
      const start = Number(url.searchParams.get("cursor") ?? 0);
      return send(res, 200, { sandboxes: all.slice(start, start + 1), nextCursor: start + 1 < all.length ? String(start + 1) : null });
    }
    const sb = sandboxes.get(parts[2] ?? "");
    if (!sb) return fail(res, 404, "not_found", `sandbox ${parts[2]} not found`);
    const rest = parts.slice(3).join("/");
    if (req.method === "GET" && (rest === "" || rest === "wait")) return send(res, 200, sb);
    if (req.method === "POST" && rest === "terminate") {
      Object.assign(sb, { state: "finished", returncode: 137, finishReason: "terminated" });
      return send(res, 200, sb);
    }
    if (req.method === "POST" && rest === "execs") {
      if (sb.state === "finished") return fail(res, 409, "conflict", "sandbox is finished");
      const argv: string[] = body.argv;
      const execId = `ex-${++n}`;
      const env = { ...(body.env ?? {}) };
      const script = argv.join(" ");
      let out = "";
      let code = 0;
      if (argv[0] === "echo") out = argv.slice(1).join(" ") + "\n";
      else if (script === "sh -c exit 42") code = 42;
      else if (script === "bash -c echo $MY_SECRET") out = `${env.MY_SECRET ?? "hello"}\n`;
      else if (argv[0] === "python") out = "hello\n";
      else if (argv[0] === "bash") out = Array.from({ length: 10 }, (_, i) => `12:00:0${i}\n`).join("");
      execs.set(execId, { argv, out, code });
      return send(res, 201, { execId, sandboxId: sb.sandboxId, returncode: null, reason: null });
    }
    const exec = execs.get(parts[4] ?? "");
    if (parts[3] === "execs" && exec) {
      const what = parts.slice(5).join("/");
      if (req.method === "GET" && (what === "" || what === "wait")) {
        return send(res, 200, { execId: parts[4], sandboxId: sb.sandboxId, returncode: exec.code, reason: null });
      }
      if (req.method === "GET" && (what === "stdout" || what === "stderr")) {
        const offset = Number(url.searchParams.get("offset") ?? 0);
        res.writeHead(200, { "content-type": "application/octet-stream", "x-sbx-offset": String(offset) });
        const bytes = Buffer.from(what === "stdout" ? exec.out : "");
        // Line by line, as a process would produce it.
        const lines = bytes.subarray(offset).toString().split(/(?<=\n)/).filter(Boolean);
        const next = () => (lines.length ? res.write(lines.shift()!, () => setTimeout(next, 2)) : res.end());
        next();
        return;
      }
    }
    return fail(res, 404, "not_found", `no route ${req.method} ${url.pathname}`);
  };
  const server = createServer((req, res) => {
    let raw = "";
    req.setEncoding("utf8");
    req.on("data", (d: string) => (raw += d));
    req.on("end", () => handle(req, res, raw));
  });
  return {
    requests,
    sandboxes,
    async start(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function withFake(fn: (modal: SbxClient, fake: ReturnType<typeof fakeApi>) => Promise<void>): Promise<void> {
  const fake = fakeApi();
  const url = await fake.start();
  const modal = new SbxClient({ serverUrl: url, token: "secret-token" });
  try {
    await fn(modal, fake);
  } finally {
    modal.close();
    await fake.close();
  }
}

test("the guide's first example", () =>
  withFake(async (modal, fake) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    assert.equal(app.appId, "ap-1");
    const image = modal.images.fromRegistry("python:3.13-slim");
    assert.equal(image.imageId, undefined);
    const sb = await modal.sandboxes.create(app, image);
    assert.equal(image.imageId, `sha256:${"a".repeat(64)}`);
    const p = await sb.exec(["python", "-c", "print('hello')"], { timeoutMs: 3 * 1000 });
    assert.equal(await p.stdout.readText(), "hello\n");
    const p2 = await sb.exec(["bash", "-c", "for i in {1..10}; do date +%T; sleep 0.5; done"], { timeoutMs: 5 * 1000 });
    const lines: string[] = [];
    for await (const line of p2.stdout) lines.push(line);
    assert.equal(lines.length, 10);
    assert.equal(await sb.terminate(), undefined);
    const create = fake.requests.find((r) => r.path === "/v1/sandboxes" && r.method === "POST")!;
    assert.deepEqual(create.body, { appId: "ap-1", image: { kind: "registry", ref: "python:3.13-slim" } });
    const exec = fake.requests.find((r) => r.path.endsWith("/execs"))!;
    assert.deepEqual(exec.body, { argv: ["python", "-c", "print('hello')"], timeoutMs: 3000 });
    await assert.rejects(sb.exec(["true"]), ClientClosedError);
  }));

test("return codes", () =>
  withFake(async (modal) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const sb = await modal.sandboxes.create(app);
    const p = await sb.exec(["sh", "-c", "exit 42"]);
    assert.equal(await p.poll(), 42);
    assert.equal(await p.wait(), 42);
    assert.equal(p.returncode, 42);
    assert.equal(await sb.poll(), null);
    assert.equal(await sb.terminate({ wait: true }), 137);
    assert.equal(sb.returncode, 137);
    assert.equal(sb.finishReason, "terminated");
  }));

test("inline secrets, env, fromId, detach", () =>
  withFake(async (modal, fake) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const secret = modal.secrets.fromObject({ MY_SECRET: "hello" });
    const image = modal.images.fromRegistry("python:3.13-slim");
    const sb = await modal.sandboxes.create(app, image, {
      secrets: [secret, modal.secrets.fromName("other")],
      entrypoint: ["sleep", "100"],
      timeoutMs: 10 * 60 * 1000,
      workdir: "/repo",
      tags: { a: "1" },
    });
    const body = fake.requests.find((r) => r.path === "/v1/sandboxes" && r.method === "POST")!.body;
    assert.deepEqual(body, {
      appId: "ap-1",
      image: { kind: "registry", ref: "python:3.13-slim" },
      command: ["sleep", "100"],
      timeoutMs: 600000,
      workdir: "/repo",
      secrets: [{ kind: "inline", env: { MY_SECRET: "hello" } }, { kind: "named", name: "other" }],
      tags: { a: "1" },
    });
    const p = await sb.exec(["bash", "-c", "echo $MY_SECRET"]);
    assert.equal(await p.stdout.readText(), "hello\n");
    const sbId = sb.sandboxId;
    sb.detach();
    await assert.rejects(sb.poll(), ClientClosedError);
    const sb2 = await modal.sandboxes.fromId(sbId);
    const p2 = await sb2.exec(["echo", "hello"]);
    console.assert(true);
    assert.equal(await p2.stdout.readText(), "hello\n");
    await sb2.terminate();
    await assert.rejects(modal.sandboxes.fromId("sb-nope"), NotFoundError);
  }));

test("names, fromName and list with tags follow the cursor", () =>
  withFake(async (modal) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const sb1 = await modal.sandboxes.create(app, undefined, { name: "my-name" });
    await assert.rejects(modal.sandboxes.create(app, undefined, { name: "my-name" }), AlreadyExistsError);
    const sb2 = await modal.sandboxes.fromName("my-app", "my-name");
    assert.equal(sb1.sandboxId, sb2.sandboxId);
    await assert.rejects(modal.sandboxes.fromName("my-app", "other"), NotFoundError);
    await assert.rejects(modal.sandboxes.fromName("missing", "x"), NotFoundError);
    await modal.sandboxes.create(app, undefined, { command: ["sleep", "10"], tags: { major_version: "1", minor_version: "1" } });
    const v12 = await modal.sandboxes.create(app, undefined, { command: ["sleep", "20"], tags: { major_version: "1", minor_version: "2" } });
    const ids = async (tags?: Record<string, string>) => {
      const out: string[] = [];
      for await (const sb of modal.sandboxes.list({ appId: app.appId, tags })) out.push(sb.sandboxId);
      return out;
    };
    assert.equal((await ids()).length, 3);
    assert.equal((await ids({ major_version: "1" })).length, 2);
    assert.deepEqual(await ids({ major_version: "1", minor_version: "2" }), [v12.sandboxId]);
    sb1.detach();
    sb2.detach();
  }));

test("cheap client-side checks and unsupported options", () =>
  withFake(async (modal) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    await assert.rejects(modal.sandboxes.create(app, undefined, { timeoutMs: 1500 }), {
      name: "InvalidError",
      message: "timeoutMs must be a positive multiple of 1000 (got 1500)",
    });
    await assert.rejects(modal.sandboxes.create(app, undefined, { name: "bad name" }), InvalidError);
    await assert.rejects(modal.sandboxes.create(app, undefined, { workdir: "relative" }), InvalidError);
    await assert.rejects(
      modal.sandboxes.create(app, undefined, { entrypoint: ["a"], readinessProbe: Probe.withTcp(8080) }),
      (err: unknown) => err instanceof SbxError && /readinessProbe is not supported yet/.test(err.message),
    );
    assert.throws(() => modal.volumes.fromName("my-volume"), /volumes is not supported yet/);
    assert.throws(() => modal.secrets.fromObject({ "BAD-KEY": "x" }), InvalidError);
    await assert.rejects(modal.apps.fromName("missing"), NotFoundError);
  }));

test("a wrong token is an AuthError", async () => {
  const fake = fakeApi();
  const url = await fake.start();
  try {
    const modal = new SbxClient({ serverUrl: url, token: "wrong" });
    await assert.rejects(modal.apps.fromName("x"), { name: "AuthError", code: "unauthenticated", status: 401 });
  } finally {
    await fake.close();
  }
});

test("configuration: options, then env, then the config file, then the default", () => {
  const saved = { ...process.env };
  const dir = mkdtempSync(join(tmpdir(), "sbx-sdk-"));
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify({ serverUrl: "http://file:1", token: "file-token" }));
  try {
    delete process.env.SBX_SERVER_URL;
    delete process.env.SBX_TOKEN;
    process.env.SBX_CONFIG = file;
    assert.equal(new SbxClient().serverUrl, "http://file:1");
    process.env.SBX_SERVER_URL = "http://env:2";
    assert.equal(new SbxClient().serverUrl, "http://env:2");
    assert.equal(new SbxClient({ serverUrl: "http://opt:3" }).serverUrl, "http://opt:3");
    process.env.SBX_CONFIG = join(dir, "absent.json");
    delete process.env.SBX_SERVER_URL;
    assert.equal(new SbxClient().serverUrl, "http://127.0.0.1:7423");
    writeFileSync(file, "{not json");
    process.env.SBX_CONFIG = file;
    assert.throws(() => new SbxClient(), InvalidError);
  } finally {
    process.env = saved;
  }
});
