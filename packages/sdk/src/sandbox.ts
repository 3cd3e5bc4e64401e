// Sandbox: a handle on one sandbox on the server.
import { ClientClosedError, ConflictError, InvalidError, SandboxTimeoutError, SbxError } from "./errors.js";
import { HttpClient, anySignal } from "./http.js";
import { ContainerProcess, checkOpen, type CallOptions, type SandboxContext } from "./process.js";
import { Secret, checkEnv, resolveSecrets } from "./secrets.js";
import type { SbxReadableStream, SbxWritableStream, StreamMode } from "./streams.js";
import {
  LIMITS,
  type Exec as WireExec,
  type ExecRequest,
  type FinishReason,
  type Sandbox as WireSandbox,
  type SandboxEvent,
  type SandboxEventList,
  type SandboxState,
} from "./wire.js";

export interface ExecParams extends CallOptions {
  /** "text" (default): output streams yield strings; "binary": Uint8Array. */
  mode?: StreamMode;
  stdout?: "pipe" | "ignore";
  stderr?: "pipe" | "ignore";
  workdir?: string;
  /** Kills the process group after this long; the exit code is then 137. */
  timeoutMs?: number;
  env?: Record<string, string>;
  secrets?: (Secret | Promise<Secret>)[];
  /** Not supported yet. */
  pty?: boolean;
}

export interface TerminateParams extends CallOptions {
  /** Wait until the sandbox finished and return its exit code (137). */
  wait?: boolean;
}

export function unsupported(what: string): SbxError {
  return new SbxError(`${what} is not supported yet`, "unimplemented");
}

/** Cheap argv checks (the server is the authority). */
export function checkArgv(argv: unknown, what: string): asserts argv is string[] {
  if (!Array.isArray(argv) || argv.length === 0) throw new InvalidError(`${what} must be a non-empty array of strings`);
  let bytes = 0;
  for (const [i, arg] of argv.entries()) {
    if (typeof arg !== "string") throw new InvalidError(`${what}[${i}] must be a string (got ${typeof arg})`);
    bytes += Buffer.byteLength(arg);
  }
  if (argv.length > LIMITS.maxArgs) throw new InvalidError(`${what} has ${argv.length} arguments; at most ${LIMITS.maxArgs} are allowed`);
  if (bytes > LIMITS.maxArgvBytes) throw new InvalidError(`${what} is ${bytes} bytes; at most ${LIMITS.maxArgvBytes} are allowed`);
}

export function checkWorkdir(workdir: unknown): void {
  if (workdir !== undefined && (typeof workdir !== "string" || !workdir.startsWith("/"))) {
    throw new InvalidError(`workdir must be an absolute path (got ${JSON.stringify(workdir)})`);
  }
}

export class Sandbox {
  readonly sandboxId: string;
  readonly appId: string;
  readonly name: string | null;
  readonly createdAt: string;
  /** State as of the last reply from the server. */
  state: SandboxState;
  /** null while running; the entrypoint's exit code, 137 after terminate, 124 after timeout. */
  returncode: number | null;
  /** Why the sandbox finished (exited, terminated, timeout, idle-timeout, oom, failed), else null. */
  finishReason: FinishReason | null;
  /** The resolved image (sha256:…). */
  imageId: string | null;
  /** Tags as of the last reply from the server. */
  tags: Record<string, string>;
  readonly #http: HttpClient;
  readonly #detach = new AbortController();
  readonly #ctx: SandboxContext;
  readonly #entry: ContainerProcess<string>;

