// The sandbox features of issue 4 through the SDK and CLI against the real
// server: readiness probes, idle timeout, entrypoints, names, tags and list,
// events (listed and followed), secrets (values never in logs or events),
// volumes, OOM.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  AlreadyExistsError,
  ConflictError,
  InvalidError,
  NotFoundError,
  Probe,
  SbxError,
  TimeoutError,
  type App,
  type Sandbox,
  type SandboxCreateParams,
  type SbxClient,
} from "sbx";
import { REPO, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let client: SbxClient;
let app: App;

before(async () => {
  server = await startTestServer();
  client = server.client();
  app = await client.apps.fromName("it-features", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
});

async function withSandbox<T>(params: SandboxCreateParams, fn: (sb: Sandbox) => Promise<T>, inApp: App = app): Promise<T> {
  const sb = await client.sandboxes.create(inApp, undefined, params);
  try {
    return await fn(sb);
  } finally {
    await sb.terminate().catch(() => undefined);
  }
}

async function sh(sb: Sandbox, script: string): Promise<{ out: string; err: string; code: number }> {
  const p = await sb.exec(["sh", "-c", script]);
  const [out, err, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
  return { out, err, code };
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cli(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(REPO, "packages/cli/dist/main.js"), ...args],
      { env: { ...process.env, SBX_SERVER_URL: server.url, SBX_TOKEN: server.token, SBX_CONFIG: "/nonexistent", ...env }, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ stdout, stderr, code: err ? (typeof err.code === "number" ? err.code : -1) : 0 }),
    );
  });
}

const unique = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

describe("readiness probes", () => {
  test("an exec probe runs every intervalMs until it first succeeds, then stops", async () => {
    await withSandbox(
      {
        readinessProbe: Probe.withExec(["sh", "-c", "date +%s%N >> /tmp/probe.log; [ $(wc -l < /tmp/probe.log) -ge 5 ]"], { intervalMs: 1_000 }),
      },
      async (sb) => {
        await sb.waitUntilReady(30_000);
        assert.equal(sb.ready, true);
        await delay(2_500);
        const { out } = await sh(sb, "cat /tmp/probe.log");
        const times = out.trim().split("\n").map((l) => Number(BigInt(l) / 1_000_000n));
        assert.equal(times.length, 5, "five attempts, none after the success");
        // Timed from inside each attempt, so each gap carries the jitter of
        // starting a process; their mean does not.
        const gaps = times.slice(1).map((t, i) => t - times[i]!);
        const mean = (times.at(-1)! - times[0]!) / gaps.length;
        assert.ok(mean >= 900 && mean <= 1_400, `attempts ${gaps.join(", ")} ms apart; expected ≈ 1000`);
        for (const gap of gaps) assert.ok(gap >= 500, `attempts ${gaps.join(", ")} ms apart: none much sooner than the interval`);
        const types = (await sb.events()).map((e) => e.type);
        assert.deepEqual(types, ["Created", "Scheduled", "Started", "Ready"]);
      },
    );
  });

  test("a TCP probe succeeds once the entrypoint listens; waitUntilReady then returns at once", async () => {
    await withSandbox(
      { command: ["sh", "-c", "sleep 2; exec python3 -m http.server 8080"], readinessProbe: Probe.withTcp(8080, { intervalMs: 100 }) },
      async (sb) => {
        const t0 = Date.now();
        await sb.waitUntilReady(30_000);
        assert.ok(Date.now() - t0 >= 1_000, "it waited for the listener");
        const { out } = await sh(sb, "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/').status)\"");
        assert.equal(out, "200\n", "the port accepts connections once Ready");
        const t1 = Date.now();
        await sb.waitUntilReady();
        assert.ok(Date.now() - t1 < 2_000, "already ready: at once");
        const events = await sb.events();
        const ready = events.find((e) => e.type === "Ready");
        const started = events.find((e) => e.type === "Started");
        assert.ok(ready && started && Date.parse(ready.at) >= Date.parse(started.at));
      },
    );
  });

  test("waitUntilReady on a sandbox without a probe throws at once", async () => {
    await withSandbox({}, async (sb) => {
      assert.equal(sb.hasReadinessProbe, false);
      const t0 = Date.now();
      await assert.rejects(sb.waitUntilReady(), (err: unknown) => err instanceof ConflictError && /readiness probe/.test((err as Error).message));
      assert.ok(Date.now() - t0 < 5_000);
    });
  });

  test("a probe that never succeeds: TimeoutError after timeoutMs, the sandbox keeps running; after it finished, waitUntilReady throws", async () => {
    const sb = await client.sandboxes.create(app, undefined, { readinessProbe: Probe.withExec(["false"], { intervalMs: 200 }) });
    const t0 = Date.now();
    await assert.rejects(sb.waitUntilReady(2_000), TimeoutError);
    const took = Date.now() - t0;
    assert.ok(took >= 1_900 && took < 10_000, `took ${took} ms`);
    assert.equal(await sb.poll(), null, "a failing probe never terminates the sandbox");
    const again = await client.sandboxes.fromId(sb.sandboxId);
    await sb.terminate({ wait: true });
    await assert.rejects(again.waitUntilReady(), (err: unknown) => err instanceof SbxError && !(err instanceof TimeoutError));
  });
});

