// The SDK's HTTP/1.1 over plain sockets: unary calls on kept-alive
// connections, and streaming GETs read straight into the caller's buffer.
// With node:http's client the SDK spent 2.3 ms of CPU per exec + wait here
// (two calls; 1.6 ms on these connections), and for output streams it read
// a socket into a fresh 64 KiB buffer per
// read while its parser copied every piece of a body into another fresh
// one; on a VM where first touching a page is dear, those allocations were
// most of the SDK's CPU per GiB of stdout. Here each connection reads
// (net's `onread`) into one buffer kept for its life, and a reply's body
// bytes are copied from it into the buffer the caller reads into: a BYOB
// reader's view, or one fresh buffer per read for a default reader. Only
// what the SDK needs of HTTP/1.1 is here: requests with a body of known
// length, replies framed by chunks, a length or the close, and trailers.
// Over HTTPS the SDK uses node:https instead (transport.ts).
import * as net from "node:net";
import type { Exchange, Limits, OpenedReply } from "./transport.js";

/** The status line and headers must fit in this. */
export const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line or a trailer line longer than this is not HTTP from our server. */
const MAX_LINE_BYTES = 8 * 1024;
/** The most a default read hands out at once (a BYOB read brings its own buffer). */
const READ_BYTES = 64 * 1024;
/** A connection's read buffer, kept for its life (only the pages a read touched are resident). */
const SOCKET_BUFFER_BYTES = 256 * 1024;
/** An idle kept-alive connection is closed after this, well before the server's own limit (72 s). */
export const IDLE_CLOSE_MS = 4000;

const LF = 10;

type Phase =
  | "head"
  | "size" // reading a chunk-size line
  | "data" // inside a chunk, or a length-delimited or close-delimited body
  | "data-end" // the CRLF after a chunk's data
  | "trailers"
  | "done";

/** A read in progress: body bytes are copied into `dest` from `fill` on. */
interface ReadOp {
  dest: Uint8Array;
  fill: number;
  resolve(n: number | null): void;
  reject(err: unknown): void;
}

function connectionError(message: string, code = "ECONNRESET"): Error {
  return Object.assign(new Error(message), { code });
}

/** The connection ended inside a reply: a drop, not an end (a stream reconnects). */
export function closedBeforeEnd(): Error {
  return connectionError("the connection closed before the reply ended");
}

function protocolError(message: string): Error {
  return connectionError(`the server's reply is not valid HTTP/1.1: ${message}`, "EPROTO");
}

/** What a connection's socket reports to the exchange using it. */
interface SocketListener {
  /** Returns false to pause the socket. */
  onRead(bytes: Uint8Array): boolean;
  onEnd(): void;
  onError(err: unknown): void;
}

/** One plain-HTTP connection; its exchanges run one after another. */
class Connection {
  readonly socket: net.Socket;
  #listener: SocketListener | undefined;
  /** Bytes that came for the exchange in progress (0: the server said nothing yet). */
  received = 0;
  dead = false;

  constructor(host: string, port: number) {
    this.socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: new Uint8Array(SOCKET_BUFFER_BYTES),
        callback: (n: number, buf: Uint8Array) => {
          this.received += n;
          if (this.#listener) return this.#listener.onRead(buf.subarray(0, n));
          // Bytes while idle: not HTTP/1.1 as we speak it. Nothing can be reused.
          this.destroy();
          return false;
        },
      },
    });
    this.socket.on("error", (err) => {
      this.dead = true;
      this.#listener?.onError(err);
    });
    this.socket.on("end", () => {
      this.dead = true;
      this.#listener?.onEnd();
    });
    this.socket.on("close", () => {
      this.dead = true;
      this.#listener?.onError(closedBeforeEnd());
    });
  }

  attach(listener: SocketListener): void {
    this.#listener = listener;
    this.received = 0;
  }

  /** Between exchanges the socket reads on, so a close by the server is seen at once. */
  detach(): void {
    this.#listener = undefined;
    this.socket.resume();
  }

  destroy(): void {
    this.dead = true;
    this.#listener = undefined;
    this.socket.destroy();
  }
}

