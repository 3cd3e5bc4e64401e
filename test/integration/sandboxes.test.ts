// Sandboxes and exec against the real server, runtime and agent: streams,
// stdin, return codes, terminate, concurrency, and the errors a user meets.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { request } from "node:http";
import { ConflictError, InvalidError, NotFoundError, SbxClient, type App, type Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";
import { defaultTurns } from "../../packages/server/src/runtime/turns.js";

let server: TestServer;

/**
 * POSTs with node:http and takes the answer as soon as it comes: a server may
 * answer an oversized body before reading it all and then close, and the
 * client's remaining writes failing then is not the server's answer.
 */
function postEarlyAnswer(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; text: string }> {
  // The server may answer from the headers alone (413 from Content-Length)
  // and close: a body written meanwhile meets EPIPE, and the answer can be
  // lost with the socket. So the headers go first and the body only if no
  // answer came within 200 ms.
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(url, { method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(body)) } }, (res) => {
      answered = true;
      clearTimeout(later);
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, text });
        req.destroy();
      });
      res.on("error", reject);
    });
    req.on("error", (err) => {
      if (answered) return; // our writes were cut off after the answer
      reject(err);
    });
    req.flushHeaders();
    const later = setTimeout(() => req.end(body), 200);
  });
}
let client: SbxClient;
let app: App;

before(async () => {
  server = await startTestServer();
  client = server.client();
  app = await client.apps.fromName("it-sandboxes", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
});

async function withSandbox<T>(fn: (sb: Sandbox) => Promise<T>, params: Record<string, unknown> = {}): Promise<T> {
  const sb = await client.sandboxes.create(app, undefined, params);
  try {
    return await fn(sb);
  } finally {
    await sb.terminate().catch(() => undefined);
  }
}

describe("exec streams", () => {
  test("100 MB of stdout arrives byte-exact", async () => {
    await withSandbox(async (sb) => {
      const gen = await sb.exec(["sh", "-c", "head -c 104857600 /dev/urandom > /tmp/blob && sha256sum /tmp/blob"]);
      assert.equal(await gen.wait(), 0);
      const expected = (await gen.stdout.readText()).split(" ")[0];
      const p = await sb.exec(["cat", "/tmp/blob"], { mode: "binary" });
      const hash = createHash("sha256");
      let bytes = 0;
      for await (const chunk of p.stdout) {
        hash.update(chunk as Uint8Array);
        bytes += (chunk as Uint8Array).length;
      }
      assert.equal(await p.wait(), 0);
      assert.equal(bytes, 104857600);
      assert.equal(hash.digest("hex"), expected);
    });
  });

  test("a BYOB reader gets stdout straight into its own buffer, byte-exact, with the exit code", async () => {
    await withSandbox(async (sb) => {
      const gen = await sb.exec(["sh", "-c", "head -c 20000000 /dev/urandom > /tmp/blob && sha256sum /tmp/blob"]);
      assert.equal(await gen.wait(), 0);
      const expected = (await gen.stdout.readText()).split(" ")[0];
      const p = await sb.exec(["sh", "-c", "cat /tmp/blob; exit 9"], { mode: "binary" });
      const reader = p.stdout.getReader({ mode: "byob" });
      const hash = createHash("sha256");
      let buf = new Uint8Array(100_003);
      let bytes = 0;
      for (;;) {
        const { done, value } = await reader.read(buf);
        if (done) break;
        hash.update(value!);
        bytes += value!.length;
        buf = new Uint8Array(value!.buffer);
      }
      assert.equal(bytes, 20_000_000);
      assert.equal(hash.digest("hex"), expected);
      assert.equal(p.returncode, 9, "known from the stream's trailer");
    });
  });

  test("stdin round trip through cat, with EOF", async () => {
    await withSandbox(async (sb) => {
      const p = await sb.exec(["cat"]);
      await p.stdin.writeText("hello from stdin\n");
      await p.stdin.writeBytes(new TextEncoder().encode("line two ✓\n"));
      await p.stdin.close();
      assert.equal(await p.stdout.readText(), "hello from stdin\nline two ✓\n");
      assert.equal(await p.wait(), 0);
    });
  });

  test("stdout and stderr are separate; workdir and env apply", async () => {
    await withSandbox(async (sb) => {
      const p = await sb.exec(["sh", "-c", 'echo "$GREETING from $(pwd)"; echo oops >&2'], {
        workdir: "/tmp",
        env: { GREETING: "hi" },
      });
      assert.equal(await p.stdout.readText(), "hi from /tmp\n");
      assert.equal(await p.stderr.readText(), "oops\n");
    });
  });

  test("a stream read from an offset resumes where it left off", async () => {
    await withSandbox(async (sb) => {
      const p = await sb.exec(["sh", "-c", "printf 0123456789"]);
      await p.wait();
      const res = await fetch(`${server.url}/v1/sandboxes/${sb.sandboxId}/execs/${p.execId}/stdout?offset=4`, {
        headers: { authorization: `Bearer ${server.token}` },
      });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "456789");
    });
  });

  test("an output stream read to its end carries the exit code: wait() then makes no call", async () => {
    await withSandbox(async (sb) => {
      const p = await sb.exec(["sh", "-c", "echo out; sleep 0.3; exit 3"]);
      assert.equal(p.returncode, null);
      assert.equal(await p.stdout.readText(), "out\n");
      assert.equal(p.returncode, 3, "known from the stream's trailer, before any wait or poll");
      assert.equal(await p.wait(), 3);
      // On the wire: an HTTP trailer, on stderr too, including a code from a signal.
      const q = await sb.exec(["sh", "-c", "kill -TERM $$"]);
      await q.wait();
      const trailers = await new Promise<NodeJS.Dict<string>>((resolve, reject) => {
        const url = `${server.url}/v1/sandboxes/${sb.sandboxId}/execs/${q.execId}/stderr`;
        request(url, { headers: { authorization: `Bearer ${server.token}` } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.trailers));
          res.on("error", reject);
        })
          .on("error", reject)
          .end();
      });
      assert.equal(trailers["x-sbx-exit-code"], String(128 + 15));
    });
  });

  test("a process silent for longer than the client's connect timeout still streams its output", async () => {
    // The connect timeout bounds the wait for a stream's headers: the server
    // must send them before the first byte of output, however late that is.
    const patient = new SbxClient({ serverUrl: server.url, token: server.token, connectTimeoutMs: 1_000 });
    try {
      const sb = await patient.sandboxes.fromId((await client.sandboxes.create(app)).sandboxId);
      try {
        const p = await sb.exec(["sh", "-c", "sleep 2.5; echo late"]);
        assert.equal(await p.stdout.readText(), "late\n");
        assert.equal(await p.wait(), 0);
      } finally {
        await sb.terminate();
      }
    } finally {
      patient.close();
    }
  });
});

