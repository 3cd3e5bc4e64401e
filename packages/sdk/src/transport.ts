// One HTTP exchange with kept-alive connections: over plain HTTP on the
// SDK's own connections (direct-reply.ts), over HTTPS through node:https.
// The SDK used fetch first (~1.5 ms per call here), then node:http (~0.7 ms,
// and ~2.3 ms of client CPU per exec + wait); its own connections cost
// ~1.6 ms of CPU per exec + wait. Retries, deadlines and error classes stay
// in http.ts; this file only moves bytes and reports how an exchange ended.
import type * as http from "node:http";
import * as https from "node:https";
import { closedBeforeEnd, ConnectionPool, openDirect } from "./direct-reply.js";

/** A reply whose body is read as it arrives (an output stream, SSE). */
export interface StreamReply extends AsyncIterable<Uint8Array> {
  readonly status: number;
  /** A reply header (lower-case name), or undefined. */
  header(name: string): string | undefined;
  /** A trailer (lower-case name) once read() returned null, or undefined. */
  trailer(name: string): string | undefined;
  /** The next chunk; null once the body ended cleanly; throws if the connection dropped first. */
  read(): Promise<Uint8Array | null>;
  /** As read(), into `dest` from its start: how many bytes (≥ 1), or null at the end. */
  readInto(dest: Uint8Array): Promise<number | null>;
  /** Stops reading and closes the connection (idempotent). */
  cancel(): void;
}

/** A reply as the transport hands it over: an error reply's body is read whole. */
export interface OpenedReply extends StreamReply {
  readonly statusText: string;
  text(): Promise<string>;
}

export interface Exchange {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: Uint8Array | string | undefined;
  /** Sending it twice does no harm (GET, PUT, an offset-carrying stdin write). */
  idempotent?: boolean;
}

/** Plain view of a Buffer, so callers see the Uint8Array they would from fetch. */
function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A reply read through node:http(s): the HTTPS path. */
export class IncomingReply implements OpenedReply {
  readonly status: number;
  readonly statusText: string;
  readonly #res: http.IncomingMessage;
  readonly #it: AsyncIterator<Buffer>;
  /** Why the exchange was aborted (a signal's reason, the deadline), if it was. */
  readonly #abortReason: () => unknown;
  #cancelled = false;
  /** What a readInto() had no room for. */
  #rest: Uint8Array | undefined;