/** Kept-alive connections to one server, the last used first. */
export class ConnectionPool {
  readonly #idle: { conn: Connection; timer: NodeJS.Timeout }[] = [];
  readonly #host: string;
  readonly #port: number;

  constructor(base: URL) {
    this.#host = base.hostname.replace(/^\[(.*)\]$/, "$1");
    this.#port = Number(base.port || 80);
  }

  /** A connection for one exchange, and whether it served one before. */
  take(): { conn: Connection; reused: boolean } {
    for (let e = this.#idle.pop(); e; e = this.#idle.pop()) {
      clearTimeout(e.timer);
      if (!e.conn.dead) return { conn: e.conn, reused: true };
    }
    return { conn: new Connection(this.#host, this.#port), reused: false };
  }

  give(conn: Connection): void {
    if (conn.dead) return;
    conn.detach();
    const entry = {
      conn,
      timer: setTimeout(() => {
        const i = this.#idle.indexOf(entry);
        if (i >= 0) this.#idle.splice(i, 1);
        conn.destroy();
      }, IDLE_CLOSE_MS),
    };
    entry.timer.unref();
    this.#idle.push(entry);
  }

  close(): void {
    for (const e of this.#idle.splice(0)) {
      clearTimeout(e.timer);
      e.conn.destroy();
    }
  }
}

export interface OpenOptions {
  /** Back to this pool once the reply is read (else a connection of its own, closed after). */
  pool?: ConnectionPool;
  /** The deadline covers the whole body (a unary call), not the head only. */
  deadlineCoversBody?: boolean;
}

/**
 * Opens the exchange; resolves once the reply's headers are in. A pooled
 * connection that the server closed just as it was taken fails before any
 * byte of a reply; an idempotent request is then sent once more on a new
 * connection. (An idle connection reads on, so a close the server made
 * earlier has already taken it out of the pool.) Any other request fails:
 * a server that died with it half done looks the same.
 */
export async function openDirect(x: Exchange, limits: Limits, opts: OpenOptions = {}): Promise<DirectReply> {
  const start = (conn: Connection) => new Promise<DirectReply>((resolve, reject) => new DirectReply(conn, x, limits, opts, resolve, reject));
  const pool = opts.pool ?? new ConnectionPool(x.url);
  const { conn, reused } = pool.take();
  try {
    return await start(conn);
  } catch (err) {
    const stale = x.idempotent === true && reused && conn.received === 0 && ["ECONNRESET", "EPIPE"].includes(String((err as { code?: unknown }).code));
    if (!stale) throw err;
    return start(pool.take().conn);
  }
}

export class DirectReply implements OpenedReply, SocketListener {
  status = 0;
  statusText = "";
  readonly #headers = new Map<string, string>();
  readonly #trailers = new Map<string, string>();
  readonly #conn: Connection;
  readonly #socket: net.Socket;
  readonly #opts: OpenOptions;
  /** The server may take another request on this connection after this reply. */
  #reusable = false;

  #phase: Phase = "head";
  /** Body bytes left in the current chunk or length-delimited body; -1: until the close. */
  #left = 0;
  #chunked = false;
  /** A chunk-size or trailer line cut by a read. */
  #line = "";
  /** The head's bytes so far, until it is complete. */
  #head: Buffer | undefined = Buffer.alloc(0);
  /**
   * Wire bytes read but not parsed yet: the socket is paused until they are,
   * so those in the socket's buffer are not overwritten.
   */
  #unparsed: Uint8Array | undefined;
  #op: ReadOp | undefined;
  #failure: unknown;
  #cancelled = false;
  #answered = false;
  #resolveHead: (r: DirectReply) => void;
  #rejectHead: (err: unknown) => void;
  #timer: NodeJS.Timeout | undefined;
  readonly #detach: () => void;

  constructor(conn: Connection, x: Exchange, limits: Limits, opts: OpenOptions, resolve: (r: DirectReply) => void, reject: (err: unknown) => void) {
    this.#conn = conn;
    this.#socket = conn.socket;
    this.#opts = opts;
    this.#resolveHead = resolve;
    this.#rejectHead = reject;
    conn.attach(this);
    const signals = limits.signals.filter((s): s is AbortSignal => s !== undefined);
    const listeners = signals.map((s) => {
      const l = () => this.#fail(s.reason);
      s.addEventListener("abort", l, { once: true });
      return [s, l] as const;
    });
    this.#detach = () => {
      for (const [s, l] of listeners) s.removeEventListener("abort", l);
    };
    this.#timer = setTimeout(() => this.#fail(limits.timeoutError()), limits.timeoutMs);
    const fired = signals.find((s) => s.aborted);
    if (fired) {
      this.#fail(fired.reason);
      return;
    }
    if (conn.dead) {
      this.#fail(closedBeforeEnd());
      return;
    }
    let head = `${x.method} ${x.url.pathname}${x.url.search} HTTP/1.1\r\nhost: ${x.url.host}\r\nconnection: ${opts.pool ? "keep-alive" : "close"}\r\n`;
    for (const [k, v] of Object.entries(x.headers)) head += `${k}: ${v}\r\n`;
    if (x.body !== undefined) head += `content-length: ${Buffer.byteLength(x.body)}\r\n`;
    head += "\r\n";
    // One write for a small request: one segment, one wake-up of the server.
    if (typeof x.body === "string") this.#socket.write(head + x.body);
    else {
      this.#socket.write(head);
      if (x.body !== undefined && x.body.length > 0) this.#socket.write(x.body);
    }
    this.#socket.resume();
  }

  header(name: string): string | undefined {
    return this.#headers.get(name);
  }

  trailer(name: string): string | undefined {
    return this.#phase === "done" ? this.#trailers.get(name) : undefined;
  }

  /** Where read() parses into before copying out exactly what came. */
  #scratch: Uint8Array | undefined;

  /** The next piece of the body, in a buffer of its own and of its size; null at its end. */
  async read(): Promise<Uint8Array | null> {
    const scratch = (this.#scratch ??= new Uint8Array(READ_BYTES));
    const n = await this.readInto(scratch);
    return n === null ? null : scratch.slice(0, n);
  }

  /** Reads body bytes into `dest` from its start: how many (≥ 1), or null at the body's end. */
  readInto(dest: Uint8Array): Promise<number | null> {
    if (this.#cancelled) return Promise.resolve(null);
    if (this.#op) return Promise.reject(new Error("DirectReply: one read at a time"));
    if (dest.length === 0) return Promise.reject(new RangeError("DirectReply: an empty buffer"));
    return new Promise((resolve, reject) => {
      this.#op = { dest, fill: 0, resolve, reject };
      this.#parseUnparsed();
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.read();
      if (chunk === null) return;
      yield chunk;
    }
  }

  /** The whole body as text (a unary reply, an error reply). */
  async text(): Promise<string> {
    // A body of known length lands in one buffer of its size; else in pieces.
    const known = !this.#chunked && this.#left >= 0 && this.#phase === "data" ? this.#left : 0;
    if (known > 0) {
      const body = Buffer.allocUnsafe(known);
      let at = 0;
      while (at < known) {
        const n = await this.readInto(body.subarray(at));
        if (n === null) break;
        at += n;
      }
      return body.toString("utf8", 0, at);
    }
    const parts: Uint8Array[] = [];
    for await (const chunk of this) parts.push(chunk);
    return Buffer.concat(parts).toString("utf8");
  }

  cancel(): void {
    this.#cancelled = true;
    this.#fail(connectionError("cancelled", "ECANCELED"));
  }

  // ---- socket side ----------------------------------------------------------

  /** Returns false to pause the socket: the read's bytes wait in its buffer for the next read(). */
  onRead(bytes: Uint8Array): boolean {
    if (this.#failure !== undefined) return false;
    if (this.#head) {
      this.#head = Buffer.concat([this.#head, bytes]);
      this.#onHeadBytes();
    } else {
      this.#unparsed = bytes;
      this.#parseUnparsed();
    }
    // Done: the connection is back in its pool (or closed) and reads on for whoever is next.
    if (this.#phase === "done" || this.#failure !== undefined) return this.#phase === "done";
    return this.#head !== undefined || (this.#unparsed === undefined && this.#op !== undefined);
  }

  #onHeadBytes(): void {
    const head = this.#head!;
    const end = head.indexOf("\r\n\r\n");
    if (end > MAX_HEAD_BYTES || (end < 0 && head.length > MAX_HEAD_BYTES)) return this.#fail(protocolError(`the head is over ${MAX_HEAD_BYTES} bytes`));
    if (end < 0) return;
    const lines = head.toString("latin1", 0, end).split("\r\n");
    const status = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0] ?? "");
    if (!status) return this.#fail(protocolError(`status line ${JSON.stringify(lines[0]?.slice(0, 80))}`));
    const rest = head.subarray(end + 4);
    const code = Number(status[1]);
    if (code >= 100 && code < 200) {
      // An interim reply (100 Continue): the real one follows.
      this.#head = rest;
      if (rest.length > 0) this.#onHeadBytes();
      return;
    }
    this.status = code;
    this.statusText = status[2] ?? "";
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) return this.#fail(protocolError(`header line ${JSON.stringify(line.slice(0, 80))}`));
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const had = this.#headers.get(name);
      this.#headers.set(name, had === undefined ? value : `${had}, ${value}`);
    }
    const coding = this.#headers.get("transfer-encoding");
    const length = this.#headers.get("content-length");
    if (code === 204 || code === 304) {
      this.#left = 0;
      this.#phase = "done";
    } else if (coding !== undefined) {
      if (!/(^|,)\s*chunked\s*$/i.test(coding)) return this.#fail(protocolError(`transfer-encoding ${coding}`));
      this.#chunked = true;
      this.#phase = "size";
    } else if (length !== undefined) {
      if (!/^\d{1,15}$/.test(length)) return this.#fail(protocolError(`content-length ${length}`));
      this.#left = Number(length);
      this.#phase = this.#left === 0 ? "done" : "data";
    } else {
      this.#left = -1;
      this.#phase = "data";
    }
    this.#head = undefined;
    if (rest.length > 0) this.#unparsed = rest;
    if (!this.#opts.deadlineCoversBody) clearTimeout(this.#timer);
    // Reusable: HTTP/1.1 without `connection: close`, and a body with an end of its own.
    this.#reusable = lines[0]!.startsWith("HTTP/1.1") && !/(^|,)\s*close\s*(,|$)/i.test(this.#headers.get("connection") ?? "") && this.#left !== -1;
    this.#answered = true;
    if (this.#phase === "done") this.#finish();
    this.#resolveHead(this);
  }

  /** Parses what was read into the waiting read, if any; settles it, or reads on. */
  #parseUnparsed(): void {
    const bytes = this.#unparsed;
    if (bytes && this.#op) {
      this.#unparsed = undefined;
      const used = this.#parse(bytes);
      // The read is full: the rest waits for the next one.
      if (used < bytes.length && this.#phase !== "done") this.#unparsed = bytes.subarray(used);
    }
    this.#settle();
  }

  /** Parses wire bytes, copying body bytes into the waiting read; returns how many were used. */
  #parse(src: Uint8Array): number {
    let i = 0;
    const to = src.length;
    while (i < to && this.#op && this.#failure === undefined) {
      const op = this.#op;
      switch (this.#phase) {
        case "data": {
          let take = Math.min(to - i, op.dest.length - op.fill);
          if (this.#left >= 0) take = Math.min(take, this.#left);
          op.dest.set(src.subarray(i, i + take), op.fill);
          op.fill += take;
          i += take;
          if (this.#left >= 0) {
            this.#left -= take;
            if (this.#left === 0) {
              if (this.#chunked) this.#phase = "data-end";
              else this.#finish();
            }
          }
          if (op.fill === op.dest.length) return i;
          break;
        }
        case "data-end":
        case "size":
        case "trailers": {
          const lf = src.indexOf(LF, i);
          const end = lf < 0 ? to : lf;
          this.#line += Buffer.from(src.buffer, src.byteOffset + i, end - i).toString("latin1");
          i = end;
          if (this.#line.length > MAX_LINE_BYTES) {
            this.#fail(protocolError("a chunk-size or trailer line is too long"));
            return i;
          }
          if (end === to) break;
          i++; // the LF
          const line = this.#line.endsWith("\r") ? this.#line.slice(0, -1) : this.#line;
          this.#line = "";
          this.#onLine(line);
          break;
        }
        case "done":
          // Bytes after the reply: nothing the server may send; the connection is not reused.
          this.#conn.destroy();
          return to;
        case "head":
          throw new Error("unreachable: body bytes parsed before the head");
      }
    }
    return i;
  }

  #onLine(line: string): void {
    switch (this.#phase) {
      case "data-end":
        if (line !== "") return this.#fail(protocolError("a chunk's data is not followed by CRLF"));
        this.#phase = "size";
        return;
      case "size": {
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
        if (!m) return this.#fail(protocolError(`chunk size ${JSON.stringify(line.slice(0, 40))}`));
        this.#left = parseInt(m[1]!, 16);
        this.#phase = this.#left === 0 ? "trailers" : "data";
        return;
      }
      case "trailers": {
        if (line === "") return this.#finish();
        const colon = line.indexOf(":");
        if (colon <= 0) return this.#fail(protocolError(`trailer line ${JSON.stringify(line.slice(0, 80))}`));
        this.#trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
        return;
      }
      default:
        throw new Error(`unreachable: a line in phase ${this.#phase}`);
    }
  }

  /** Resolves the waiting read if it has bytes or the body ended; else lets the socket read on. */
  #settle(): void {
    const op = this.#op;
    if (!op) return;
    if (this.#failure !== undefined) {
      this.#op = undefined;
      op.reject(this.#failure);
      return;
    }
    if (op.fill > 0 || this.#phase === "done") {
      this.#op = undefined;
      op.resolve(op.fill > 0 ? op.fill : null);
      return;
    }
    this.#socket.resume();
  }

  #finish(): void {
    const leftover = this.#unparsed !== undefined && this.#unparsed.length > 0;
    this.#phase = "done";
    this.#unparsed = undefined;
    clearTimeout(this.#timer);
    this.#detach();
    if (this.#opts.pool && this.#reusable && !leftover && !this.#conn.dead) this.#opts.pool.give(this.#conn);
    else this.#conn.destroy();
  }

  onEnd(): void {
    if (this.#phase === "data" && this.#left === -1) {
      this.#finish();
      this.#settle();
      return;
    }
    if (this.#phase !== "done") this.#fail(closedBeforeEnd());
  }

  onError(err: unknown): void {
    this.#fail(err);
  }

  /** Ends the exchange with `err` (the first cause wins); a read waiting or to come rejects with it. */
  #fail(err: unknown): void {
    if (this.#phase === "done" || this.#failure !== undefined) return;
    this.#failure = err;
    clearTimeout(this.#timer);
    this.#detach();
    this.#conn.destroy();
    if (!this.#answered) {
      this.#answered = true;
      this.#rejectHead(err);
    }
    this.#settle();
  }
}
