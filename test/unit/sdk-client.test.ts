// The SDK's services against a small in-memory fake of the HTTP API: the
// guide's flows, request shapes, config resolution. The real server is
// exercised by the integration tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AlreadyExistsError,
  ClientClosedError,
  ConflictError,
  InvalidError,
  NotFoundError,
  Probe,
  SbxClient,
  TimeoutError,
} from "../../packages/sdk/src/index.js";
import type { Sandbox as WireSandbox } from "../../packages/sdk/src/wire.js";

interface FakeExec {
  argv: string[];
  out: string;
  code: number;
}

interface FakeProbe {
  readyAt: number;
}

function fakeApi() {
  const sandboxes = new Map<string, WireSandbox>();
  const probes = new Map<string, FakeProbe>();
  const events = new Map<string, { type: string; at: string; reason: string | null; returncode: number | null }[]>();
  const finishListeners = new Map<string, (() => void)[]>();
  const secrets = new Map<string, Record<string, string>>();
  const volumes = new Map<string, { volumeId: string; name: string | null; ephemeral: boolean; createdAt: string }>();
  /** How many event-stream connections to cut after their first event. */
  const cut = { eventStreams: 0 };
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
        hasReadinessProbe: body.readinessProbe !== undefined,
        ready: false,
      };
      sandboxes.set(sb.sandboxId, sb);
      if (body.readinessProbe) {
        // Ready after three intervals; an interval of a minute never gets there.
        const ms = body.readinessProbe.intervalMs ?? 100;
        probes.set(sb.sandboxId, { readyAt: ms >= 60_000 ? Infinity : Date.now() + 3 * ms });
      }
      const at = "2024-01-01T00:00:00Z";
      events.set(sb.sandboxId, ["Created", "Scheduled", "Started"].map((type) => ({ type, at, reason: null, returncode: null })));
      return send(res, 200, sb);
    }
    if (req.method === "GET" && parts[1] === "sandboxes" && parts[2] === "by-name") {
      const [appName, name] = parts.slice(3).map(decodeURIComponent);
      if (appName === "missing") return fail(res, 404, "not_found", "app missing not found");
      const found = [...sandboxes.values()].find((s) => s.name === name && s.state !== "finished");
      if (!found) return fail(res, 404, "not_found", `no running sandbox named ${name}`);
      return send(res, 200, found);
    }
    if (parts[1] === "secrets") {
      const name = parts[2] && decodeURIComponent(parts[2]);
      const info = (n: string) => ({ name: n, keys: Object.keys(secrets.get(n)!).sort(), createdAt: "2024-01-01T00:00:00Z" });
      if (req.method === "POST" && !name) {
        if (secrets.has(body.name) && !body.overwrite) return fail(res, 409, "already_exists", `secret ${body.name} exists`);
        secrets.set(body.name, body.env);
        return send(res, 201, info(body.name));
      }
      if (req.method === "GET" && !name) return send(res, 200, { secrets: [...secrets.keys()].map(info) });
      if (!name || !secrets.has(name)) return fail(res, 404, "not_found", `secret ${name} not found`);
      if (req.method === "DELETE") {
        secrets.delete(name);
        return send(res, 200, {});
      }
      return send(res, 200, info(name));
    }
    if (parts[1] === "volumes") {
      const make = (name: string | null) => {
        const v = { volumeId: `vo-${++n}`, name, ephemeral: name === null, createdAt: "2024-01-01T00:00:00Z" };
        volumes.set(v.volumeId, v);
        return v;
      };
      if (req.method === "POST" && parts[2] === "lookup") {
        const found = [...volumes.values()].find((v) => v.name === body.name);
        if (found) return send(res, 200, found);
        if (!body.createIfMissing) return fail(res, 404, "not_found", `volume ${body.name} not found`);
        return send(res, 200, make(body.name));
      }
      if (req.method === "POST" && parts[2] === "ephemeral") return send(res, 201, make(null));
      if (req.method === "GET" && !parts[2]) return send(res, 200, { volumes: [...volumes.values()] });
      if (req.method === "DELETE") {
        const v = parts[2] === "by-name" ? [...volumes.values()].find((x) => x.name === decodeURIComponent(parts[3]!)) : volumes.get(parts[2]!);
        if (!v) return fail(res, 404, "not_found", "volume not found");
        volumes.delete(v.volumeId);
        return send(res, 200, {});
      }
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
      if (sb.state !== "finished") {
        Object.assign(sb, { state: "finished", returncode: 137, finishReason: "terminated" });
        events.get(sb.sandboxId)!.push({ type: "Finished", at: "2024-01-01T00:00:01Z", reason: "terminated", returncode: 137 });
        for (const f of finishListeners.get(sb.sandboxId) ?? []) f();
      }
      return send(res, 200, sb);
    }
    if (req.method === "PUT" && rest === "tags") {
      sb.tags = { ...body.tags };
      return send(res, 200, sb);
    }
    if (req.method === "GET" && rest === "events") return send(res, 200, { events: events.get(sb.sandboxId) });
    if (req.method === "GET" && rest === "events/stream") {
      res.writeHead(200, { "content-type": "text/event-stream" });
      const list = events.get(sb.sandboxId)!;
      let sent = 0;
      const flush = () => {
        while (sent < list.length && !res.destroyed) {
          const e = list[sent++]!;
          // Split mid-message to exercise the parser.
          const text = `event: ${e.type}\r\ndata: ${JSON.stringify(e)}\r\n\r\n: keep-alive\n\n`;
          res.write(text.slice(0, 7));
          res.write(text.slice(7));
          if (cut.eventStreams > 0) {
            cut.eventStreams--;
            res.destroy();
            return;
          }
          if (e.type === "Finished") return res.end();
        }
      };
      flush();
      const listeners = finishListeners.get(sb.sandboxId) ?? [];
      listeners.push(() => setTimeout(flush, 5));
      finishListeners.set(sb.sandboxId, listeners);
      return;
    }
    if (req.method === "GET" && rest === "ready") {
      const probe = probes.get(sb.sandboxId);
      if (!probe) return fail(res, 409, "conflict", `sandbox ${sb.sandboxId} has no readiness probe`);
      const reply = () => {
        sb.ready = Date.now() >= probe.readyAt;
        if (!sb.ready && sb.state === "finished") return fail(res, 409, "conflict", `sandbox ${sb.sandboxId} finished before it was ready`);
        send(res, 200, sb);
      };
      // Like the server: the long poll ends when the probe passes, the wait runs out or the sandbox finishes.
      const until = Date.now() + Math.min(Number(url.searchParams.get("timeoutMs") ?? 0), probe.readyAt - Date.now());
      const tick = (): void => (Date.now() >= until || sb.state === "finished" ? reply() : void setTimeout(tick, 10));
      return tick();
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
    secrets,
    cut,
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

test("cheap client-side checks", () =>
  withFake(async (modal) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    await assert.rejects(modal.sandboxes.create(app, undefined, { timeoutMs: 1500 }), {
      name: "InvalidError",
      message: "timeoutMs must be a positive multiple of 1000 (got 1500)",
    });
    await assert.rejects(modal.sandboxes.create(app, undefined, { name: "bad name" }), InvalidError);
    await assert.rejects(modal.sandboxes.create(app, undefined, { workdir: "relative" }), InvalidError);
    await assert.rejects(modal.sandboxes.create(app, undefined, { blockNetwork: true, cidrAllowlist: ["10.0.0.0/8"] }), {
      name: "InvalidError",
      message: "cidrAllowlist cannot be combined with blockNetwork",
    });
    await assert.rejects(modal.sandboxes.create(app, undefined, { tags: { "": "x" } }), InvalidError);
    await assert.rejects(modal.sandboxes.create(app, undefined, { volumes: { data: modal.volumes.fromName("v", { createIfMissing: true }) } }), {
      name: "InvalidError",
      message: 'volume mount path must be absolute (got "data")',
    });
    await assert.rejects(
      modal.sandboxes.create(app, undefined, { volumes: { "/data": { volumeId: "vo-1" } as never } }),
      /is not a Volume/,
    );
    assert.throws(() => Probe.withTcp(0), InvalidError);
    assert.throws(() => Probe.withTcp(8080, { intervalMs: 5 }), InvalidError);
    assert.throws(() => Probe.withExec([]), InvalidError);
    assert.throws(() => modal.secrets.fromObject({ "BAD-KEY": "x" }), InvalidError);
    await assert.rejects(modal.secrets.fromName("bad name"), InvalidError);
    await assert.rejects(modal.volumes.fromName("bad/name"), InvalidError);
    await assert.rejects(modal.apps.fromName("missing"), NotFoundError);
  }));

