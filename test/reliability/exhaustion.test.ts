// Resource exhaustion, as a hostile sandbox would try it, through the real
// server: fork bomb, memory bomb (exec and entrypoint), disk fill, fd
// exhaustion, 10 GB of output read by a slow client that then disconnects.
// Each time the limit must hold, the server and a neighbour sandbox must keep
// answering, and the host must be unaffected. Bounded in time: every
// attack runs for seconds, not until it gives up.
//
//   node --import tsx --test test/reliability/exhaustion.test.ts
import { after, afterEach, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync, statfsSync } from "node:fs";
import { join } from "node:path";
import type { App, SbxClient, Sandbox } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";
import { rssKiB } from "../security/support.js";

let server: TestServer;
let client: SbxClient;
let app: App;
/** Runs beside every attack and must keep answering. */
let neighbour: Sandbox;

before(async () => {
  server = await startTestServer();
  client = server.client();
  app = await client.apps.fromName("exhaustion", { createIfMissing: true });
  neighbour = await client.sandboxes.create(app);
});

/** Sandboxes a test made: terminated after it even when it fails (a live fork bomb would starve the next test). */
const made: Sandbox[] = [];
async function create(image?: undefined, params?: Parameters<SbxClient["sandboxes"]["create"]>[2]): Promise<Sandbox> {
  const sb = await client.sandboxes.create(app, image, params);
  made.push(sb);
  return sb;
}

afterEach(async () => {
  await Promise.all(made.splice(0).map((sb) => sb.terminate().catch(() => undefined)));
});

after(async () => {
  await neighbour?.terminate().catch(() => undefined);
  await server?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function sh(sb: Sandbox, script: string, timeoutMs = 60_000): Promise<{ code: number; out: string; err: string }> {
  const p = await sb.exec(["sh", "-c", script], { timeoutMs });
  const [out, err, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
  return { code, out, err };
}

/** The server answers /healthz and the neighbour runs a command, each within `withinMs`. */
async function stillServing(withinMs: number): Promise<void> {
  const t0 = Date.now();
  const h = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(withinMs) });
  assert.equal(h.status, 200);
  const r = await sh(neighbour, "echo alive");
  assert.equal(r.out, "alive\n");
  assert.ok(Date.now() - t0 < withinMs, `server + neighbour answered in ${Date.now() - t0} ms (limit ${withinMs})`);
}

function serverPid(): number {
  const pid = server.pid?.();
  assert.ok(pid && pid > 0, "test server pid");
  return pid;
}

/** Waits until the runtime has destroyed a finished sandbox (its run dir is no longer a link into its disk). */
async function destroyed(dir: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (!existsSync(join(dir, "disk.img"))) return;
    await sleep(100);
  }
  assert.fail(`${dir} was not destroyed within 30 s`);
}

const cgroupFile = (ctrl: string, id: string, file: string) => `/sys/fs/cgroup/${ctrl}/sbx/${id}/${file}`;

test("fork bomb: the pids limit holds, server and neighbour keep answering, terminate takes < 5 s", async () => {
  const sb = await create();
  const pidsMax = Number(readFileSync(cgroupFile("pids", sb.sandboxId, "pids.max"), "utf8"));
  assert.equal(pidsMax, 1024);
  await sb.exec(["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 60"], { timeoutMs: 60_000, stdout: "ignore", stderr: "ignore" });
  // Sample until the bomb presses against the ceiling (how fast depends on the host's load).
  let peak = 0;
  for (let i = 0; i < 300 && peak < pidsMax * 0.9; i++) {
    peak = Math.max(peak, Number(readFileSync(cgroupFile("pids", sb.sandboxId, "pids.current"), "utf8")));
    await sleep(100);
  }
  assert.ok(peak >= pidsMax * 0.9, `the bomb did not reach the limit in 30 s (peak ${peak} pids)`);
  assert.ok(peak <= pidsMax, `pids.current ${peak} > pids.max ${pidsMax}`);
  await stillServing(5_000);
  const t0 = Date.now();
  await sb.terminate();
  const info = await client.sandboxes.fromId(sb.sandboxId);
  assert.equal(await info.poll(), 137);
  assert.ok(Date.now() - t0 < 5_000, `terminate took ${Date.now() - t0} ms`);
  assert.ok(!existsSync(cgroupFile("pids", sb.sandboxId, "pids.current")), "cgroup removed");
});