describe("return codes", () => {
  test("exit codes 0 and 42", async () => {
    await withSandbox(async (sb) => {
      assert.equal(await (await sb.exec(["true"])).wait(), 0);
      assert.equal(await (await sb.exec(["sh", "-c", "exit 42"])).wait(), 42);
    });
  });

  test("an exec timeout kills the whole process group: 137", async () => {
    await withSandbox(async (sb) => {
      const p = await sb.exec(["sh", "-c", "sleep 300 & sleep 300 & echo started; wait"], { timeoutMs: 1000 });
      assert.equal(await p.wait(), 137);
      const ps = await sb.exec(["sh", "-c", "for d in /proc/[0-9]*; do cat $d/cmdline; echo; done | grep -c '^sleep' || true"]);
      assert.equal((await ps.stdout.readText()).trim(), "0");
    });
  });

  test("a sandbox that reaches its timeout finishes with 124", async () => {
    const sb = await client.sandboxes.create(app, undefined, { timeoutMs: 1000 });
    assert.equal(await sb.wait(), 124);
    const events = await sb.events();
    const finished = events.find((e) => e.type === "Finished");
    assert.equal(finished?.reason, "timeout");
  });

  test("terminate of a busy sandbox returns 137 promptly", async () => {
    const sb = await client.sandboxes.create(app);
    await sb.exec(["sh", "-c", "for i in 1 2 3 4; do (while :; do :; done) & done; wait"]);
    const t0 = Date.now();
    assert.equal(await sb.terminate({ wait: true }), 137);
    assert.ok(Date.now() - t0 < 10_000, "terminate took too long");
    const again = await client.sandboxes.fromId(sb.sandboxId);
    assert.equal(await again.poll(), 137);
  });

  test("lifecycle events are stored in order with reasons", async () => {
    const sb = await client.sandboxes.create(app);
    await sb.terminate({ wait: true });
    const again = await client.sandboxes.fromId(sb.sandboxId);
    const events = await again.events();
    assert.deepEqual(events.map((e) => e.type), ["Created", "Scheduled", "Started", "Finished"]);
    assert.equal(events[3]!.reason, "terminated");
    assert.equal(events[3]!.returncode, 137);
  });
});

