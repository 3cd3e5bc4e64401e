import { startServer } from "./server.js";
const s = await startServer();
try {
  const app = await s.client.apps.fromName("prof", { createIfMissing: true });
  const sb = await s.client.sandboxes.create(app, undefined, { timeoutMs: 600000 });
  const http = (s.client as any);
  const a: number[] = [], b: number[] = [], c: number[] = [];
  for (let i = 0; i < 60; i++) {
    const t0 = performance.now();
    const p = await sb.exec(["true"], { stdout: "ignore", stderr: "ignore" });
    const t1 = performance.now();
    await p.wait();
    const t2 = performance.now();
    a.push(t1 - t0); b.push(t2 - t1); c.push(t2 - t0);
  }
  const med = (x: number[]) => x.sort((p, q) => p - q)[x.length >> 1]!.toFixed(2);
  console.log(s.log().split("\n").filter(l=>l.includes("PROF")).slice(-2).join("\n")); console.log("exec POST", med(a), "wait", med(b), "total", med(c));
  await sb.terminate();
} finally { await s.stop(); }