const PY_BOMB = "a = []\nwhile True: a.append(bytearray(16 << 20))";

test("memory bomb: an exec gets 137, an entrypoint ends the sandbox with reason oom and 137, the neighbour is unaffected", async () => {
  const sb = await create(undefined, { memoryLimitMiB: 256 });
  const p = await sb.exec(["python3", "-c", PY_BOMB], { timeoutMs: 60_000 });
  assert.equal(await p.wait(), 137);
  // The sandbox survives its process's OOM kill, and a later clean exit is not an OOM.
  assert.equal((await sh(sb, "echo ok")).out, "ok\n");
  await stillServing(5_000);
  await sb.terminate();

  const entry = await create(undefined, { memoryLimitMiB: 256, command: ["python3", "-c", PY_BOMB] });
  assert.equal(await entry.wait(), 137);
  const events = await entry.events();
  const finished = events.find((e) => e.type === "Finished");
  assert.ok(finished, "Finished event");
  assert.match(String(finished.reason), /^oom/, JSON.stringify(finished));
  await stillServing(5_000);
});

test("disk fill: writes stop at the sandbox's disk limit (upper layer and /.sbx alike); the host loses at most that", async () => {
  const sb = await create();
  const dir = join(server.dataDir, "sandboxes", sb.sandboxId);
  const hostBefore = statfsSync(server.dataDir);
  const freeBefore = hostBefore.bavail * hostBefore.bsize;
  // fallocate takes the space at once (ext4 keeps what it got when it fails),
  // then real writes into the root fs and into /.sbx must fail with ENOSPC.
  // The process's own stdout is on that disk too: results are kept in a file
  // on /tmp (tmpfs) and printed once a 1 MiB ballast file is removed.
  const r = await sh(
    sb,
    `exec 3>/tmp/result
     dd if=/dev/zero of=/.sbx/ballast bs=1M count=1 2>/dev/null
     fallocate -l 64G /big 2>&3; echo "fallocate=$?" >&3
     dd if=/dev/zero of=/fill bs=1M count=64 2>&1 | grep -o 'No space left on device' >&3; echo "dd-root" >&3
     dd if=/dev/zero of=/.sbx/fill bs=1M count=64 2>&1 | grep -o 'No space left on device' >&3; echo "dd-sbx" >&3
     df -B1 --output=size,avail / | tail -1 >&3
     rm -f /.sbx/ballast /.sbx/fill /fill
     cat /tmp/result; rm -f /big`,
    120_000,
  );
  assert.match(r.out, /fallocate=1/, `a 64G fallocate must fail: ${r.out}${r.err}`);
  assert.match(r.out, /No space left on device\ndd-root\nNo space left on device\ndd-sbx/, r.out);
  const [size, avail] = r.out.trim().split("\n").pop()!.trim().split(/\s+/).map(Number);
  assert.ok(size! <= 10.5 * 1024 ** 3, `the sandbox sees a ${size} byte disk`);
  assert.ok(avail! < 16 << 20, `${avail} bytes still free: the disk did not fill`);
  // The image on the host: sparse, never more than its size.
  const img = statSync(join(dir, "disk.img"));
  assert.ok(img.blocks * 512 <= img.size + (64 << 20), `disk.img uses ${img.blocks * 512} bytes for a ${img.size} byte disk`);
  const hostAfter = statfsSync(server.dataDir);
  const lost = freeBefore - hostAfter.bavail * hostAfter.bsize;
  assert.ok(lost < 10.5 * 1024 ** 3, `the host lost ${lost} bytes`);
  await stillServing(5_000);
  // The neighbour can still write.
  assert.equal((await sh(neighbour, "dd if=/dev/zero of=/tmp/x bs=1M count=8 2>/dev/null && echo wrote")).out, "wrote\n");
  await sb.terminate();
  await destroyed(dir);
  assert.ok(!existsSync(join(dir, "disk.img")), "disk image removed with the sandbox");
});

