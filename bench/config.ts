// Iteration counts and time limits: the full run (< 10 minutes on the
// 2-core reference machine) and the quick smoke run (few of each, ≈ 1 min).

export interface BenchConfig {
  quick: boolean;
  /** Untimed iterations before each timed loop. */
  warmup: number;
  /** The whole run, teardown included, aims to end within this (ms); no new work starts after it. */
  budgetMs: number;
  cold: { sbx: number; runc: number; crun: number; podman: number; timeLimitMs: number };
  warm: { iterations: number; poolSize: number; flag: string; timeLimitMs: number };
  exec: { sbx: number; runc: number; nsenter: number; timeLimitMs: number };
  throughput: { bytes: number; iterations: number; pipeIterations: number; timeLimitMs: number };
  burst: { concurrency: number; timeLimitMs: number };
  density: { count: number; timeLimitMs: number };
}

export function benchConfig(quick: boolean, budgetS?: number): BenchConfig {
  const cfg = baseConfig(quick);
  if (budgetS !== undefined) cfg.budgetMs = budgetS * 1000;
  return cfg;
}

function baseConfig(quick: boolean): BenchConfig {
  const warmFlag = process.env.SBX_BENCH_WARM_FLAG ?? "--warm-pool";
  if (quick) {
    return {
      quick,
      warmup: 0,
      budgetMs: 150_000,
      cold: { sbx: 2, runc: 2, crun: 2, podman: 1, timeLimitMs: 30_000 },
      warm: { iterations: 2, poolSize: 2, flag: warmFlag, timeLimitMs: 30_000 },
      exec: { sbx: 3, runc: 2, nsenter: 2, timeLimitMs: 15_000 },
      throughput: { bytes: 16 << 20, iterations: 1, pipeIterations: 1, timeLimitMs: 30_000 },
      burst: { concurrency: 4, timeLimitMs: 30_000 },
      density: { count: 4, timeLimitMs: 30_000 },
    };
  }
  return {
    quick,
    warmup: 1,
    budgetMs: 580_000,
    cold: { sbx: 20, runc: 30, crun: 30, podman: 8, timeLimitMs: 60_000 },
    warm: { iterations: 20, poolSize: 4, flag: warmFlag, timeLimitMs: 60_000 },
    exec: { sbx: 100, runc: 40, nsenter: 40, timeLimitMs: 30_000 },
    throughput: { bytes: 1 << 30, iterations: 3, pipeIterations: 3, timeLimitMs: 60_000 },
    burst: { concurrency: 100, timeLimitMs: 120_000 },
    density: { count: 500, timeLimitMs: 400_000 },
  };
}
