// 6. Density: N idle sandboxes created one after another. Host memory per
// sandbox beyond its own processes = (Δ(MemTotal − MemAvailable) − Σ PSS of
// the sandboxes' processes − Δ server RSS) / N; the sandboxes' processes are
// found through their cgroups (…/sbx/<sandboxId>/cgroup.procs). Also: server
// RSS at N, and the create time of the Nth versus the 1st.
import { existsSync, readFileSync } from "node:fs";
import type { Sandbox } from "sbx";
import { limit, type Ctx } from "../context.js";
import { meminfo } from "../machine.js";
import type { Row, SectionResult } from "../report.js";
import { SANDBOX_TIMEOUT_MS, terminateAll } from "../sbx-ops.js";
import { sleep, summarize } from "../stats.js";

export const DENSITY_TARGET = { beyondMiB: 1, serverRssMB: 200, at: 500 };
/** Per-sandbox teardown time assumed when the burst section did not measure it. */
const DEFAULT_TERMINATE_MS = 500;
const MiB = 1 << 20;

export async function density(ctx: Ctx): Promise<SectionResult> {
  const { cfg, server, app } = ctx;
  const want = cfg.density.count;
  const notes: string[] = [];
  ctx.log(`density: up to ${want} idle sandboxes`);

  await sleep(3000); // let earlier sections' teardown settle
  const before = { mem: meminfo(), serverRss: server.rssBytes() };
  const sbs: Sandbox[] = [];
  const createMs: number[] = [];
  // Stop creating once the creates plus terminating them all would run past the run's end.
  const createUntil = performance.now() + limit(ctx, cfg.density.timeLimitMs);
  // Teardown slows as sandboxes pile up (0.28 s each after the burst vs 0.4 s after 346 idle ones, measured): keep a margin.
  const terminateEach = 1.5 * (ctx.shared.terminateEach?.p50 ?? DEFAULT_TERMINATE_MS);
  const fits = () => {
    const now = performance.now();
    const lastCreate = createMs[createMs.length - 1] ?? 0;
    return now + lastCreate < createUntil && now + lastCreate + (sbs.length + 1) * terminateEach + 5000 < ctx.deadline;
  };
  let error: string | undefined;
  try {
    while (sbs.length < want && fits()) {
      const t0 = performance.now();
      sbs.push(await server.client.sandboxes.create(app, undefined, { timeoutMs: SANDBOX_TIMEOUT_MS }));
      createMs.push(performance.now() - t0);
      if (sbs.length % 50 === 0) ctx.log(`density: ${sbs.length} created`);
    }
  } catch (e) {
    error = `create #${sbs.length + 1} failed: ${(e as Error).message.split("\n")[0]}`;
  }
  const n = sbs.length;
  let measured: Record<string, number> = {};
  try {
    await sleep(3000);
    const after = { mem: meminfo(), serverRss: server.rssBytes() };
    const procs = sandboxProcesses(sbs.map((s) => s.sandboxId));
    if (procs.missing) notes.push(`density: no cgroup found for ${procs.missing} of ${n} sandboxes`);
    const used = (m: Record<string, number>) => m.MemTotal! - m.MemAvailable!;
    const usedDelta = used(after.mem) - used(before.mem);
    const serverDelta = after.serverRss - before.serverRss;
    const slabDelta = after.mem.Slab! - before.mem.Slab!;
    measured = {
      sandboxes: n,
      usedDeltaBytes: usedDelta,
      sandboxProcesses: procs.pids,
      sandboxPssBytes: procs.pss,
      sandboxRssBytes: procs.rss,
      serverRssBeforeBytes: before.serverRss,
      serverRssAfterBytes: after.serverRss,
      slabDeltaBytes: slabDelta,
      perSandboxTotalMiB: usedDelta / n / MiB,
      perSandboxPssMiB: procs.pss / n / MiB,
      perSandboxServerMiB: serverDelta / n / MiB,
      perSandboxSlabMiB: slabDelta / n / MiB,
      perSandboxBeyondMiB: (usedDelta - procs.pss - serverDelta) / n / MiB,
    };
  } finally {
    ctx.log(`density: terminating ${n}`);
    const t0 = performance.now();
    const failed = await terminateAll(sbs);
    measured.terminateAllMs = performance.now() - t0;
    if (failed) notes.push(`density: ${failed} terminations failed`);
  }

  const noisy = !(measured.usedDeltaBytes! > 0);
  const label = n >= want ? `${n}` : `${n} (of ${want} wanted: ${error ? "a create failed" : "time limit"})`;
  const S = `6. density (${label} idle sandboxes)`;
  const first10 = summarize(createMs.slice(0, 10));
  const last10 = summarize(createMs.slice(-10));
  const at = n >= DENSITY_TARGET.at ? "" : ` (target is at ${DENSITY_TARGET.at}; measured at ${n})`;
  const rows: Row[] = [
    { section: S, figure: "host memory per sandbox, all", unit: "MiB", value: measured.perSandboxTotalMiB },
    { section: S, figure: "  its own processes (PSS)", unit: "MiB", value: measured.perSandboxPssMiB },
    { section: S, figure: "  server RSS growth", unit: "MiB", value: measured.perSandboxServerMiB },
    {
      section: S,
      figure: "  beyond its processes + server",
      unit: "MiB",
      value: measured.perSandboxBeyondMiB,
      target: `≤ ${DENSITY_TARGET.beyondMiB} MiB`,
      ...(noisy ? {} : { met: measured.perSandboxBeyondMiB! <= DENSITY_TARGET.beyondMiB }),
    },
    { section: S, figure: "    of which kernel slab", unit: "MiB", value: measured.perSandboxSlabMiB },
    {
      section: S,
      figure: `server RSS at ${n}${at ? "*" : ""}`,
      unit: "MB",
      value: measured.serverRssAfterBytes! / 1e6,
      target: `≤ ${DENSITY_TARGET.serverRssMB} MB at ${DENSITY_TARGET.at}`,
      ...(at ? {} : { met: measured.serverRssAfterBytes! / 1e6 <= DENSITY_TARGET.serverRssMB }),
    },
    { section: S, figure: "create time, 1st", unit: "ms", value: createMs[0] },
    { section: S, figure: `create time, ${n}th`, unit: "ms", value: createMs[n - 1] },
    { section: S, figure: "create time, first 10", unit: "ms", summary: first10 },
    { section: S, figure: "create time, last 10", unit: "ms", summary: last10, ratio: last10.p50 / first10.p50, baseline: "÷ first 10" },
    { section: S, figure: "terminate all", unit: "ms", value: measured.terminateAllMs },
  ];
  if (at) notes.push(`density: server RSS${at}.`);
  if (noisy) notes.push("density: host memory in use fell while the sandboxes were created: other activity on the host outweighs them; the memory figures are not meaningful.");
  return {
    name: "density",
    rows,
    data: { wanted: want, created: n, createMs, memory: measured, ...(error ? { error } : {}) },
    notes,
    ...(error ? { error } : {}),
  };
}

/** Pids, Σ PSS and Σ RSS of the processes in the sandboxes' cgroups. */
function sandboxProcesses(ids: string[]): { pids: number; pss: number; rss: number; missing: number } {
  let pids = 0;
  let pss = 0;
  let rss = 0;
  let missing = 0;
  for (const id of ids) {
    const file = [`/sys/fs/cgroup/pids/sbx/${id}/cgroup.procs`, `/sys/fs/cgroup/memory/sbx/${id}/cgroup.procs`, `/sys/fs/cgroup/sbx/${id}/cgroup.procs`].find(
      (f) => existsSync(f),
    );
    if (!file) {
      missing++;
      continue;
    }
    for (const pid of readFileSync(file, "utf8").split("\n").filter(Boolean)) {
      try {
        const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
        pss += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) * 1024;
        rss += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) * 1024;
        pids++;
      } catch {
        /* exited */
      }
    }
  }
  return { pids, pss, rss, missing };
}