  constructor(res: http.IncomingMessage, abortReason: () => unknown) {
    this.#abortReason = abortReason;
    this.status = res.statusCode ?? 0;
    this.statusText = res.statusMessage ?? "";
    this.#res = res;
    this.#it = res[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  header(name: string): string | undefined {
    const v = this.#res.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  }

  trailer(name: string): string | undefined {
    return this.#res.complete ? this.#res.trailers[name] : undefined;
  }

  async read(): Promise<Uint8Array | null> {
    if (this.#cancelled) return null;
    if (this.#rest) {
      const rest = this.#rest;
      this.#rest = undefined;
      return rest;
    }
    for (;;) {
      const { done, value } = await this.#it.next().catch((e: unknown) => {
        throw this.#abortReason() ?? e;
      });
      if (done) {
        // A body cut short by the peer ends the iterator without an error on some paths.
        if (!this.#res.complete) throw closedBeforeEnd();
        return null;
      }
      if (value.length > 0) return bytes(value);
    }
  }

  async readInto(dest: Uint8Array): Promise<number | null> {
    const chunk = await this.read();
    if (chunk === null) return null;
    const n = Math.min(chunk.length, dest.length);
    dest.set(chunk.subarray(0, n));
    if (n < chunk.length) this.#rest = chunk.subarray(n);
    return n;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.read();
      if (chunk === null) return;
      yield chunk;
    }
  }

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#res.destroy();
  }

  /** The whole body as text (a unary reply). */
  async text(): Promise<string> {
    const parts: Buffer[] = [];
    try {
      for await (const chunk of this.#res as AsyncIterable<Buffer>) parts.push(chunk);
    } catch (e) {
      throw this.#abortReason() ?? e;
    }
    if (!this.#res.complete) throw closedBeforeEnd();
    return Buffer.concat(parts).toString("utf8");
  }
}

/** When an exchange is given up: each signal, and a deadline. */
export interface Limits {
  signals: readonly (AbortSignal | undefined)[];
  timeoutMs: number;
  /** The error a missed deadline rejects with. */
  timeoutError: () => Error;
}

export interface UnaryReply {
  status: number;
  statusText: string;
  text: string;
}

/**
 * The connections to one server: over plain HTTP the SDK's own
 * (direct-reply.ts), over HTTPS node:https's agent. Idle connections are
 * closed after a few seconds, well before the server's own keep-alive
 * limit, so a request is rarely written to a connection the server is closing.
 */
export class Transport {
  readonly #pool: ConnectionPool | undefined;
  readonly #agent: https.Agent | undefined;
  /** Aborted by close(): ends every exchange in flight. */
  readonly #closing = new AbortController();

  constructor(base: URL) {
    if (base.protocol === "https:") {
      this.#agent = new https.Agent({ keepAlive: true, keepAliveMsecs: 1000, timeout: 5000, scheduling: "lifo" });
    } else {
      this.#pool = new ConnectionPool(base);
    }
  }

  /** A call whose whole reply is read within the deadline. */
  async unary(x: Exchange, limits: Limits): Promise<UnaryReply> {
    if (this.#pool) {
      const reply = await openDirect(x, this.#withClose(limits), { pool: this.#pool, deadlineCoversBody: true });
      return { status: reply.status, statusText: reply.statusText, text: await reply.text() };
    }
    const { reply, settle } = await this.#send(x, this.#withClose(limits));
    try {
      return { status: reply.status, statusText: reply.statusText, text: await reply.text() };
    } finally {
      settle();
    }
  }

  /**
   * A call whose reply body is read as it arrives: the deadline covers the
   * headers only; the signals keep applying until the body is done.
   */
  async stream(x: Exchange, limits: Limits): Promise<OpenedReply> {
    if (this.#pool) return openDirect(x, this.#withClose(limits), { pool: this.#pool });
    const { reply, settle } = await this.#send(x, this.#withClose(limits));
    settle();
    return reply;
  }

  /** An exchange over HTTPS, through node:https. */
  #send(x: Exchange, limits: Limits): Promise<{ reply: IncomingReply; settle: () => void }> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...x.headers };
      if (x.body !== undefined) headers["content-length"] = Buffer.byteLength(x.body);
      const req = https.request(x.url, { method: x.method, headers, agent: this.#agent });
      let answered = false;
      let abortReason: unknown;
      const signals = limits.signals.filter((s): s is AbortSignal => s !== undefined);
      const abort = (reason: unknown) => {
        abortReason ??= reason;
        if (!answered) {
          answered = true;
          reject(reason);
        }
        req.destroy(reason instanceof Error ? reason : new Error(String(reason)));
      };
      const listeners = signals.map((s) => {
        const l = () => abort(s.reason);
        s.addEventListener("abort", l, { once: true });
        return [s, l] as const;
      });
      const detach = () => {
        for (const [s, l] of listeners) s.removeEventListener("abort", l);
      };
      const timer = setTimeout(() => abort(limits.timeoutError()), limits.timeoutMs);
      const settle = () => clearTimeout(timer);
      req.once("response", (res) => {
        res.once("close", detach);
        if (answered) return;
        answered = true;
        resolve({ reply: new IncomingReply(res, () => abortReason), settle });
      });
      req.once("error", (err) => {
        settle();
        detach();
        if (!answered) {
          answered = true;
          reject(err);
        }
      });
      const fired = signals.find((s) => s.aborted);
      if (fired) return abort(fired.reason);
      req.end(x.body);
    });
  }

  /** The limits of an exchange, with close() among its signals. */
  #withClose(limits: Limits): Limits {
    return { ...limits, signals: [...limits.signals, this.#closing.signal] };
  }

  /** Aborts every exchange in flight with `reason` and closes the pooled connections. */
  close(reason: unknown): void {
    this.#closing.abort(reason);
    this.#pool?.close();
    this.#agent?.destroy();
  }
}
