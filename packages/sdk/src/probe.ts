// Readiness probes. The server does not run probes yet: a Probe can be built
// (the guide imports it) but sandboxes.create rejects it as not supported.

export type ProbeConfig =
  | { kind: "tcp"; port: number; intervalMs: number }
  | { kind: "exec"; argv: string[]; intervalMs: number };

export interface ProbeParams {
  /** How often the check is retried until it succeeds (default 100 ms). */
  intervalMs?: number;
}

const DEFAULT_INTERVAL_MS = 100;

export class Probe {
  readonly config: ProbeConfig;

  private constructor(config: ProbeConfig) {
    this.config = config;
  }

  /** Ready once the TCP port accepts connections. */
  static withTcp(port: number, params: ProbeParams = {}): Probe {
    return new Probe({ kind: "tcp", port, intervalMs: params.intervalMs ?? DEFAULT_INTERVAL_MS });
  }

  /** Ready once the command exits with status 0. */
  static withExec(argv: string[], params: ProbeParams = {}): Probe {
    return new Probe({ kind: "exec", argv: [...argv], intervalMs: params.intervalMs ?? DEFAULT_INTERVAL_MS });
  }
}
