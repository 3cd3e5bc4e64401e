// 3. Exec round trip: `true` in a running sandbox, from the SDK call to the
// exit code, versus `runc exec` and `nsenter` into a running runc container
// of the same rootfs.
import { nsenterOnce } from "../baselines/oci.js";
import { limit, type Ctx } from "../context.js";
import { ratio, type SectionResult } from "../report.js";
import { execRoundTrip, SANDBOX_TIMEOUT_MS } from "../sbx-ops.js";
import { summarize, timeLoop } from "../stats.js";

export const EXEC_TARGET = { ratio: 0.1, ms: 5 };

export async function execRoundTripSection(ctx: Ctx): Promise<SectionResult> {
  const { cfg, server, app, oci } = ctx;
  const S = "3. exec round trip (true)";
  const t = cfg.exec;

  ctx.log(`exec: sbx × ${t.sbx}`);
  const sb = await server.client.sandboxes.create(app, undefined, { timeoutMs: SANDBOX_TIMEOUT_MS });
  let sbx;
  try {
    sbx = summarize(await timeLoop({ count: t.sbx, timeLimitMs: limit(ctx, t.timeLimitMs), warmup: 3 * cfg.warmup }, () => execRoundTrip(sb, ["true"])));
  } finally {
    await sb.terminate();
  }

  ctx.log(`exec: runc exec × ${t.runc}, nsenter × ${t.nsenter}`);
  const c = await oci.startDetached("runc", await oci.bundle("sleep", ["sleep", "infinity"]));
  let runcExec, nsenter;
  try {
    runcExec = summarize(await timeLoop({ count: t.runc, timeLimitMs: limit(ctx, t.timeLimitMs), warmup: cfg.warmup }, () => oci.exec("runc", c.id, ["true"])));
    nsenter = summarize(await timeLoop({ count: t.nsenter, timeLimitMs: limit(ctx, t.timeLimitMs), warmup: cfg.warmup }, () => nsenterOnce(c.pid, ["true"])));
  } finally {
    await oci.delete("runc", c.id);
  }

  const r = ratio(sbx, runcExec);
  return {
    name: "exec",
    rows: [
      {
        section: S,
        figure: "sbx exec + wait",
        unit: "ms",
        summary: sbx,
        ratio: r,
        baseline: "runc exec",
        target: `≤ ${EXEC_TARGET.ratio}× and ≤ ${EXEC_TARGET.ms} ms`,
        met: r <= EXEC_TARGET.ratio && sbx.p50 <= EXEC_TARGET.ms,
      },
      { section: S, figure: "runc exec", unit: "ms", summary: runcExec, ratio: r, baseline: "(sbx ÷ this)" },
      { section: S, figure: "nsenter -a", unit: "ms", summary: nsenter, ratio: ratio(sbx, nsenter), baseline: "(sbx ÷ this)" },
    ],
    data: { sbx, runcExec, nsenter, ratioToRuncExec: r },
    notes: [],
  };
}
