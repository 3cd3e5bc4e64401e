// The server can die without losing anything: with 20 sandboxes running and
// output streaming, SIGKILL the server and start it again. Every sandbox is
// adopted and still runs; a client resuming each stream from the offset it
// had reached gets every byte once; processes that exited while the server
// was down report their codes; a sandbox whose timeout passed meanwhile is
// finished at once with reason timeout.
//
//   node --import tsx --test test/reliability/restart-survival.test.ts
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { App, Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let app: App;

before(async () => {
  server = await startTestServer();
  app = await server.client().apps.fromName("restart-survival", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
});

const N = 20;
const LINES = 400;
const expected = Array.from({ length: LINES }, (_, i) => `line-${i}\n`).join("");

/** Reads a stream through the API from `offset` until it ends (or `maxBytes`), returning the text. */
async function readFrom(sandboxId: string, execId: string, offset: number, maxBytes = Infinity): Promise<string> {
  const res = await fetch(`${server.url}/v1/sandboxes/${sandboxId}/execs/${execId}/stdout?offset=${offset}`, {
    headers: { authorization: `Bearer ${server.token}` },
  });
  assert.equal(res.status, 200, await res.clone().text());
  assert.equal(res.headers.get("x-sbx-offset"), String(offset));
  const reader = res.body!.getReader();
  const chunks: Buffer[] = [];
  let n = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(Buffer.from(value));
    n += value.length;
    if (n >= maxBytes) {
      await reader.cancel();
      break;
    }
  }
  return Buffer.concat(chunks).toString("utf8");
}

test(`SIGKILL with ${N} sandboxes streaming: all adopted, no byte lost or repeated, exits and timeouts recorded`, async () => {
  const t0 = Date.now();
  const lap = (what: string) => console.error(`# ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const c1 = server.client();
  const sbs: Sandbox[] = [];
  for (let i = 0; i < N; i += 5) {
    sbs.push(...(await Promise.all(Array.from({ length: Math.min(5, N - i) }, () => c1.sandboxes.create(app)))));
  }
  // One more whose 3 s timeout passes while the server is down.
  const shortLived = await c1.sandboxes.create(app, undefined, { timeoutMs: 3000 });

  // In each: a stream that outlives the kill, and a process that exits while the server is down.
  const streams = await Promise.all(
    // python, not a shell loop: 20 shells forking `sleep` 400 times each would swamp 2 cores.
    sbs.map((sb) =>
      sb.exec(["python3", "-u", "-c", `import sys, time\nfor i in range(${LINES}): print(f"line-{i}"); time.sleep(0.015)\nsys.exit(7)`]),
    ),
  );
  const quick = await Promise.all(sbs.map((sb, i) => sb.exec(["sh", "-c", `sleep 1.5; exit ${10 + i}`])));

  // Each client reads part of its stream, then "loses" the connection at an offset.
  const offsets: number[] = [];
  const heads: string[] = [];
  await Promise.all(
    streams.map(async (p, i) => {
      const head = await readFrom(sbs[i]!.sandboxId, p.execId, 0, 200 + i * 10);
      heads[i] = head;
      offsets[i] = Buffer.byteLength(head);
    }),
  );

  lap("created and streaming");
  await server.kill();
  await new Promise((r) => setTimeout(r, 4000)); // outputs keep coming, quick ones exit, the timeout passes
  const tRestart = Date.now();
  await server.restart();
  const c2 = server.client();
  lap("restarted");

  // The sandbox whose timeout passed is finished at once, reason timeout (124).
  const sl = await c2.sandboxes.fromId(shortLived.sandboxId);
  const code = await sl.wait();
  assert.equal(code, 124, "returncode of a timed-out sandbox");
  const fin = (await sl.events()).find((e) => e.type === "Finished");
  assert.match(String(fin?.reason), /^timeout/, JSON.stringify(fin));
  assert.ok(Date.now() - tRestart < 10_000, `timeout recorded ${Date.now() - tRestart} ms after restart`);

  for (let i = 0; i < N; i++) {
    const sb = await c2.sandboxes.fromId(sbs[i]!.sandboxId);
    assert.equal(await sb.poll(), null, `sandbox ${i} should still be running`);
    // Resume from the offset reached before the kill: the rest, exactly.
    const rest = await readFrom(sbs[i]!.sandboxId, streams[i]!.execId, offsets[i]!);
    assert.equal(heads[i]! + rest, expected, `stream ${i}: bytes lost or repeated across the restart`);
    const st = await fetch(`${server.url}/v1/sandboxes/${sbs[i]!.sandboxId}/execs/${quick[i]!.execId}`, {
      headers: { authorization: `Bearer ${server.token}` },
    }).then((r) => r.json() as Promise<{ returncode: number | null }>);
    assert.equal(st.returncode, 10 + i, `exit code of the process that ended while the server was down (${i})`);
    const wait = await fetch(`${server.url}/v1/sandboxes/${sbs[i]!.sandboxId}/execs/${streams[i]!.execId}/wait?timeoutMs=20000`, {
      headers: { authorization: `Bearer ${server.token}` },
    }).then((r) => r.json() as Promise<{ returncode: number | null }>);
    assert.equal(wait.returncode, 7);
    const p = await sb.exec(["echo", `after-${i}`]);
    assert.equal(await p.stdout.readText(), `after-${i}\n`);
  }
  lap("checked");
  await Promise.all(sbs.map(async (sb) => (await c2.sandboxes.fromId(sb.sandboxId)).terminate()));
  lap("terminated");
});
