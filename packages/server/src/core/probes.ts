// Readiness probes. A probe runs inside the sandbox every intervalMs (from
// the start of one attempt to the start of the next) until it first
// succeeds, for at most five minutes; it never ends the sandbox. A TCP probe
// is an exec of sbx-tcp-probe (a static helper mounted into every sandbox),
// so it runs in the sandbox's own network namespace, blockNetwork included.
import type { ProbeSpec } from "./ports.js";

export const PROBE_MAX_MS = 5 * 60 * 1000;
export const DEFAULT_PROBE_INTERVAL_MS = 100;
/** Inside every sandbox (runtime mounts the agent's tools there). */
export const TCP_PROBE_BIN = "/.sbx/bin/sbx-tcp-probe";

export function probeArgv(probe: ProbeSpec): string[] {
  return probe.kind === "tcp" ? [TCP_PROBE_BIN, String(probe.port)] : probe.argv;
}

export interface ProbeTarget {
  /** Runs one attempt; resolves with its exit code. */
  attempt(argv: string[], timeoutMs: number): Promise<number>;
  onReady(): void;
  log(msg: string): void;
}

/** Starts probing; returns a function that stops it. */
export function startProbe(probe: ProbeSpec, target: ProbeTarget, startedAt: number = Date.now()): () => void {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const argv = probeArgv(probe);
  // An attempt may not outlive the probe's own pace by much.
  const attemptTimeout = Math.max(1000, probe.intervalMs * 10);

  const run = async (): Promise<void> => {
    if (stopped) return;
    if (Date.now() - startedAt > PROBE_MAX_MS) {
      target.log(`readiness probe gave up after ${PROBE_MAX_MS / 60000} minutes`);
      return;
    }
    const began = Date.now();
    let code = -1;
    try {
      code = await target.attempt(argv, attemptTimeout);
    } catch {
      code = -1; // the sandbox may be ending; the next round decides
    }
    if (stopped) return;
    if (code === 0) {
      stopped = true;
      target.onReady();
      return;
    }
    timer = setTimeout(() => void run(), Math.max(0, began + probe.intervalMs - Date.now()));
  };
  void run();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