describe("idle timeout", () => {
  test("a running exec keeps the sandbox alive; once idle it ends with reason idle-timeout", async () => {
    const sb = await client.sandboxes.create(app, undefined, { idleTimeoutMs: 3_000 });
    try {
      const p = await sb.exec(["sleep", "6"]);
      assert.equal(await p.wait(), 0, "the exec ran to its end");
      assert.equal(await sb.poll(), null, "6 s of exec did not count as idle");
      const t0 = Date.now();
      await sb.wait();
      const idle = Date.now() - t0;
      assert.ok(idle >= 1_500 && idle < 15_000, `ended ${idle} ms after the exec`);
      assert.equal(sb.finishReason, "idle-timeout");
      const finished = (await sb.events()).at(-1)!;
      assert.equal(finished.type, "Finished");
      assert.equal(finished.reason, "idle-timeout");
    } finally {
      await sb.terminate().catch(() => undefined);
    }
  });

  test("stdin writes to the entrypoint count as activity", async () => {
    const sb = await client.sandboxes.create(app, undefined, { command: ["cat"], idleTimeoutMs: 2_000 });
    try {
      for (let i = 0; i < 5; i++) {
        await sb.stdin.writeText(`line ${i}\n`);
        await delay(1_000);
      }
      assert.equal(await sb.poll(), null, "5 s of stdin writes, 1 s apart, kept it alive");
      await sb.wait();
      assert.equal(sb.finishReason, "idle-timeout");
    } finally {
      await sb.terminate().catch(() => undefined);
    }
  });
});

describe("entrypoint", () => {
  test("stdout, stderr and the exit code of the command; events carry the reason", async () => {
    const sb = await client.sandboxes.create(app, undefined, { entrypoint: ["sh", "-c", "cat; echo oops >&2; exit 3"] });
    await sb.stdin.writeText("abc\n");
    await sb.stdin.close();
    const [out, err, code] = await Promise.all([sb.stdout.readText(), sb.stderr.readText(), sb.wait()]);
    assert.equal(out, "abc\n");
    assert.equal(err, "oops\n");
    assert.equal(code, 3);
    assert.equal(sb.returncode, 3);
    assert.equal(sb.finishReason, "exited");
    const events = await sb.events();
    assert.deepEqual(events.map((e) => e.type), ["Created", "Scheduled", "Started", "Finished"]);
    assert.equal(events[3]!.reason, "exited");
    assert.equal(events[3]!.returncode, 3);
    for (const e of events) assert.ok(!Number.isNaN(Date.parse(e.at)), "each event has a time");
  });

  test("closing the stdin of an entrypoint as it exits: done, or a clear ConflictError (never a lost agent connection)", async () => {
    // The entrypoint exits as soon as it read its line, racing the close.
    for (let i = 0; i < 5; i++) {
      const sb = await client.sandboxes.create(app, undefined, { entrypoint: ["sh", "-c", "read x; exit 0"] });
      await sb.stdin.writeText("go\n");
      await sb.stdin.close().catch((err: unknown) => {
        assert.ok(err instanceof ConflictError, String(err));
        assert.match((err as Error).message, /finished|exited/, "the error says the process is gone");
      });
      assert.equal(await sb.wait(), 0);
    }
  });

  test("an entrypoint that exits at once: create returns the sandbox, finished with 0 and reason exited", async () => {
    for (let i = 0; i < 5; i++) {
      const sb = await client.sandboxes.create(app, undefined, { command: ["true"] });
      assert.equal(await sb.wait(), 0);
      assert.equal(sb.finishReason, "exited");
    }
  });

  test("a sandbox's own timeout: 124, reason timeout", async () => {
    const sb = await client.sandboxes.create(app, undefined, { command: ["sleep", "100"], timeoutMs: 2_000 });
    assert.equal(await sb.wait(), 124);
    assert.equal(sb.finishReason, "timeout");
  });

  test("an entrypoint killed by the OOM killer: 137, reason oom; an exec killed by it: 137", async () => {
    const hog = "b = []\nwhile True: b.append(bytearray(16 * 1024 * 1024))";
    const sb = await client.sandboxes.create(app, undefined, { command: ["python3", "-c", hog], memoryLimitMiB: 128 });
    assert.equal(await sb.wait(), 137);
    assert.equal(sb.finishReason, "oom");
    assert.equal((await sb.events()).at(-1)!.reason, "oom");
    await withSandbox({ memoryLimitMiB: 128 }, async (sb2) => {
      const p = await sb2.exec(["python3", "-c", hog]);
      assert.equal(await p.wait(), 137);
    });
  });
});