test("the create request carries probes, volumes (resolved lazily), resources and pass-through options", () =>
  withFake(async (modal, fake) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const volume = await modal.volumes.fromName("data", { createIfMissing: true });
    const ro = volume.withMountOptions({ readOnly: true, subPath: "sub/dir" });
    assert.equal(volume.readOnly, false, "withMountOptions leaves the original alone");
    assert.throws(() => volume.withMountOptions({ subPath: "../up" }), InvalidError);
    await modal.sandboxes.create(app, undefined, {
      entrypoint: ["python3", "-m", "http.server", "8080"],
      readinessProbe: Probe.withTcp(8080),
      volumes: { "/data": volume, "/ro": ro, "/lazy": modal.volumes.fromName("lazy", { createIfMissing: true }) },
      idleTimeoutMs: 5000,
      cpu: 0.5,
      cpuLimit: 1,
      memoryMiB: 128,
      memoryLimitMiB: 256,
      name: "web",
      cidrAllowlist: ["10.0.0.0/8"],
      encryptedPorts: [443],
    });
    const body = fake.requests.find((r) => r.path === "/v1/sandboxes" && r.method === "POST")!.body as Record<string, unknown>;
    const lazy = [...(await modal.volumes.list())].find((v) => v.name === "lazy")!;
    assert.deepEqual(body, {
      appId: "ap-1",
      image: { kind: "debianSlim" },
      command: ["python3", "-m", "http.server", "8080"],
      readinessProbe: { kind: "tcp", port: 8080, intervalMs: 100 },
      volumes: {
        "/data": { volumeId: volume.volumeId },
        "/ro": { volumeId: volume.volumeId, readOnly: true, subPath: "sub/dir" },
        "/lazy": { volumeId: lazy.volumeId },
      },
      idleTimeoutMs: 5000,
      cpu: 0.5,
      cpuLimit: 1,
      memoryMiB: 128,
      memoryLimitMiB: 256,
      name: "web",
      outboundCidrAllowlist: ["10.0.0.0/8"],
      encryptedPorts: [443],
    });
    await modal.sandboxes.create(app, undefined, { readinessProbe: Probe.withExec(["sh", "-c", "test -f /tmp/ready"], { intervalMs: 250 }) });
    const second = fake.requests.filter((r) => r.path === "/v1/sandboxes" && r.method === "POST")[1]!.body as Record<string, unknown>;
    assert.deepEqual(second.readinessProbe, { kind: "exec", argv: ["sh", "-c", "test -f /tmp/ready"], intervalMs: 250 });
  }));

