// 1. Cold start: create (image cached) + `echo hi` to completion, versus
// `runc run`, `crun run` and `podman run --rm` of the same rootfs.
import { limit, type Ctx } from "../context.js";
import { ratio, type Row, type SectionResult } from "../report.js";
import { createAndEcho } from "../sbx-ops.js";
import { createTimings } from "../server.js";
import { summarize, timeLoop, type Summary } from "../stats.js";

export const COLD_TARGET = 1.5;

export async function coldStart(ctx: Ctx): Promise<SectionResult> {
  const { cfg, server, app, oci } = ctx;
  const notes: string[] = [];
  const rows: Row[] = [];
  const data: Record<string, unknown> = {};
  const S = "1. cold start (create + echo hi)";

  // sbx and its baseline take turns, so that both meet the same state of
  // the host (a sandbox's destroy finishing behind its terminate, another
  // tenant's load): run one after the other, either could get the quiet half.
  ctx.log(`cold: sbx × ${cfg.cold.sbx} and runc run × ${cfg.cold.runc}, taking turns`);
  const ids = new Set<string>();
  const createMs: number[] = [];
  const execMs: number[] = [];
  const sbxMs: number[] = [];
  const runcMs: number[] = [];
  const runcBundle = await oci.bundle("echo", ["echo", "hi"]);
  await timeLoop(
    { count: Math.max(cfg.cold.sbx, cfg.cold.runc), timeLimitMs: limit(ctx, 2 * cfg.cold.timeLimitMs), warmup: cfg.warmup },
    async (i) => {
      if (i < cfg.cold.sbx) {
        const r = await createAndEcho(server.client, app);
        await r.sandbox.terminate();
        if (i >= 0) {
          ids.add(r.sandbox.sandboxId);
          createMs.push(r.createMs);
          execMs.push(r.totalMs - r.createMs);
          sbxMs.push(r.totalMs);
        }
      }
      if (i < cfg.cold.runc) {
        const ms = await oci.runOnce("runc", runcBundle, "hi\n");
        if (i >= 0) runcMs.push(ms);
      }
    },
  );
  const sbx = summarize(sbxMs);
  const runc = summarize(runcMs);
  ctx.shared.runcRun = runc;
  ctx.shared.sbxCold = sbx;

  let crun: Summary | string;
  ctx.log(`cold: crun run × ${cfg.cold.crun}`);
  try {
    const b = await oci.bundle("echo", ["echo", "hi"], "crun");
    crun = summarize(await timeLoop({ count: cfg.cold.crun, timeLimitMs: limit(ctx, cfg.cold.timeLimitMs), warmup: cfg.warmup }, () => oci.runOnce("crun", b, "hi\n")));
    if (oci.crunWrapped) {
      notes.push(
        "crun 1.8.1 refuses this host's hybrid cgroup layout (hugetlb in the v2 hierarchy) even with --cgroup-manager=disabled; " +
          "it is run as `unshare -m sh -c 'mount -t tmpfs none /sys/fs/cgroup/unified && exec crun --cgroup-manager=disabled run …'` " +
          "(the wrapper's own cost is in the figure, a few ms) with the bundle's cgroup mount dropped, so crun applies no cgroup limits.",
      );
    }
  } catch (e) {
    crun = `n/a (${(e as Error).message.split("\n")[0]!.slice(0, 120)})`;
  }

  const podman: Record<string, Summary | string> = {};
  const pm = ctx.podman;
  for (const [key, extra] of [
    ["podman run --rm", []],
    ["podman run --rm --network none", ["--network", "none"]],
  ] as const) {
    if ("unavailable" in pm) {
      podman[key] = `n/a (${pm.unavailable})`;
      continue;
    }
    ctx.log(`cold: ${key} × ${cfg.cold.podman}`);
    try {
      podman[key] = summarize(
        await timeLoop({ count: cfg.cold.podman, timeLimitMs: limit(ctx, cfg.cold.timeLimitMs), warmup: cfg.warmup }, () => pm.runOnce([...extra])),
      );
    } catch (e) {
      podman[key] = `n/a (${(e as Error).message.split("\n")[0]!.slice(0, 160)})`;
    }
  }

  const r = ratio(sbx, runc);
  rows.push({ section: S, figure: "sbx create + exec", unit: "ms", summary: sbx, ratio: r, baseline: "runc run", target: `≤ ${COLD_TARGET}×`, met: r <= COLD_TARGET });
  rows.push({ section: S, figure: "  of which create call", unit: "ms", summary: summarize(createMs) });
  const steps = stepSummaries(createTimings(server.log()).filter((t) => ids.has(t.sandboxId)));
  for (const [step, s] of Object.entries(steps)) rows.push({ section: S, figure: `    server step ${step}`, unit: "ms", summary: s });
  rows.push({ section: S, figure: "  of which first exec (echo hi)", unit: "ms", summary: summarize(execMs) });
  const base = (figure: string, s: Summary | string) =>
    rows.push(typeof s === "string" ? { section: S, figure, unit: "ms", value: s } : { section: S, figure, unit: "ms", summary: s, ratio: ratio(sbx, s), baseline: "(sbx ÷ this)" });
  base("runc run", runc);
  base("crun run", crun);
  for (const [k, v] of Object.entries(podman)) base(k, v);

  Object.assign(data, { sbx, sbxCreateCall: summarize(createMs), sbxFirstExec: summarize(execMs), serverSteps: steps, runcRun: runc, crunRun: crun, podman, ratioToRunc: r });
  return { name: "cold", rows, data, notes };
}

/** p50/p95/max of each step of the server's create timing lines, plus the backend total. */
export function stepSummaries(ts: { totalMs: number; steps: Record<string, number> }[]): Record<string, Summary> {
  const by: Record<string, number[]> = {};
  for (const t of ts) {
    for (const [k, v] of Object.entries(t.steps)) (by[k] ??= []).push(v);
    (by.total ??= []).push(t.totalMs);
  }
  return Object.fromEntries(Object.entries(by).map(([k, v]) => [k, summarize(v)]));
}