  /** @internal Made by the sandboxes service. */
  constructor(http: HttpClient, wire: WireSandbox, entryStdinOffset: number | undefined) {
    this.#http = http;
    this.sandboxId = wire.sandboxId;
    this.appId = wire.appId;
    this.name = wire.name;
    this.createdAt = wire.createdAt;
    this.state = wire.state;
    this.returncode = wire.returncode;
    this.finishReason = wire.finishReason;
    this.imageId = wire.imageId;
    this.tags = { ...wire.tags };
    this.#ctx = { http, sandboxId: wire.sandboxId, detached: this.#detach.signal };
    this.#entry = new ContainerProcess<string>(this.#ctx, "entry", {
      mode: "text",
      stdout: "pipe",
      stderr: "pipe",
      stdinOffset: entryStdinOffset,
    });
  }

  /** The entrypoint's stdin. */
  get stdin(): SbxWritableStream {
    return this.#entry.stdin;
  }

  /** The entrypoint's stdout (text). */
  get stdout(): SbxReadableStream<string> {
    return this.#entry.stdout;
  }

  /** The entrypoint's stderr (text). */
  get stderr(): SbxReadableStream<string> {
    return this.#entry.stderr;
  }

  #path(suffix = ""): string {
    return `/v1/sandboxes/${encodeURIComponent(this.sandboxId)}${suffix}`;
  }

  #signal(opts: CallOptions): AbortSignal | undefined {
    checkOpen(this.#ctx);
    return anySignal(this.#detach.signal, opts.signal);
  }

  #apply(wire: WireSandbox): void {
    this.state = wire.state;
    this.returncode = wire.returncode;
    this.finishReason = wire.finishReason;
    this.imageId = wire.imageId;
    this.tags = { ...wire.tags };
  }

  /** Runs a command in the sandbox. */
  exec(argv: string[], params?: ExecParams & { mode?: "text" }): Promise<ContainerProcess<string>>;
  exec(argv: string[], params: ExecParams & { mode: "binary" }): Promise<ContainerProcess<Uint8Array>>;
  exec(argv: string[], params?: ExecParams): Promise<ContainerProcess<string> | ContainerProcess<Uint8Array>>;
  async exec(argv: string[], params: ExecParams = {}): Promise<ContainerProcess<string> | ContainerProcess<Uint8Array>> {
    const signal = this.#signal(params);
    checkArgv(argv, "argv");
    const mode = params.mode ?? "text";
    if (mode !== "text" && mode !== "binary") throw new InvalidError(`mode must be "text" or "binary" (got ${JSON.stringify(mode)})`);
    for (const key of ["stdout", "stderr"] as const) {
      const v = params[key];
      if (v !== undefined && v !== "pipe" && v !== "ignore") throw new InvalidError(`${key} must be "pipe" or "ignore" (got ${JSON.stringify(v)})`);
    }
    if (params.pty) throw unsupported("pty");
    checkWorkdir(params.workdir);
    if (params.timeoutMs !== undefined && !(Number.isInteger(params.timeoutMs) && params.timeoutMs > 0)) {
      throw new InvalidError(`timeoutMs must be a positive integer (got ${params.timeoutMs})`);
    }
    if (params.env !== undefined) checkEnv(params.env, "env");
    const body: ExecRequest = {
      argv: [...argv],
      workdir: params.workdir,
      env: params.env,
      secrets: await resolveSecrets(params.secrets),
      timeoutMs: params.timeoutMs,
      stdout: params.stdout,
      stderr: params.stderr,
    };
    let exec: WireExec;
    try {
      exec = await this.#http.json<WireExec>({ method: "POST", path: this.#path("/execs"), body, signal });
    } catch (err) {
      if (err instanceof ConflictError) await this.#throwIfTimedOut(err, signal);
      throw err;
    }
    return new ContainerProcess<string>(this.#ctx, exec.execId, {
      mode,
      stdout: params.stdout ?? "pipe",
      stderr: params.stderr ?? "pipe",
      stdinOffset: 0,
    }) as ContainerProcess<string> | ContainerProcess<Uint8Array>;
  }

  /** A conflict from a sandbox that reached its timeout becomes a SandboxTimeoutError. */
  async #throwIfTimedOut(err: SbxError, signal: AbortSignal | undefined): Promise<void> {
    let wire: WireSandbox;
    try {
      wire = await this.#http.json<WireSandbox>({ method: "GET", path: this.#path(), signal });
    } catch {
      return;
    }
    this.#apply(wire);
    if (wire.finishReason === "timeout") {
      throw new SandboxTimeoutError(`sandbox ${this.sandboxId} reached its timeout: ${err.message}`, { status: err.status, cause: err });
    }
  }

  /** The sandbox's exit code if it has finished, else null. */
  async poll(opts: CallOptions = {}): Promise<number | null> {
    const signal = this.#signal(opts);
    this.#apply(await this.#http.json<WireSandbox>({ method: "GET", path: this.#path(), signal }));
    return this.returncode;
  }

  /** Waits until the sandbox finished; resolves with its exit code. */
  async wait(opts: CallOptions = {}): Promise<number> {
    for (;;) {
      const signal = this.#signal(opts);
      const wire = await this.#http.json<WireSandbox>({
        method: "GET",
        path: this.#path("/wait"),
        query: { timeoutMs: LIMITS.maxWaitMs },
        timeoutMs: LIMITS.maxWaitMs + this.#http.config.timeoutMs,
        signal,
      });
      this.#apply(wire);
      if (wire.state === "finished" && wire.returncode !== null) return wire.returncode;
    }
  }

  /**
   * Kills the sandbox (SIGKILL) and detaches this handle. With `wait`, waits
   * until it finished and resolves with its exit code (137).
   */
  terminate(params: TerminateParams & { wait: true }): Promise<number>;
  terminate(params?: TerminateParams): Promise<number | undefined>;
  async terminate(params: TerminateParams = {}): Promise<number | undefined> {
    const signal = this.#signal(params);
    this.#apply(await this.#http.json<WireSandbox>({ method: "POST", path: this.#path("/terminate"), body: {}, idempotent: true, signal }));
    let code: number | undefined;
    if (params.wait) code = this.returncode ?? (await this.wait(params));
    this.detach();
    return code;
  }

  /**
   * Drops this handle: calls in flight are aborted and every later call
   * throws ClientClosedError. The sandbox keeps running; sandboxes.fromId()
   * makes a new handle.
   */
  detach(): void {
    if (!this.#detach.signal.aborted) {
      this.#detach.abort(new ClientClosedError(`sandbox ${this.sandboxId} is detached`));
    }
  }

  /** The sandbox's lifecycle events (Created, Scheduled, Started, Ready, Finished) with times and reasons. */
  async events(opts: CallOptions = {}): Promise<SandboxEvent[]> {
    const signal = this.#signal(opts);
    const list = await this.#http.json<SandboxEventList>({ method: "GET", path: this.#path("/events"), signal });
    return list.events;
  }

  /** The sandbox's tags. */
  async getTags(opts: CallOptions = {}): Promise<Record<string, string>> {
    await this.poll(opts);
    return { ...this.tags };
  }

  /** Replaces the sandbox's tags. Not supported by the server yet. */
  async setTags(_tags: Record<string, string>, opts: CallOptions = {}): Promise<void> {
    this.#signal(opts);
    throw unsupported("setTags");
  }

  /**
   * Resolves once the readiness probe succeeded. Readiness probes are not
   * supported yet, so this resolves only when a Ready event exists.
   */
  async waitUntilReady(_timeoutMs = 300_000, opts: CallOptions = {}): Promise<void> {
    const events = await this.events(opts);
    if (events.some((e) => e.type === "Ready")) return;
    if (events.some((e) => e.type === "Finished")) throw new ConflictError(`sandbox ${this.sandboxId} has finished`);
    throw new InvalidError(`sandbox ${this.sandboxId} has no readiness probe (readiness probes are not supported yet)`);
  }
}
