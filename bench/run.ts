// `npm run bench`: the side-by-side benchmark of issue 6. One process drives
// the sbx server (the built CLI, on a temp data dir), raw runc / crun, podman
// and a bare pipe on the same Debian rootfs; prints a table and writes
// bench/results/latest.json. `--quick` (or SBX_BENCH_QUICK=1): a few
// iterations of each, for the smoke test. `--out FILE`: where the JSON goes.
// `--only a,b`: run only these sections (cold, warm, exec, throughput, burst, density).
// `--budget SECONDS`: the run's time budget (default 580 full, 150 quick), e.g.
// `--only density --budget 1500` to reach 500 sandboxes on a slow machine.
import * as fsp from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { ensureBaseRootfsTar } from "@sbx/server";
import { OciBaseline } from "./baselines/oci.js";
import { PodmanBaseline } from "./baselines/podman.js";
import { benchConfig } from "./config.js";
import type { Ctx } from "./context.js";
import { describeMachine } from "./machine.js";
import { renderTable, type SectionResult } from "./report.js";
import { createAndEcho } from "./sbx-ops.js";
import { run } from "./proc.js";
import { burst } from "./sections/burst.js";
import { coldStart } from "./sections/cold.js";
import { density } from "./sections/density.js";
import { execRoundTripSection } from "./sections/exec.js";
import { throughput } from "./sections/throughput.js";
import { warmStart } from "./sections/warm.js";
import { REPO, startServer, type BenchServer } from "./server.js";

const SECTIONS: Record<string, (ctx: Ctx) => Promise<SectionResult>> = {
  cold: coldStart,
  warm: warmStart,
  exec: execRoundTripSection,
  throughput,
  burst,
  density,
};

const { values } = parseArgs({
  options: { quick: { type: "boolean" }, out: { type: "string" }, only: { type: "string" }, budget: { type: "string" } },
  strict: true,
});
const quick = values.quick === true || process.env.SBX_BENCH_QUICK === "1";
const budgetS = values.budget === undefined ? undefined : Number(values.budget);
if (budgetS !== undefined && !(budgetS > 0)) throw new Error(`--budget must be a positive number of seconds (got ${values.budget})`);
const cfg = benchConfig(quick, budgetS);
const only = values.only ? values.only.split(",") : Object.keys(SECTIONS);
for (const s of only) if (!SECTIONS[s]) throw new Error(`--only: unknown section ${s} (sections: ${Object.keys(SECTIONS).join(", ")})`);
const out = values.out ?? (quick ? join(tmpdir(), "sbx-bench-quick.json") : join(REPO, "bench/results/latest.json"));

