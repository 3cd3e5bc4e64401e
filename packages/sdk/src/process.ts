// ContainerProcess: a process in a sandbox (an exec, or the entrypoint `entry`).
import { ClientClosedError } from "./errors.js";
import { HttpClient, anySignal } from "./http.js";
import { SbxReadableStream, SbxWritableStream, StdinSender, outputStream, type StreamMode } from "./streams.js";
import { LIMITS, type Exec as WireExec } from "./wire.js";

/** Options every SDK call accepts. */
export interface CallOptions {
  /** Aborts the call; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** What a process shares with its sandbox: the HTTP client and the detach signal. */
export interface SandboxContext {
  readonly http: HttpClient;
  readonly sandboxId: string;
  /** Aborted (with a ClientClosedError) when the Sandbox object is detached. */
  readonly detached: AbortSignal;
}

export interface ProcessOptions {
  mode: StreamMode;
  stdout: "pipe" | "ignore";
  stderr: "pipe" | "ignore";
  /** Where stdin stands; undefined when unknown (a sandbox looked up by id). */
  stdinOffset: number | undefined;
}

export function checkOpen(ctx: SandboxContext): void {
  if (ctx.detached.aborted) throw new ClientClosedError(`sandbox ${ctx.sandboxId} is detached; use sandboxes.fromId() for a new handle`);
  if (ctx.http.closed) throw new ClientClosedError();
}

export function execPath(sandboxId: string, execId: string): string {
  return `/v1/sandboxes/${encodeURIComponent(sandboxId)}/execs/${encodeURIComponent(execId)}`;
}

export class ContainerProcess<T extends string | Uint8Array = string> {
  readonly sandboxId: string;
  readonly execId: string;
  /** null while running; the exit code, or 128 + signal. Updated by poll() and wait(). */
  returncode: number | null = null;
  readonly #ctx: SandboxContext;
  readonly #path: string;
  readonly #opts: ProcessOptions;
  // The streams are made on first use: most callers touch one or none of
  // the three, and making them costs more CPU than the exec call itself.
  #stdin: SbxWritableStream | undefined;
  #stdout: SbxReadableStream<T> | undefined;
  #stderr: SbxReadableStream<T> | undefined;

  /** @internal Made by Sandbox.exec() and for the sandbox's entrypoint. */
  constructor(ctx: SandboxContext, execId: string, opts: ProcessOptions) {
    this.#ctx = ctx;
    this.sandboxId = ctx.sandboxId;
    this.execId = execId;
    this.#path = execPath(ctx.sandboxId, execId);
    this.#opts = opts;
  }

  /** stdin: writeText(), writeBytes(), close() (EOF). */
  get stdin(): SbxWritableStream {
    const { http, detached } = this.#ctx;
    return (this.#stdin ??= new SbxWritableStream(new StdinSender(http, this.#path, detached, this.#opts.stdinOffset)));
  }

  /** stdout: strings in text mode, Uint8Array in binary mode; readText(), readBytes(), for await. */
  get stdout(): SbxReadableStream<T> {
    return (this.#stdout ??= this.#output("stdout"));
  }

  get stderr(): SbxReadableStream<T> {
    return (this.#stderr ??= this.#output("stderr"));
  }

  #output(name: "stdout" | "stderr"): SbxReadableStream<T> {
    const { http, detached } = this.#ctx;
    // A stream read to its end brings the exit code with it (a trailer): wait() then needs no call.
    const onExit = (code: number) => void (this.returncode ??= code);
    return outputStream<T>(http, this.#path, name, this.#opts.mode, this.#opts[name] === "pipe", detached, onExit);
  }

  /** The exit code if the process has exited, else null. */
  async poll(opts: CallOptions = {}): Promise<number | null> {
    if (this.returncode !== null) return this.returncode;
    checkOpen(this.#ctx);
    const exec = await this.#ctx.http.json<WireExec>({
      method: "GET",
      path: this.#path,
      signal: anySignal(this.#ctx.detached, opts.signal),
    });
    this.returncode = exec.returncode;
    return this.returncode;
  }

  /** Waits for the process to exit; resolves with its exit code (137 when killed by its timeout). */
  async wait(opts: CallOptions = {}): Promise<number> {
    while (this.returncode === null) {
      checkOpen(this.#ctx);
      const exec = await this.#ctx.http.json<WireExec>({
        method: "GET",
        path: `${this.#path}/wait`,
        query: { timeoutMs: LIMITS.maxWaitMs },
        timeoutMs: LIMITS.maxWaitMs + this.#ctx.http.config.timeoutMs,
        signal: anySignal(this.#ctx.detached, opts.signal),
      });
      this.returncode = exec.returncode;
    }
    return this.returncode;
  }
}