describe("events", () => {
  test("watchEvents follows the lifecycle live and ends after Finished", async () => {
    const sb = await client.sandboxes.create(app, undefined, { command: ["sleep", "2"] });
    const seen: string[] = [];
    for await (const e of sb.watchEvents()) seen.push(`${e.type}${e.reason === "exited" ? ":exited" : ""}`);
    assert.deepEqual(seen, ["Created", "Scheduled", "Started", "Finished:exited"]);
    // After the end, the stream replays everything and ends at once.
    const again: string[] = [];
    for await (const e of (await client.sandboxes.fromId(sb.sandboxId)).watchEvents()) again.push(e.type);
    assert.deepEqual(again, ["Created", "Scheduled", "Started", "Finished"]);
  });

  test("terminate is recorded with reason terminated and 137", async () => {
    const sb = await client.sandboxes.create(app);
    const follower = (async () => {
      const out = [];
      for await (const e of (await client.sandboxes.fromId(sb.sandboxId)).watchEvents()) out.push(e);
      return out;
    })();
    await delay(500);
    await sb.terminate({ wait: true });
    const events = await follower;
    assert.equal(events.at(-1)!.type, "Finished");
    assert.equal(events.at(-1)!.reason, "terminated");
    assert.equal(events.at(-1)!.returncode, 137);
  });
});

describe("named sandboxes", () => {
  test("two concurrent creates with one name: exactly one wins", async () => {
    const name = unique("race");
    const results = await Promise.allSettled([
      client.sandboxes.create(app, undefined, { name }),
      client.sandboxes.create(app, undefined, { name }),
      client.sandboxes.create(app, undefined, { name }),
    ]);
    const won = results.filter((r): r is PromiseFulfilledResult<Sandbox> => r.status === "fulfilled");
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(won.length, 1, "one create wins");
    for (const l of lost) assert.ok(l.reason instanceof AlreadyExistsError, `the others get AlreadyExistsError (got ${l.reason})`);
    const sb = won[0]!.value;
    assert.equal((await client.sandboxes.fromName(app.name, name)).sandboxId, sb.sandboxId);
    await sb.terminate({ wait: true });
    await assert.rejects(client.sandboxes.fromName(app.name, name), NotFoundError, "finished ones are not found");
    const next = await client.sandboxes.create(app, undefined, { name });
    assert.equal(next.name, name, "the name is free again once the first finished");
    await next.terminate();
  });

  test("names are per app, validated, and fromName needs an existing app", async () => {
    const other = await client.apps.fromName(unique("other-app"), { createIfMissing: true });
    const name = unique("shared");
    const a = await client.sandboxes.create(app, undefined, { name });
    const b = await client.sandboxes.create(other, undefined, { name });
    assert.notEqual(a.sandboxId, b.sandboxId);
    assert.equal((await client.sandboxes.fromName(other.name, name)).sandboxId, b.sandboxId);
    await Promise.all([a.terminate(), b.terminate()]);
    await assert.rejects(client.sandboxes.create(app, undefined, { name: "has space" }), InvalidError);
    await assert.rejects(client.sandboxes.create(app, undefined, { name: "x".repeat(65) }), InvalidError);
    await assert.rejects(client.sandboxes.fromName(unique("no-such-app"), "x"), NotFoundError);
  });
});