test("waitUntilReady: resolves once ready, loops long polls, throws without a probe, after finish and on timeout", () =>
  withFake(async (modal, fake) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const sb = await modal.sandboxes.create(app, undefined, { readinessProbe: Probe.withTcp(8080, { intervalMs: 100 }) });
    assert.equal(sb.hasReadinessProbe, true);
    await sb.waitUntilReady();
    assert.equal(sb.ready, true);
    await sb.waitUntilReady(); // at once when already ready
    const ready = fake.requests.filter((r) => r.path.startsWith(`/v1/sandboxes/${sb.sandboxId}/ready`));
    assert.match(ready[0]!.path, /\?timeoutMs=50000$/);

    const never = await modal.sandboxes.create(app, undefined, { readinessProbe: Probe.withTcp(8080, { intervalMs: 60_000 }) });
    const t0 = Date.now();
    await assert.rejects(never.waitUntilReady(700), (err: unknown) => err instanceof TimeoutError && /within 700 ms/.test((err as Error).message));
    assert.ok(Date.now() - t0 >= 650, "waited for its timeout");
    const last = fake.requests.filter((r) => r.path.startsWith(`/v1/sandboxes/${never.sandboxId}/ready`)).at(-1)!;
    assert.match(last.path, /\?timeoutMs=\d{1,3}$/, "the long poll is bounded by what remains");
    assert.equal(await never.poll(), null, "a probe timeout does not terminate the sandbox");
    const handle = await modal.sandboxes.fromId(never.sandboxId);
    await never.terminate();
    await assert.rejects(handle.waitUntilReady(), ConflictError);

    const plain = await modal.sandboxes.create(app);
    assert.equal(plain.hasReadinessProbe, false);
    await assert.rejects(plain.waitUntilReady(), (err: unknown) => err instanceof ConflictError && /no readiness probe/.test((err as Error).message));
    await assert.rejects(plain.waitUntilReady(0), InvalidError);
  }));

