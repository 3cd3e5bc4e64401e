// The one place the SDK talks HTTP: bearer token, JSON, timeouts, retries of
// safe calls, and the translation of error replies into SbxError classes.
import { ClientClosedError, SbxError, TimeoutError, errorFromWire } from "./errors.js";
import { Transport, type StreamReply } from "./transport.js";

export interface HttpConfig {
  serverUrl: string;
  token: string | undefined;
  /** Deadline of a unary call: from sending until its reply body is read. */
  timeoutMs: number;
  /**
   * Deadline until the reply headers of a streaming call arrive (the server
   * sends them within 20 ms, so this bounds connecting). The body of a stream has
   * no deadline: it is held open while the process runs.
   */
  connectTimeoutMs: number;
  /** Retries of a safe call after a connection error or a 502/503/504. */
  maxRetries: number;
}

export type Query = Record<string, string | number | boolean | undefined | readonly string[]>;

export interface RequestOptions {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Query;
  /** A JSON value, or raw bytes sent as application/octet-stream. */
  body?: unknown;
  signal?: AbortSignal;
  /** Overrides the client's timeoutMs (long polls, sandbox creation). */
  timeoutMs?: number;
  /** A POST or DELETE the API marks idempotent (stdin writes carry an offset); GET and PUT always are. */
  idempotent?: boolean;
  /** The Accept header of a streaming call (default application/octet-stream). */
  accept?: string;
}

const RETRY_STATUS = new Set([502, 503, 504]);
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;

/** Capped exponential backoff with jitter: a delay in [cap/2, cap] for the attempt. */
export function backoffMs(attempt: number): number {
  const cap = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return cap / 2 + Math.random() * (cap / 2);
}

/** Sleeps, rejecting with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Combines optional signals into one (undefined when there are none). */
export function anySignal(...signals: (AbortSignal | undefined)[]): AbortSignal | undefined {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  if (present.length === 0) return undefined;
  if (present.length === 1) return present[0];
  return AbortSignal.any(present);
}

function errnoCode(err: unknown): string {
  return String((err as { code?: unknown } | undefined)?.code ?? "");
}

/** A connection-level failure (refused, reset, cut mid-body, DNS). */
export function isConnectionError(err: unknown): boolean {
  return err instanceof Error && /^E[A-Z]+/.test(errnoCode(err));
}

/** The request was certainly not sent, so even a non-idempotent call may be retried. */
function neverSent(err: unknown): boolean {
  const code = errnoCode(err);
  return code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN";
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class HttpClient {
  readonly config: HttpConfig;
  readonly #base: URL;
  readonly #closer = new AbortController();
  readonly #transport: Transport;

  constructor(config: HttpConfig) {
    this.config = config;
    let base: URL;
    try {
      base = new URL(config.serverUrl);
    } catch (err) {
      throw new SbxError(`invalid serverUrl ${JSON.stringify(config.serverUrl)}: expected e.g. http://127.0.0.1:7423`, "invalid", { cause: err });
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new SbxError(`invalid serverUrl ${config.serverUrl}: the scheme must be http or https`, "invalid");
    }
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    this.#base = base;
    this.#transport = new Transport(base);
  }

  get closed(): boolean {
    return this.#closer.signal.aborted;
  }

  /** Aborts every call in flight; later calls throw ClientClosedError. */
  close(): void {
    if (this.closed) return;
    this.#closer.abort(new ClientClosedError());
    this.#transport.close(this.#closer.signal.reason);
  }

  url(path: string, query?: Query): URL {
    const url = new URL(path.replace(/^\//, ""), this.#base);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) url.searchParams.append(key, v);
      else url.searchParams.set(key, String(value));
    }
    return url;
  }

  /** A unary call: returns the parsed JSON reply (undefined for an empty one). */
  async json<T>(opts: RequestOptions): Promise<T> {
    return (await this.#send(opts, false)) as T;
  }

  /** A streaming GET: returns the reply once its headers arrived with a 2xx status. */
  async stream(opts: RequestOptions): Promise<StreamReply> {
    return (await this.#send(opts, true)) as StreamReply;
  }

  async #send(opts: RequestOptions, streaming: boolean): Promise<unknown> {
    const safe = opts.method === "GET" || opts.method === "PUT" || opts.idempotent === true;
    const url = this.url(opts.path, opts.query);
    const headers: Record<string, string> = { accept: streaming ? (opts.accept ?? "application/octet-stream") : "application/json" };
    if (this.config.token) headers.authorization = `Bearer ${this.config.token}`;
    let body: Uint8Array | string | undefined;
    if (opts.body instanceof Uint8Array) {
      body = opts.body;
      headers["content-type"] = "application/octet-stream";
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] = "application/json";
    }
    const timeoutMs = streaming ? this.config.connectTimeoutMs : (opts.timeoutMs ?? this.config.timeoutMs);

    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new ClientClosedError();
      if (opts.signal?.aborted) throw opts.signal.reason;
      const exchange = { method: opts.method, url, headers, body, idempotent: safe };
      const limits = {
        signals: [opts.signal],
        timeoutMs,
        timeoutError: () => new TimeoutError(`${opts.method} ${url.pathname} got no reply within ${timeoutMs} ms`),
      };
      let retryable: SbxError;
      try {
        let status: number;
        let text: string;
        let statusText: string;
        if (streaming) {
          const reply = await this.#transport.stream(exchange, limits);
          if (reply.status >= 200 && reply.status < 300) return reply;
          ({ status, statusText } = reply);
          text = await reply.text().catch(() => "");
        } else {
          ({ status, statusText, text } = await this.#transport.unary(exchange, limits));
          if (status >= 200 && status < 300) {
            if (text === "") return undefined;
            try {
              return JSON.parse(text);
            } catch (err) {
              throw new SbxError(`${opts.method} ${url.pathname}: the server sent invalid JSON`, "internal", { status, cause: err });
            }
          }
        }
        const error = errorFromReply(status, statusText, text);
        if (!(safe && RETRY_STATUS.has(status))) throw error;
        retryable = error;
      } catch (err) {
        if (err instanceof SbxError) throw err;
        // An abort rejects with its reason: the caller's, the client's close, or the deadline's.
        if (opts.signal?.aborted && err === opts.signal.reason) throw err;
        if (!isConnectionError(err)) throw err;
        retryable = new SbxError(`cannot reach the sbx server at ${this.#base.origin}: ${describe(err)}`, "unavailable", { cause: err });
        if (!(safe || neverSent(err))) throw retryable;
      }
      if (attempt >= this.config.maxRetries) throw retryable;
      await sleep(backoffMs(attempt), anySignal(this.#closer.signal, opts.signal));
    }
  }
}

/** Translates an error reply (the `{ error: { code, message } }` body) into its SbxError. */
export function errorFromReply(status: number, statusText: string, text: string): SbxError {
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    const e = parsed.error;
    if (e && typeof e.message === "string") {
      const details = e.details && typeof e.details === "object" ? (e.details as Record<string, unknown>) : undefined;
      return errorFromWire(typeof e.code === "string" ? e.code : undefined, e.message, status, details);
    }
  } catch {
    // Not our error body (a proxy's page, say): fall through.
  }
  const snippet = text.trim().slice(0, 200);
  return errorFromWire(undefined, `HTTP ${status} ${statusText}${snippet ? `: ${snippet}` : ""}`, status);
}