const started = performance.now();
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - started) / 1000).toFixed(0).padStart(3)} s] ${msg}\n`);

// Everything started is stopped by these, in reverse order, once (also on SIGINT/SIGTERM).
const cleanups: (() => Promise<void>)[] = [];
let cleaning: Promise<void> | null = null;
const cleanup = () =>
  (cleaning ??= (async () => {
    for (const fn of cleanups.reverse()) await fn().catch((e: unknown) => log(`cleanup: ${(e as Error).message}`));
  })());
process.once("uncaughtException", (e) => {
  log(`uncaught: ${e.stack ?? e}`);
  void cleanup().finally(() => process.exit(1));
});
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const machine = await describeMachine();
  log(`${quick ? "quick" : "full"} run on ${machine.cpuModel} × ${machine.cores}, ${machine.memoryMiB} MiB, ${machine.kernel}`);
  if (machine.otherSbxServers) log(`note: ${machine.otherSbxServers} other sbx server(s) are running on this host; figures will be noisier`);

  const rootfsTar = await ensureBaseRootfsTar({ log });
  const work = await fsp.mkdtemp(join(tmpdir(), "sbx-bench-oci-"));
  cleanups.push(() => fsp.rm(work, { recursive: true, force: true }));
  log("baselines: unpacking the rootfs for runc/crun, importing it into podman (once)");
  const oci = await OciBaseline.prepare(work, rootfsTar);
  cleanups.push(() => oci.cleanup());
  const podman = await PodmanBaseline.prepare(rootfsTar);
  if (podman instanceof PodmanBaseline) cleanups.push(() => podman.cleanup());

  log("starting sbx serve");
  const server: BenchServer = await startServer();
  cleanups.push(async () => {
    await server.stop();
    if (server.leftoverMounts.length) log(`server left ${server.leftoverMounts.length} mounts (unmounted): ${server.leftoverMounts.slice(0, 3).join(" ")}`);
  });
  const app = await server.client.apps.fromName("bench", { createIfMissing: true });
  log("caching the image in the server's data dir (first create)");
  await (await createAndEcho(server.client, app)).sandbox.terminate();

  const ctx: Ctx = { cfg, server, app, oci, podman, deadline: started + cfg.budgetMs, shared: {}, log };
  const results: SectionResult[] = [];
  for (const name of only) {
    if (performance.now() > ctx.deadline) {
      results.push({ name, rows: [], data: {}, notes: [`${name}: skipped, the run's time budget was used up`], error: "skipped: out of time" });
      continue;
    }
    // The host's dirty pages written back first: the set-up's unpacks (the
    // image in the server, the rootfs for runc/podman) and one section's
    // writes are otherwise written back during the next section, on the
    // same two cores, and counted as its cost.
    const synced = await run(["sync"], { timeoutMs: 120_000 });
    log(`${name}: host writeback flushed (sync, ${(synced.ms / 1000).toFixed(1)} s)`);
    try {
      results.push(await SECTIONS[name]!(ctx));
    } catch (e) {
      log(`${name} failed: ${(e as Error).stack ?? e}`);
      results.push({ name, rows: [], data: {}, notes: [], error: (e as Error).message });
    }
  }
  const serverRssEndBytes = server.rssBytes();
  await cleanup();
  const leftover = server.leftoverMounts;

  const rows = results.flatMap((r) => r.rows);
  const notes = [
    ...results.flatMap((r) => r.notes),
    ...results.filter((r) => r.error).map((r) => `${r.name}: ERROR ${r.error}`),
    ...(leftover.length ? [`the server left ${leftover.length} mounts under its data dir after every sandbox was terminated`] : []),
  ];
  const totalS = (performance.now() - started) / 1000;
  process.stdout.write(`\nsbx benchmark (${quick ? "QUICK: few iterations, figures not meaningful" : "full"}), ${machine.date}, ${totalS.toFixed(0)} s\n`);
  process.stdout.write(`${machine.cpuModel} × ${machine.cores}, ${machine.memoryMiB} MiB, ${machine.os}, kernel ${machine.kernel}, cgroups ${machine.cgroups}\n`);
  process.stdout.write(`load average ${machine.loadAverage.join(" ")} at start, ${loadavg().map((x) => x.toFixed(2)).join(" ")} at end; ${machine.otherSbxServers} other sbx servers running at start\n\n`);
  process.stdout.write(`${renderTable(rows)}\n`);
  if (notes.length) process.stdout.write(`\nnotes:\n${notes.map((n) => `- ${n}`).join("\n")}\n`);

  const json = {
    machine,
    quick,
    config: cfg,
    durationS: totalS,
    loadAverageEnd: loadavg().map((x) => Math.round(x * 100) / 100),
    serverRssEndBytes,
    leftoverMounts: leftover,
    sections: Object.fromEntries(results.map((r) => [r.name, { ...r.data, ...(r.error ? { error: r.error } : {}) }])),
    table: rows,
    notes,
  };
  await fsp.mkdir(dirname(out), { recursive: true });
  await fsp.writeFile(out, JSON.stringify(json, null, 2) + "\n");
  process.stdout.write(`\nwrote ${out}\n`);
  return results.some((r) => r.error) ? 1 : 0;
}

main()
  .then((code) => process.exit(code))
  .catch(async (e: unknown) => {
    log(`failed: ${(e as Error).stack ?? e}`);
    await cleanup();
    process.exit(1);
  });