test("tags: setTags replaces them all, getTags reads them, list sends each as tag=k=v", () =>
  withFake(async (modal, fake) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const sb = await modal.sandboxes.create(app, undefined, { tags: { a: "1", b: "2" } });
    await sb.setTags({ major_version: "1", "k=x": "v=y" });
    assert.deepEqual(sb.tags, { major_version: "1", "k=x": "v=y" });
    assert.deepEqual(await sb.getTags(), { major_version: "1", "k=x": "v=y" });
    const put = fake.requests.find((r) => r.method === "PUT")!;
    assert.equal(put.path, `/v1/sandboxes/${sb.sandboxId}/tags`);
    assert.deepEqual(put.body, { tags: { major_version: "1", "k=x": "v=y" } });
    for await (const _ of modal.sandboxes.list({ appId: app.appId, tags: { major_version: "1", minor_version: "2" } })) assert.fail("no match");
    const list = fake.requests.filter((r) => r.path.startsWith("/v1/sandboxes?")).at(-1)!;
    assert.equal(list.path, "/v1/sandboxes?appId=ap-1&tag=major_version%3D1&tag=minor_version%3D2");
    await assert.rejects(sb.setTags({ a: 1 as unknown as string }), InvalidError);
  }));

test("watchEvents follows the events live, resumes after a drop without repeats, ends after Finished", () =>
  withFake(async (modal, fake) => {
    const app = await modal.apps.fromName("my-app", { createIfMissing: true });
    const sb = await modal.sandboxes.create(app);
    fake.cut.eventStreams = 2; // the first two connections drop after one event each
    const seen: string[] = [];
    const done = (async () => {
      for await (const e of sb.watchEvents()) seen.push(`${e.type}:${e.reason ?? ""}`);
    })();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(seen, ["Created:", "Scheduled:", "Started:"]);
    const other = await modal.sandboxes.fromId(sb.sandboxId);
    await other.terminate();
    await done;
    assert.deepEqual(seen, ["Created:", "Scheduled:", "Started:", "Finished:terminated"]);
    assert.deepEqual(
      (await (await modal.sandboxes.fromId(sb.sandboxId)).events()).map((e) => e.type),
      ["Created", "Scheduled", "Started", "Finished"],
    );
    const streams = fake.requests.filter((r) => r.path === `/v1/sandboxes/${sb.sandboxId}/events/stream`);
    assert.equal(streams.length, 3);

    // Breaking out of the loop stops following.
    const sb2 = await modal.sandboxes.create(app);
    for await (const e of sb2.watchEvents()) {
      assert.equal(e.type, "Created");
      break;
    }
    await sb2.terminate();
  }));

test("named secrets: create, list (no values), delete; fromName is a lazy reference", () =>
  withFake(async (modal, fake) => {
    const info = await modal.secrets.create("db", { USER: "u", PASSWORD: "p4ss" });
    assert.deepEqual(info, { name: "db", keys: ["PASSWORD", "USER"], createdAt: "2024-01-01T00:00:00Z" });
    await assert.rejects(modal.secrets.create("db", { USER: "v" }), AlreadyExistsError);
    await modal.secrets.create("db", { USER: "v" }, { overwrite: true });
    assert.deepEqual(fake.secrets.get("db"), { USER: "v" });
    assert.deepEqual((await modal.secrets.list()).map((s) => s.name), ["db"]);
    const before = fake.requests.length;
    const ref = await modal.secrets.fromName("db", { requiredKeys: ["USER"] });
    assert.equal(fake.requests.length, before, "fromName asks the server nothing");
    assert.deepEqual(ref.toWire(), { kind: "named", name: "db", requiredKeys: ["USER"] });
    await modal.secrets.delete("db");
    await assert.rejects(modal.secrets.delete("db"), NotFoundError);
    await modal.secrets.delete("db", { allowMissing: true });
    await assert.rejects(modal.secrets.create("x", { "1BAD": "v" }), InvalidError);
  }));

test("volumes: fromName, ephemeral, list, delete by name or object", () =>
  withFake(async (modal) => {
    await assert.rejects(modal.volumes.fromName("my-volume"), NotFoundError);
    const v = await modal.volumes.fromName("my-volume", { createIfMissing: true });
    assert.equal(v.name, "my-volume");
    assert.equal((await modal.volumes.fromName("my-volume")).volumeId, v.volumeId);
    const eph = await modal.volumes.ephemeral();
    assert.equal(eph.name, null);
    assert.equal(eph.ephemeral, true);
    assert.deepEqual((await modal.volumes.list()).map((x) => x.name).sort(), ["my-volume", null].sort());
    await modal.volumes.delete("my-volume");
    await modal.volumes.delete(eph);
    assert.deepEqual(await modal.volumes.list(), []);
    await assert.rejects(modal.volumes.delete("my-volume"), NotFoundError);
    await modal.volumes.delete("my-volume", { allowMissing: true });
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
    rmSync(dir, { recursive: true, force: true });
  }
});