test("fd exhaustion: RLIMIT_NOFILE holds inside, the agent keeps serving", async () => {
  const sb = await create();
  const r = await sh(
    sb,
    `python3 -c '
import os, errno
fds = []
try:
    while True: fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    print(len(fds), errno.errorcode[e.errno])
'`,
  );
  const [count, err] = r.out.trim().split(" ");
  assert.equal(err, "EMFILE", r.out + r.err);
  assert.ok(Number(count) <= 1024 && Number(count) > 1000, `opened ${count} fds`);
  // Many processes each at their limit: the agent still answers.
  await sb.exec(
    ["sh", "-c", `for i in $(seq 1 20); do python3 -c 'import os, time\nfds=[]\ntry:\n  while True: fds.append(os.open("/dev/null", 0))\nexcept OSError: time.sleep(30)' & done; wait`],
    { timeoutMs: 40_000, stdout: "ignore", stderr: "ignore" },
  );
  await sleep(2000);
  assert.equal((await sh(sb, "echo still")).out, "still\n");
  await stillServing(5_000);
  await sb.terminate();
});

test("10 GB of output, a slow reader then a disconnect: server RSS stays bounded and the server keeps serving", async () => {
  const TOTAL = 10_000_000_000;
  const sb = await create();
  const pid = serverPid();
  const rss0 = rssKiB(pid);
  const p = await sb.exec(["head", "-c", String(TOTAL), "/dev/zero"], { timeoutMs: 600_000 });
  const url = `${server.url}/v1/sandboxes/${sb.sandboxId}/execs/${p.execId}/stdout?offset=0`;
  const headers = { authorization: `Bearer ${server.token}` };

  // Slow reader: ~4 MiB/s for 8 s while the producer writes at disk speed.
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  let got = 0;
  let maxRss = rss0;
  const tEnd = Date.now() + 8_000;
  while (Date.now() < tEnd) {
    const { value, done } = await reader.read();
    if (done) break;
    got += value.length;
    if (got > (Date.now() - (tEnd - 8_000)) * 4_000) await sleep(50);
    maxRss = Math.max(maxRss, rssKiB(pid));
  }
  ac.abort(); // the client goes away mid-stream
  await reader.cancel().catch(() => undefined);
  const outFile = join(server.dataDir, "sandboxes", sb.sandboxId, "run", "procs", p.execId, "stdout");
  const written = statSync(outFile).size;
  assert.ok(written > got, `the producer (${written} bytes) ran ahead of the slow reader (${got} bytes)`);

  // A fast reader from an offset far behind the writer drains a few GB, sampling RSS.
  const res2 = await fetch(`${url.replace(/offset=0$/, `offset=${got}`)}`, { headers });
  const r2 = res2.body!.getReader();
  let got2 = 0;
  const t2 = Date.now() + 15_000;
  while (Date.now() < t2) {
    const { value, done } = await r2.read();
    if (done) break;
    got2 += value.length;
    if ((got2 & ((64 << 20) - 1)) < value.length) maxRss = Math.max(maxRss, rssKiB(pid));
  }
  await r2.cancel().catch(() => undefined);
  maxRss = Math.max(maxRss, rssKiB(pid));
  assert.ok(got2 > 256 << 20, `the fast reader got only ${got2} bytes in 15 s`);
  assert.ok(maxRss - rss0 < 200 * 1024, `server RSS grew from ${rss0} KiB to ${maxRss} KiB`);
  await stillServing(5_000);
  const t0 = Date.now();
  await sb.terminate();
  assert.ok(Date.now() - t0 < 10_000, `terminate took ${Date.now() - t0} ms`);
  // What is kept of it on the host is bounded (disk.ts retainBytes, 256 MiB).
  await destroyed(join(server.dataDir, "sandboxes", sb.sandboxId));
  const kept = statSync(outFile).size;
  assert.ok(kept <= 256 << 20, `kept ${kept} bytes of output after destroy`);
  assert.ok(existsSync(`${outFile}.truncated`), "the cut is recorded");
});
