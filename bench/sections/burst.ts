// 5. Burst: N concurrent create + `echo hi`: success rate, per-sandbox
// latency (p50/p95/max) and the wall time of the whole burst. Meanwhile a
// probe measures what everyone else sees of the server: a GET of a sandbox
// and an exec of `true` in another sandbox, one after the other, every 50 ms;
// and again while all of them are terminated, and a moment after.
import { setMaxListeners } from "node:events";
import type { Sandbox, SbxClient } from "sbx";
import { limit, type Ctx } from "../context.js";
import type { Row, SectionResult } from "../report.js";
import { createAndEcho, execRoundTrip, SANDBOX_TIMEOUT_MS, terminateAll } from "../sbx-ops.js";
import { createTimings } from "../server.js";
import { sleep, summarize } from "../stats.js";
import { stepSummaries } from "./cold.js";

export const BURST_TARGET = { successRate: 1, p95OverP50: 3 };
/** How long the probe goes on after terminate-all answered, while the destroys behind it finish. */
const TEARDOWN_PROBE_MS = 3000;

interface ProbeResult {
  get: number[];
  exec: number[];
  failures: number;
}

function summarizeProbe(p: ProbeResult) {
  return { get: summarize(p.get), exec: summarize(p.exec), failures: p.failures };
}

/** Every 50 ms until stopped: a GET of `witness`, then an exec of `true` in it. */
function startProbe(client: SbxClient, witness: Sandbox, signal: AbortSignal): { stop(): Promise<ProbeResult> } {
  const out: ProbeResult = { get: [], exec: [], failures: 0 };
  let on = true;
  const loop = (async () => {
    while (on) {
      try {
        const a = performance.now();
        await client.sandboxes.fromId(witness.sandboxId, { signal });
        out.get.push(performance.now() - a);
        out.exec.push(await execRoundTrip(witness, ["true"]));
      } catch {
        out.failures++;
      }
      await sleep(50);
    }
  })();
  return {
    async stop() {
      on = false;
      await loop;
      return out;
    },
  };
}

export async function burst(ctx: Ctx): Promise<SectionResult> {
  const { cfg, server, app } = ctx;
  const n = cfg.burst.concurrency;
  const S = `5. burst (${n} concurrent create + echo hi)`;
  ctx.log(`burst: ${n} at once`);
  const signal = AbortSignal.timeout(limit(ctx, cfg.burst.timeLimitMs));
  // Every one of the n calls in flight listens on it: not a leak.
  setMaxListeners(n * 4, signal);
  const witness = await server.client.sandboxes.create(app, undefined, { timeoutMs: SANDBOX_TIMEOUT_MS });
  let probing = startProbe(server.client, witness, signal);
  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: n }, () => createAndEcho(server.client, app, signal)));
  const wallMs = performance.now() - t0;
  const probe = summarizeProbe(await probing.stop());
  const ok = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const errors = results.flatMap((r) => (r.status === "rejected" ? [String((r.reason as Error)?.message ?? r.reason).split("\n")[0]!] : []));
  // Terminate answers once a sandbox is finished; the destroys behind it run on for a while.
  probing = startProbe(server.client, witness, signal);
  const tt = performance.now();
  const failedTerminations = await terminateAll(ok.map((r) => r.sandbox));
  const terminateMs = performance.now() - tt;
  await sleep(TEARDOWN_PROBE_MS);
  const probeTeardown = summarizeProbe(await probing.stop());
  await witness.terminate();
  if (ok.length) ctx.shared.terminateEach = summarize([terminateMs / ok.length]);
  // Where the time went: the backend's own create steps, and what came before them (API, core, waiting).
  const ids = new Set(ok.map((r) => r.sandbox.sandboxId));
  const timings = createTimings(server.log()).filter((t) => ids.has(t.sandboxId));
  const steps = stepSummaries(timings);
  const backendTotal = new Map(timings.map((t) => [t.sandboxId, t.totalMs]));
  const beforeBackend = summarize(ok.filter((r) => backendTotal.has(r.sandbox.sandboxId)).map((r) => r.createMs - backendTotal.get(r.sandbox.sandboxId)!));
  const s = summarize(ok.map((r) => r.totalMs));
  const rate = ok.length / n;
  const spread = s.p95 / s.p50;
  // Grouped by message with ids blanked: "N× message".
  const counts = new Map<string, number>();
  for (const e of errors) {
    const k = e.replace(/\b(sb|ex)-[a-z0-9]+/g, "$1-…");
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  const distinct = [...counts].sort((a, b) => b[1] - a[1]).map(([m, c]) => `${c}× ${m}`);
  return {
    name: "burst",
    rows: [
      { section: S, figure: "success rate", unit: "%", value: 100 * rate, target: "100 %", met: rate >= BURST_TARGET.successRate },
      {
        section: S,
        figure: "create + exec, each",
        unit: "ms",
        summary: s,
        ratio: spread,
        baseline: "p95 ÷ p50",
        target: `p95 ≤ ${BURST_TARGET.p95OverP50}× p50`,
        met: spread <= BURST_TARGET.p95OverP50,
      },
      { section: S, figure: "  of which create call", unit: "ms", summary: summarize(ok.map((r) => r.createMs)) },
      ...Object.entries(steps).map(([k, v]): Row => ({ section: S, figure: `    server step ${k}`, unit: "ms", summary: v })),
      { section: S, figure: "    create call − server total", unit: "ms", summary: beforeBackend },
      { section: S, figure: "wall time", unit: "ms", value: wallMs },
      { section: S, figure: "meanwhile: GET of another sandbox", unit: "ms", summary: probe.get },
      { section: S, figure: "meanwhile: exec true in another sandbox", unit: "ms", summary: probe.exec },
      { section: S, figure: `terminate all ${ok.length}`, unit: "ms", value: terminateMs },
      { section: S, figure: `  meanwhile and ${TEARDOWN_PROBE_MS / 1000} s after: GET`, unit: "ms", summary: probeTeardown.get },
      { section: S, figure: `  meanwhile and ${TEARDOWN_PROBE_MS / 1000} s after: exec true`, unit: "ms", summary: probeTeardown.exec },
    ],
    data: { concurrency: n, succeeded: ok.length, successRate: rate, latency: s, p95OverP50: spread, wallMs, serverSteps: steps, createCallMinusServerTotal: beforeBackend, terminateAllMs: terminateMs, errors: distinct, failedTerminations, probe, probeTeardown },
    notes: distinct.length
      ? [`burst: ${errors.length} failed (the benchmark aborts what is unfinished after ${(cfg.burst.timeLimitMs / 1000).toFixed(0)} s): ${distinct.join("; ")}`]
      : [],
  };
}
