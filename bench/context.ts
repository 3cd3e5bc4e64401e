// What every section gets: the config, the main server and app, the
// baselines, the run's deadline, and the figures earlier sections measured.
import type { App } from "sbx";
import type { OciBaseline } from "./baselines/oci.js";
import type { PodmanBaseline } from "./baselines/podman.js";
import type { BenchConfig } from "./config.js";
import type { BenchServer } from "./server.js";
import type { Summary } from "./stats.js";

export interface Ctx {
  cfg: BenchConfig;
  server: BenchServer;
  app: App;
  oci: OciBaseline;
  podman: PodmanBaseline | { unavailable: string };
  /** performance.now() after which no new work starts. */
  deadline: number;
  /** Figures later sections compare with (e.g. "runc run" for warm start). */
  shared: Record<string, Summary>;
  log(msg: string): void;
}

/** `wanted` ms, or less when the run's deadline is nearer; at least 1 ms. */
export function limit(ctx: Ctx, wanted: number): number {
  return Math.max(1, Math.min(wanted, ctx.deadline - performance.now()));
}