describe("many at once", () => {
  test("20 sandboxes created and used concurrently", async () => {
    const sbs = await Promise.all(Array.from({ length: 20 }, () => client.sandboxes.create(app)));
    try {
      assert.equal(new Set(sbs.map((s) => s.sandboxId)).size, 20);
      const outs = await Promise.all(
        sbs.map(async (sb, i) => {
          const p = await sb.exec(["sh", "-c", `echo sandbox-${i}; hostname`]);
          return p.stdout.readText();
        }),
      );
      outs.forEach((o, i) => assert.match(o, new RegExp(`^sandbox-${i}\n`)));
      // They took turns (runtime/turns.ts): at most one create per core ran at once, the rest waited.
      const queued = sbs.map((sb) => {
        const m = new RegExp(`sandbox ${sb.sandboxId} created in \\d+ ms \\(queue (\\d+(?:\\.\\d+)?)`).exec(server.log());
        assert.ok(m, `the server logged the create of ${sb.sandboxId}`);
        return Number(m[1]);
      });
      const width = defaultTurns();
      assert.ok(queued.filter((ms) => ms >= 20).length >= 20 - width, `at least ${20 - width} of 20 waited their turn: ${queued.join(", ")}`);
    } finally {
      await Promise.all(sbs.map((sb) => sb.terminate({ wait: true })));
    }
    // Their destroys took turns in a line of their own.
    const destroyQueued = sbs.map((sb) => {
      const m = new RegExp(`sandbox ${sb.sandboxId} cleaned up in \\d+ ms \\(queue (\\d+(?:\\.\\d+)?)`).exec(server.log());
      assert.ok(m, `the server logged the cleanup of ${sb.sandboxId}`);
      return Number(m[1]);
    });
    const width = defaultTurns();
    assert.ok(destroyQueued.filter((ms) => ms >= 20).length >= 20 - width, `at least ${20 - width} of 20 destroys waited their turn: ${destroyQueued.join(", ")}`);
  });
});

describe("errors", () => {
  test("an unknown sandbox id is NotFoundError", async () => {
    await assert.rejects(client.sandboxes.fromId("sb-doesnotexist0000000"), NotFoundError);
  });

  test("exec in a finished sandbox is a clear ConflictError", async () => {
    const sb = await client.sandboxes.create(app);
    await sb.terminate({ wait: true });
    const again = await client.sandboxes.fromId(sb.sandboxId);
    await assert.rejects(again.exec(["true"]), (err: unknown) => {
      assert.ok(err instanceof ConflictError);
      assert.match((err as Error).message, /finished/);
      return true;
    });
  });

  test("invalid parameters are InvalidError naming the field", async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ timeoutMs: 1500 }, /timeoutMs.*multiple of 1000/],
      [{ timeoutMs: 25 * 3600 * 1000 }, /timeoutMs/],
      [{ workdir: "relative/path" }, /workdir.*absolute/],
      [{ workdir: "/proc/self/fd/7" }, /workdir/],
      [{ name: "bad name!" }, /name/],
      [{ env: { "1BAD": "x" } }, /env/],
      [{ blockNetwork: true, encryptedPorts: [8080] }, /encryptedPorts cannot be combined with blockNetwork/],
      [{ blockNetwork: true, cidrAllowlist: ["10.0.0.0/8"] }, /cidrAllowlist cannot be combined with blockNetwork/i],
      [{ readinessProbe: { kind: "exec", argv: [] } }, /readinessProbe/],
    ];
    for (const [params, re] of cases) {
      await assert.rejects(client.sandboxes.create(app, undefined, params), (err: unknown) => {
        assert.ok(err instanceof InvalidError, `${JSON.stringify(params)} gave ${String(err)}`);
        assert.match((err as Error).message, re);
        return true;
      });
    }
  });

  test("bad requests are 4xx with a JSON error, never 500, and the server keeps serving", async () => {
    const h = { authorization: `Bearer ${server.token}`, "content-type": "application/json" };
    const bodies = ["{", "[]", '{"appId": 1}', JSON.stringify({ appId: app.appId, image: { kind: "nope" } }), "x".repeat(2_000_000)];
    for (const body of bodies) {
      const res = await postEarlyAnswer(`${server.url}/v1/sandboxes`, h, body);
      assert.ok(res.status >= 400 && res.status < 500, `status ${res.status} for ${body.slice(0, 40)}`);
      const json = JSON.parse(res.text) as { error: { code: string; message: string } };
      assert.ok(json.error.message.length > 0);
    }
    const noAuth = await fetch(`${server.url}/v1/sandboxes/sb-x`);
    assert.equal(noAuth.status, 401);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  });

  test("the OpenAPI document is served and lists the routes", async () => {
    const res = await fetch(`${server.url}/v1/openapi.json`, { headers: { authorization: `Bearer ${server.token}` } });
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown> };
    assert.equal(doc.openapi, "3.1.0");
    assert.ok(doc.paths["/v1/sandboxes/{sandboxId}/execs"]);
  });
});

describe("events", () => {
  test("the event stream replays stored events and follows live ones until Finished", async () => {
    const sb = await client.sandboxes.create(app, undefined, { command: ["sh", "-c", "sleep 1; exit 3"] });
    const res = await fetch(`${server.url}/v1/sandboxes/${sb.sandboxId}/events/stream`, {
      headers: { authorization: `Bearer ${server.token}` },
    });
    assert.equal(res.headers.get("content-type"), "text/event-stream");
    const text = await res.text(); // ends by itself after Finished
    const events = text
      .split("\n\n")
      .filter(Boolean)
      .map((block) => JSON.parse(block.split("\n").find((l) => l.startsWith("data: "))!.slice(6)) as { type: string; reason: string; returncode: number });
    assert.deepEqual(events.map((e) => e.type), ["Created", "Scheduled", "Started", "Finished"]);
    assert.equal(events[3]!.reason, "exited");
    assert.equal(events[3]!.returncode, 3);
  });
});
