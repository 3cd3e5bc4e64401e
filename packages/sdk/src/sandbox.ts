// Sandbox: a handle on one sandbox on the server.
import { setMaxListeners } from "node:events";
import { ClientClosedError, ConflictError, InvalidError, SandboxTimeoutError, SbxError, TimeoutError } from "./errors.js";
import { HttpClient, anySignal, backoffMs, sleep } from "./http.js";
import { ContainerProcess, checkOpen, type CallOptions, type SandboxContext } from "./process.js";
import { Secret, checkEnv, resolveSecrets } from "./secrets.js";
import { MAX_STREAM_RECONNECTS, sseMessages, type SbxReadableStream, type SbxWritableStream, type StreamMode } from "./streams.js";
import {
  LIMITS,
  type Exec as WireExec,
  type ExecRequest,
  type FinishReason,
  type Sandbox as WireSandbox,
  type SandboxEvent,
  type SandboxEventList,
  type SandboxState,
  type SetTagsRequest,
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

/** Cheap client-side check of a tag map; the server is the authority. */
export function checkTags(tags: unknown): asserts tags is Record<string, string> {
  if (tags === null || typeof tags !== "object" || Array.isArray(tags)) throw new InvalidError("tags must be an object of strings");
  const entries = Object.entries(tags);
  if (entries.length > LIMITS.maxTags) throw new InvalidError(`there are ${entries.length} tags; at most ${LIMITS.maxTags} are allowed`);
  for (const [key, value] of entries) {
    if (key === "" || key.length > LIMITS.maxTagLength) throw new InvalidError(`tag key ${JSON.stringify(key)} must have 1 to ${LIMITS.maxTagLength} characters`);
    if (typeof value !== "string") throw new InvalidError(`the value of tag ${JSON.stringify(key)} must be a string (got ${typeof value})`);
    if (value.length > LIMITS.maxTagLength) throw new InvalidError(`the value of tag ${JSON.stringify(key)} has more than ${LIMITS.maxTagLength} characters`);
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
  /** Whether the sandbox has a readiness probe (as of the last reply). */
  hasReadinessProbe: boolean;
  /** Whether its readiness probe has succeeded (as of the last reply). */
  ready: boolean;
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
    this.hasReadinessProbe = wire.hasReadinessProbe ?? false;
    this.ready = wire.ready ?? false;
    // Every call on this sandbox listens to it (streams, long polls): no leak warning at 11.
    setMaxListeners(0, this.#detach.signal);
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
    this.hasReadinessProbe = wire.hasReadinessProbe ?? false;
    this.ready = wire.ready ?? false;
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

  /**
   * The sandbox's lifecycle events so far (Created, Scheduled, Started, Ready,
   * Finished), with times; Finished carries the reason (exited, terminated,
   * timeout, idle-timeout, oom, failed: <error>) and the return code.
   * To follow them as they happen, use watchEvents().
   */
  async events(opts: CallOptions = {}): Promise<SandboxEvent[]> {
    const signal = this.#signal(opts);
    const list = await this.#http.json<SandboxEventList>({ method: "GET", path: this.#path("/events"), signal });
    return list.events;
  }

  /**
   * Follows the lifecycle events live: yields every event recorded so far,
   * then each new one as it happens, and ends after Finished. Break out of
   * the loop (or abort `signal`) to stop following.
   *
   * ```ts
   * for await (const e of sb.watchEvents()) console.log(e.type, e.at, e.reason ?? "");
   * ```
   *
   * A dropped connection is resumed without repeating or losing events.
   */
  async *watchEvents(opts: CallOptions = {}): AsyncGenerator<SandboxEvent, void, undefined> {
    const signal = this.#signal(opts);
    const stop = new AbortController();
    const sig = anySignal(stop.signal, signal)!;
    let seen = 0;
    let drops = 0;
    try {
      for (;;) {
        const res = await this.#http.stream({ method: "GET", path: this.#path("/events/stream"), accept: "text/event-stream", signal: sig });
        let index = 0;
        let failure: unknown;
        try {
          for await (const msg of sseMessages(res)) {
            if (msg.data === "") continue;
            let event: SandboxEvent;
            try {
              event = JSON.parse(msg.data) as SandboxEvent;
            } catch (err) {
              throw new SbxError(`events of sandbox ${this.sandboxId}: the server sent an invalid event`, "internal", { cause: err });
            }
            // The server replays every stored event first: skip the ones already yielded.
            if (index++ < seen) continue;
            seen++;
            drops = 0;
            yield event;
            if (event.type === "Finished") return;
          }
        } catch (err) {
          if (err instanceof SbxError || sig.aborted) throw sig.aborted ? sig.reason : err;
          failure = err;
        } finally {
          res.cancel();
        }
        // The stream ended (or dropped) before Finished: resume.
        if (drops >= MAX_STREAM_RECONNECTS) {
          throw new SbxError(`events of sandbox ${this.sandboxId}: the stream ended ${drops + 1} times in a row before Finished; giving up`, "unavailable", {
            cause: failure,
          });
        }
        await sleep(backoffMs(drops++), sig);
      }
    } finally {
      stop.abort(new ClientClosedError("stopped following events"));
    }
  }

  /** The sandbox's tags. */
  async getTags(opts: CallOptions = {}): Promise<Record<string, string>> {
    await this.poll(opts);
    return { ...this.tags };
  }

  /** Replaces all of the sandbox's tags with these (sandboxes.list filters on them). */
  async setTags(tags: Record<string, string>, opts: CallOptions = {}): Promise<void> {
    const signal = this.#signal(opts);
    checkTags(tags);
    const body: SetTagsRequest = { tags: { ...tags } };
    this.#apply(await this.#http.json<WireSandbox>({ method: "PUT", path: this.#path("/tags"), body, signal }));
  }

  /**
   * Resolves once the readiness probe has succeeded (at once when it already
   * has). Throws ConflictError when the sandbox has no readiness probe or
   * finished before it was ready, and TimeoutError after `timeoutMs`; a
   * probe that never succeeds does not terminate the sandbox.
   */
  async waitUntilReady(timeoutMs = 300_000, opts: CallOptions = {}): Promise<void> {
    if (typeof timeoutMs !== "number" || !(timeoutMs > 0) || !Number.isFinite(timeoutMs)) {
      throw new InvalidError(`timeoutMs must be a positive number (got ${timeoutMs})`);
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const signal = this.#signal(opts);
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const wait = Math.min(Math.ceil(remaining), LIMITS.maxWaitMs);
      const wire = await this.#http.json<WireSandbox>({
        method: "GET",
        path: this.#path("/ready"),
        query: { timeoutMs: wait },
        timeoutMs: wait + this.#http.config.timeoutMs,
        signal,
      });
      this.#apply(wire);
      if (wire.ready) return;
    }
    throw new TimeoutError(`sandbox ${this.sandboxId} was not ready within ${timeoutMs} ms`);
  }
}
