// Readiness probes: a check the server (TCP, inside the sandbox's network
// namespace) or the sandbox's agent (exec) retries every `intervalMs` until it
// first succeeds, for at most 5 minutes. Success records the Ready event; see
// sandbox.waitUntilReady().
import { InvalidError } from "./errors.js";
import { LIMITS, type ReadinessProbe } from "./wire.js";

export type ProbeConfig =
  | { kind: "tcp"; port: number; intervalMs: number }
  | { kind: "exec"; argv: string[]; intervalMs: number };

export interface ProbeParams {
  /** How often the check is retried until it succeeds (default 100 ms; 10 to 60 000). */
  intervalMs?: number;
}

export const DEFAULT_PROBE_INTERVAL_MS = 100;
const MIN_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 60_000;

function interval(params: ProbeParams | undefined): number {
  const ms = params?.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  if (!Number.isInteger(ms) || ms < MIN_INTERVAL_MS || ms > MAX_INTERVAL_MS) {
    throw new InvalidError(`readinessProbe intervalMs must be a whole number from ${MIN_INTERVAL_MS} to ${MAX_INTERVAL_MS} (got ${ms})`);
  }
  return ms;
}

export class Probe {
  readonly config: ProbeConfig;

  private constructor(config: ProbeConfig) {
    this.config = config;
  }

  /** Ready once the TCP port (inside the sandbox) accepts connections. */
  static withTcp(port: number, params: ProbeParams = {}): Probe {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new InvalidError(`readinessProbe port must be a whole number from 1 to 65535 (got ${port})`);
    }
    return new Probe({ kind: "tcp", port, intervalMs: interval(params) });
  }

  /** Ready once the command, run in the sandbox, exits with status 0. */
  static withExec(argv: string[], params: ProbeParams = {}): Probe {
    if (!Array.isArray(argv) || argv.length === 0 || argv.some((a) => typeof a !== "string")) {
      throw new InvalidError("readinessProbe argv must be a non-empty array of strings");
    }
    const bytes = argv.reduce((n, a) => n + Buffer.byteLength(a), 0);
    if (argv.length > LIMITS.maxArgs || bytes > LIMITS.maxArgvBytes) {
      throw new InvalidError(`readinessProbe argv is too large (${argv.length} arguments, ${bytes} bytes; at most ${LIMITS.maxArgs} and ${LIMITS.maxArgvBytes})`);
    }
    return new Probe({ kind: "exec", argv: [...argv], intervalMs: interval(params) });
  }

  /** @internal The wire form. */
  toWire(): ReadinessProbe {
    const c = this.config;
    return c.kind === "tcp"
      ? { kind: "tcp", port: c.port, intervalMs: c.intervalMs }
      : { kind: "exec", argv: [...c.argv], intervalMs: c.intervalMs };
  }
}
