// Percentiles and the small helpers every measurement shares.

export interface Summary {
  n: number;
  p50: number;
  p95: number;
  max: number;
  min: number;
  mean: number;
}

/** Nearest-rank percentile of an unsorted sample (q in 0..100). */
export function percentile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((q / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1]!;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) return { n: 0, p50: NaN, p95: NaN, max: NaN, min: NaN, mean: NaN };
  return {
    n: xs.length,
    p50: percentile(xs, 50),
    p95: percentile(xs, 95),
    max: Math.max(...xs),
    min: Math.min(...xs),
    mean: xs.reduce((a, b) => a + b, 0) / xs.length,
  };
}

/** Milliseconds since `t0` (a performance.now() value). */
export const since = (t0: number): number => performance.now() - t0;

export interface LoopLimits {
  /** Iterations wanted. */
  count: number;
  /** Stop early once this much time has passed (ms). */
  timeLimitMs: number;
  /** Untimed iterations first. */
  warmup?: number;
}

/**
 * Runs `fn` up to `count` times (after `warmup` untimed runs), stopping early
 * when the next iteration, as long as the last one, would end past the time
 * limit (at least one timed iteration runs); returns the durations in ms of the timed runs. `fn` may
 * return its own duration (for figures that exclude setup), else it is timed
 * around the call.
 */
export async function timeLoop(limits: LoopLimits, fn: (i: number) => Promise<number | void>): Promise<number[]> {
  const deadline = performance.now() + limits.timeLimitMs;
  for (let i = 0; i < (limits.warmup ?? 0) && performance.now() < deadline; i++) await fn(-1 - i);
  const out: number[] = [];
  let last = 0;
  for (let i = 0; i < limits.count && (i === 0 || performance.now() + last < deadline); i++) {
    const t0 = performance.now();
    const own = await fn(i);
    last = since(t0);
    out.push(typeof own === "number" ? own : last);
  }
  return out;
}

/** Runs `fn(i)` for i in 0..n-1 with at most `width` in flight. */
export async function pool<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
