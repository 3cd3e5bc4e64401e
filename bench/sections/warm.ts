// 2. Warm start: the cold-start operation against a server started with a
// warm pool (`sbx serve --warm-pool N`, or SBX_BENCH_WARM_FLAG). A server
// that refuses the flag has no warm pools yet: the figure is n/a.
import { limit, type Ctx } from "../context.js";
import { ratio, type Row, type SectionResult } from "../report.js";
import { createAndEcho } from "../sbx-ops.js";
import { ServerStartError, startServer, type BenchServer } from "../server.js";
import { sleep, summarize, timeLoop } from "../stats.js";

export const WARM_TARGET = 0.15;

export async function warmStart(ctx: Ctx): Promise<SectionResult> {
  const { cfg } = ctx;
  const S = "2. warm start (create + echo hi, pooled)";
  const flag = [cfg.warm.flag, String(cfg.warm.poolSize)];
  let server: BenchServer;
  try {
    server = await startServer(flag, 60_000);
  } catch (e) {
    if (!(e instanceof ServerStartError)) throw e;
    const why = /unknown option '[^']*'/i.exec(e.message)?.[0] ?? e.message.trim().split("\n").slice(-1)[0]!;
    return {
      name: "warm",
      rows: [{ section: S, figure: "sbx warm create + exec", unit: "ms", value: "n/a (no warm pool support yet)", target: `≤ ${WARM_TARGET}× runc run` }],
      data: { supported: false, flag, serverSaid: why },
      notes: [`warm start: \`sbx serve ${flag.join(" ")}\` was refused (${why}); re-run once the server has warm pools.`],
    };
  }
  try {
    const app = await server.client.apps.fromName("bench-warm", { createIfMissing: true });
    // The first create may unpack the image into this data dir; then let the pool fill.
    const first = await createAndEcho(server.client, app);
    await first.sandbox.terminate();
    const cold = ctx.shared.sbxCold?.p50 ?? 500;
    await sleep(Math.min(20_000, cfg.warm.poolSize * cold * 2 + 2000));
    const refillMs = Math.min(5000, Math.max(500, cold * 2));
    ctx.log(`warm: × ${cfg.warm.iterations} (pool ${cfg.warm.poolSize}, ${refillMs.toFixed(0)} ms for refills between creates)`);
    const ms = await timeLoop({ count: cfg.warm.iterations, timeLimitMs: limit(ctx, cfg.warm.timeLimitMs) }, async () => {
      await sleep(refillMs);
      const r = await createAndEcho(server.client, app);
      await r.sandbox.terminate();
      return r.totalMs;
    });
    const warm = summarize(ms);
    const r = ratio(warm, ctx.shared.runcRun);
    const rows: Row[] = [
      { section: S, figure: "sbx warm create + exec", unit: "ms", summary: warm, ratio: r, baseline: "runc run", target: `≤ ${WARM_TARGET}×`, met: r <= WARM_TARGET },
    ];
    const notes: string[] = [];
    if (ctx.shared.sbxCold && warm.p50 > 0.8 * ctx.shared.sbxCold.p50) {
      notes.push(`warm start p50 (${warm.p50.toFixed(0)} ms) is close to cold start p50 (${ctx.shared.sbxCold.p50.toFixed(0)} ms): creates may not be served from the pool.`);
    }
    return { name: "warm", rows, data: { supported: true, flag, poolSize: cfg.warm.poolSize, refillWaitMs: refillMs, sbx: warm, ratioToRunc: r }, notes };
  } finally {
    await server.stop();
  }
}