describe("tags and list", () => {
  test("list matches sandboxes having at least the given tags; setTags replaces them all", async () => {
    const tagApp = await client.apps.fromName(unique("tags"), { createIfMissing: true });
    const a = await client.sandboxes.create(tagApp, undefined, { tags: { env: "prod", tier: "web" } });
    const b = await client.sandboxes.create(tagApp, undefined, { tags: { env: "prod" } });
    const c = await client.sandboxes.create(tagApp, undefined, {});
    const ids = async (tags?: Record<string, string>) => {
      const out: string[] = [];
      for await (const sb of client.sandboxes.list({ appId: tagApp.appId, tags })) out.push(sb.sandboxId);
      return out.sort();
    };
    try {
      assert.deepEqual(await ids(), [a.sandboxId, b.sandboxId, c.sandboxId].sort());
      assert.deepEqual(await ids({ env: "prod" }), [a.sandboxId, b.sandboxId].sort());
      assert.deepEqual(await ids({ env: "prod", tier: "web" }), [a.sandboxId]);
      assert.deepEqual(await ids({ env: "dev" }), []);
      await a.setTags({ env: "dev" });
      assert.deepEqual(await a.getTags(), { env: "dev" }, "replaced as a whole");
      assert.deepEqual(await ids({ env: "prod" }), [b.sandboxId]);
      assert.deepEqual(await ids({ tier: "web" }), []);
      await c.setTags({ k: "v=with=equals" });
      assert.deepEqual(await ids({ k: "v=with=equals" }), [c.sandboxId], "a value may hold =");
      await assert.rejects(ids({ "a=b": "c" }), InvalidError, "a key holding = cannot be filtered on (tag=k=v)");
      // The CLI filters the same way.
      const ls = await cli(["ls", "--app", tagApp.name, "--tag", "env=prod", "--json"]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.deepEqual(
        ls.stdout.trim().split("\n").map((l) => JSON.parse(l).sandboxId),
        [b.sandboxId],
      );
      await b.terminate({ wait: true });
      assert.deepEqual(await ids({ env: "prod" }), [], "finished sandboxes are not listed");
    } finally {
      await Promise.all([a, b, c].map((sb) => sb.terminate().catch(() => undefined)));
    }
  });
});

describe("secrets", () => {
  test("named and inline secrets reach the sandbox; their values appear in no log, event, list or error", async () => {
    const named = `named-${randomBytes(12).toString("hex")}`;
    const inline = `inline-${randomBytes(12).toString("hex")}`;
    const perExec = `exec-${randomBytes(12).toString("hex")}`;
    const name = unique("db");
    const info = await client.secrets.create(name, { DB_PASSWORD: named, DB_USER: "app" });
    assert.deepEqual(info.keys.sort(), ["DB_PASSWORD", "DB_USER"]);
    await assert.rejects(client.secrets.create(name, { DB_PASSWORD: "x" }), AlreadyExistsError);
    const errors: string[] = [];
    await withSandbox(
      {
        secrets: [client.secrets.fromName(name, { requiredKeys: ["DB_PASSWORD"] }), client.secrets.fromObject({ TOKEN: inline })],
        env: { PLAIN: "visible" },
      },
      async (sb) => {
        const { out } = await sh(sb, 'echo "$DB_PASSWORD $DB_USER $TOKEN $PLAIN"');
        assert.equal(out, `${named} app ${inline} visible\n`);
        const p = await sb.exec(["sh", "-c", "echo $EXTRA"], { secrets: [client.secrets.fromObject({ EXTRA: perExec })] });
        assert.equal(await p.stdout.readText(), `${perExec}\n`);
        const events = JSON.stringify(await sb.events());
        for (const v of [named, inline, perExec]) assert.ok(!events.includes(v), "no value in the events");
      },
    );
    // Missing secrets and keys are errors that name them, not their values.
    for (const params of [
      { secrets: [client.secrets.fromName(unique("absent"))] },
      { secrets: [client.secrets.fromName(name, { requiredKeys: ["NOPE"] })] },
    ]) {
      const err = await client.sandboxes.create(app, undefined, params).then(
        async (sb) => {
          await sb.terminate();
          return assert.fail("create with a missing secret or key succeeded");
        },
        (e: unknown) => e,
      );
      assert.ok(err instanceof SbxError, String(err));
      errors.push((err as Error).message);
    }
    assert.match(errors[1]!, /NOPE/);
    const listed = JSON.stringify(await client.secrets.list());
    assert.ok(listed.includes(name) && !listed.includes(named), "list has names and keys only");
    const log = server.log();
    for (const v of [named, inline, perExec]) {
      assert.ok(!log.includes(v), "no value in the server's log");
      for (const m of errors) assert.ok(!m.includes(v), "no value in error messages");
    }
    await client.secrets.delete(name);
    await assert.rejects(client.secrets.delete(name), NotFoundError);
  });

  test("CLI: secrets create (args and --from-env), ls, rm — values never printed", async () => {
    const name = unique("cli-secret");
    const a = `a-${randomBytes(8).toString("hex")}`;
    const b = `b-${randomBytes(8).toString("hex")}`;
    const created = await cli(["secrets", "create", name, `API_KEY=${a}`, "--from-env", "FROM_ENV"], { FROM_ENV: b });
    assert.equal(created.code, 0, created.stderr);
    const again = await cli(["secrets", "create", name, "API_KEY=x"]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already/i);
    assert.equal((await cli(["secrets", "create", name, "API_KEY=y", "--overwrite"])).code, 0);
    const ls = await cli(["secrets", "ls"]);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, new RegExp(`${name}\\s+API_KEY`));
    const bad = await cli(["secrets", "create", name, `NOEQUALS${a}`]);
    assert.equal(bad.code, 2);
    const missing = await cli(["secrets", "create", name, "--from-env", "NOT_SET_ANYWHERE"]);
    assert.equal(missing.code, 2);
    for (const r of [created, again, ls, bad, missing]) {
      for (const v of [a, b]) assert.ok(!r.stdout.includes(v) && !r.stderr.includes(v), "no value printed");
    }
    const rm = await cli(["secrets", "rm", name]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.doesNotMatch((await cli(["secrets", "ls"])).stdout, new RegExp(name));
  });
});

describe("volumes", () => {
  test("data written in one sandbox is visible to the next; subPath mounts a sub-directory", async () => {
    const name = unique("vol");
    const vol = await client.volumes.fromName(name, { createIfMissing: true });
    await withSandbox({ volumes: { "/data": vol } }, async (sb) => {
      const { code, err } = await sh(sb, "mkdir -p /data/sub && echo one > /data/file && echo two > /data/sub/inner");
      assert.equal(code, 0, err);
    });
    await withSandbox({ volumes: { "/data": client.volumes.fromName(name), "/sub": vol.withMountOptions({ subPath: "sub" }) } }, async (sb) => {
      const { out } = await sh(sb, "cat /data/file /sub/inner; ls /sub");
      assert.equal(out, "one\ntwo\ninner\n");
    });
  });

  test("a volume mounted read-only cannot be written", async () => {
    const vol = await client.volumes.fromName(unique("ro"), { createIfMissing: true });
    await withSandbox({ volumes: { "/ro": vol.withMountOptions({ readOnly: true }), "/rw": vol } }, async (sb) => {
      const w = await sh(sb, "echo x > /ro/f");
      assert.notEqual(w.code, 0);
      assert.match(w.err, /read-only/i);
      assert.equal((await sh(sb, "echo y > /rw/f && cat /ro/f")).out, "y\n", "the same data, read through the read-only mount");
    });
  });

  test("two running sandboxes share an ephemeral volume; a mounted volume cannot be deleted", async () => {
    const eph = await client.volumes.ephemeral();
    assert.equal(eph.name, null);
    const a = await client.sandboxes.create(app, undefined, { volumes: { "/shared": eph } });
    const b = await client.sandboxes.create(app, undefined, { volumes: { "/shared": eph } });
    try {
      await sh(a, "echo hi > /shared/x");
      assert.equal((await sh(b, "cat /shared/x")).out, "hi\n");
      await assert.rejects(client.volumes.delete(eph), ConflictError);
    } finally {
      await a.terminate({ wait: true });
      await b.terminate({ wait: true });
    }
  });

  test("list, delete, and the CLI's volumes create / ls / rm", async () => {
    const name = unique("cli-vol");
    const created = await cli(["volumes", "create", name]);
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^vo-[a-z0-9]+\n$/);
    const vol = await client.volumes.fromName(name);
    assert.equal(`${vol.volumeId}\n`, created.stdout);
    assert.ok((await client.volumes.list()).some((v) => v.name === name));
    const ls = await cli(["volumes", "ls"]);
    assert.match(ls.stdout, new RegExp(`${vol.volumeId}\\s+${name}`));
    const sb = await client.sandboxes.create(app, undefined, { volumes: { "/v": vol } });
    const busy = await cli(["volumes", "rm", name]);
    assert.equal(busy.code, 1, "refused while mounted");
    await sb.terminate({ wait: true });
    const rm = await cli(["volumes", "rm", name]);
    assert.equal(rm.code, 0, rm.stderr);
    await assert.rejects(client.volumes.fromName(name), NotFoundError);
    await client.volumes.delete(name, { allowMissing: true });
  });
});
