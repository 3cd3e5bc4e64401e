import { startServer } from "./server.js";
import { sleep } from "./stats.js";
import { HttpClient } from "../packages/sdk/dist/http.js";
const J: any[] = [];
const orig = HttpClient.prototype.json;
HttpClient.prototype.json = async function (o: any) { const t = performance.now(); try { return await orig.call(this, o); } finally { if (o.method === "POST" && o.path === "/v1/sandboxes") J.push([performance.now() - t, JSON.stringify(o.body).length]); } };
const s = await startServer(["--warm-pool", "2"]);
try {
  const app = await s.client.apps.fromName("prof", { createIfMissing: true });
  const f = await s.client.sandboxes.create(app); await f.terminate();
  await sleep(5000);
  const A: number[][] = [];
  for (let i = 0; i < 12; i++) {
    await sleep(1200);
    const t0 = performance.now();
    const sb = await s.client.sandboxes.create(app, undefined, { timeoutMs: 600000 });
    const t1 = performance.now();
    const p = await sb.exec(["echo", "hi"]);
    const t2 = performance.now();
    const out = await p.stdout.readText();
    const t3 = performance.now();
    await p.wait();
    const t4 = performance.now();
    A.push([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0]);
    await sb.terminate();
  }
  const med = (i: number) => A.map((x) => x[i]!).sort((a, b) => a - b)[A.length >> 1]!.toFixed(2);
  console.log(s.log().split("\n").filter(l=>l.includes("PROF")).slice(-4).join("\n"));
  console.log("http.json create", J.slice(-3).map((x) => x[0].toFixed(2) + "ms/" + x[1] + "B").join(" "));
  console.log("create", med(0), "exec", med(1), "stdout", med(2), "wait", med(3), "total", med(4));
} finally { await s.stop(); }
