import { startServer, createTimings } from "../server.ts";
const s = await startServer();
try {
  const c = s.client;
  const app = await c.apps.fromName("bench", { createIfMissing: true });
  for (let i = 0; i < 4; i++) {
    let t = performance.now();
    const sb = await c.sandboxes.create(app);
    const tc = performance.now() - t;
    const p = await sb.exec(["echo", "hi"]);
    const out = await p.stdout.readText();
    const code = await p.wait();
    console.log("cold", tc.toFixed(0), (performance.now() - t).toFixed(0), JSON.stringify(out), code);
    if (i === 3) {
      for (let j = 0; j < 5; j++) { t = performance.now(); const q = await sb.exec(["true"]); await q.wait(); console.log("exec", (performance.now() - t).toFixed(1)); }
      const N = 256 * 1024 * 1024;
      t = performance.now();
      const q = await sb.exec(["head", "-c", String(N), "/dev/zero"], { mode: "binary" });
      let n = 0; for await (const ch of q.stdout) n += ch.length; await q.wait();
      let ms = performance.now() - t; console.log("stdout", n, ms.toFixed(0), (n / ms / 1000).toFixed(0), "MB/s");
      t = performance.now();
      const w = await sb.exec(["wc", "-c"]);
      const buf = new Uint8Array(16 << 20);
      for (let k = 0; k < N / buf.length; k++) await w.stdin.writeBytes(buf);
      await w.stdin.close();
      const o = await w.stdout.readText(); await w.wait();
      ms = performance.now() - t; console.log("stdin", o.trim(), ms.toFixed(0), (N / ms / 1000).toFixed(0), "MB/s");
    }
    t = performance.now(); await sb.terminate(); console.log("terminate", (performance.now() - t).toFixed(0));
  }
  console.log(createTimings(s.log()));
  console.log("rss", s.rssBytes() / 1e6);
} finally { await s.stop(); console.log("leftover", s.leftoverMounts); }
