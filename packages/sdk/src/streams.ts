// Process output and input streams. Output streams read
// GET …/execs/:id/{stdout,stderr}?offset=N and, when the connection drops
// before the server ended the stream, reconnect from the byte offset reached:
// no byte is lost or repeated. Stdin writes carry their offset, so a write
// re-sent after a dropped connection is applied once by the server.
import { ReadableStream, WritableStream, type UnderlyingByteSource, type UnderlyingSource } from "node:stream/web";
import { ConflictError, SbxError } from "./errors.js";
import { HttpClient, anySignal, backoffMs, sleep } from "./http.js";
import type { StreamReply } from "./transport.js";
import { HEADER_STREAM_OFFSET, LIMITS, TRAILER_EXIT_CODE, type StdinAck, type StreamName } from "./wire.js";

export type StreamMode = "text" | "binary";

/** A pull source of bytes; `null` marks the end of the stream. */
export interface ByteSource {
  next(): Promise<Uint8Array | null>;
  /** As next(), into `dest` from its start: how many bytes (≥ 1), or null at the end. */
  nextInto?(dest: Uint8Array): Promise<number | null>;
  cancel(): void;
}

/** Opens the stream from a byte offset; resolves once the reply headers arrived. */
export type StreamOpener = (offset: number, signal: AbortSignal) => Promise<StreamReply>;

/** Reconnects after this many consecutive drops without a byte in between, then fails. */
export const MAX_STREAM_RECONNECTS = 8;

/**
 * Reads a byte stream from the server, resuming from the offset reached after
 * a dropped connection. A clean end of the reply body is the end of the
 * stream (the server ends it only after the process exited and every byte was
 * sent); an error while reading the body is a drop.
 */
export class ResumableByteSource implements ByteSource {
  #offset = 0;
  #reply: StreamReply | undefined;
  #skip = 0;
  #drops = 0;
  #done = false;
  readonly #cancel = new AbortController();
  readonly #open: StreamOpener;
  readonly #signal: AbortSignal;
  readonly #label: string;

  readonly #onEnd: ((reply: StreamReply) => void) | undefined;

  /** `onEnd` sees the reply whose body ended cleanly (its trailers). */
  constructor(open: StreamOpener, opts: { signal?: AbortSignal; label: string; maxReconnects?: number; onEnd?: (reply: StreamReply) => void }) {
    this.#open = open;
    this.#onEnd = opts.onEnd;
    this.#signal = anySignal(this.#cancel.signal, opts.signal)!;
    this.#label = opts.label;
    this.#maxReconnects = opts.maxReconnects ?? MAX_STREAM_RECONNECTS;
  }

  readonly #maxReconnects: number;

  /** Bytes delivered so far. */
  get offset(): number {
    return this.#offset;
  }

  async next(): Promise<Uint8Array | null> {
    let chunk: Uint8Array | null = null;
    const n = await this.#pull(async (reply) => {
      chunk = await reply.read();
      return chunk === null ? null : chunk.length;
    }, (skip) => {
      chunk = chunk!.subarray(skip);
    });
    return n === null ? null : chunk;
  }

  nextInto(dest: Uint8Array): Promise<number | null> {
    return this.#pull((reply) => reply.readInto(dest), (skip, n) => {
      dest.copyWithin(0, skip, n);
    });
  }

  /**
   * One read through `read`, (re)opening the reply as needed. Bytes the
   * server sent again after a resume are dropped by `drop(skip, n)`.
   */
  async #pull(read: (reply: StreamReply) => Promise<number | null>, drop: (skip: number, n: number) => void): Promise<number | null> {
    for (;;) {
      if (this.#done) return null;
      if (this.#signal.aborted) throw this.#signal.reason;
      if (!this.#reply) {
        const res = await this.#open(this.#offset, this.#signal);
        // The server echoes where it starts; skip anything we already have.
        const echoed = Number(res.header(HEADER_STREAM_OFFSET) ?? this.#offset);
        if (Number.isFinite(echoed) && echoed > this.#offset) {
          res.cancel();
          throw new SbxError(`${this.#label}: the server resumed at byte ${echoed}, expected ${this.#offset}`, "internal");
        }
        this.#skip = Number.isFinite(echoed) ? this.#offset - echoed : 0;
        this.#reply = res;
      }
      let n: number;
      try {
        const got = await read(this.#reply);
        if (got === null) {
          this.#onEnd?.(this.#reply);
          this.#reply = undefined;
          this.#done = true;
          return null;
        }
        n = got;
      } catch (err) {
        this.#reply?.cancel();
        this.#reply = undefined;
        if (this.#signal.aborted) throw this.#signal.reason;
        if (this.#drops >= this.#maxReconnects) {
          throw new SbxError(
            `${this.#label}: the connection dropped ${this.#drops + 1} times in a row at byte ${this.#offset}; giving up`,
            "unavailable",
            { cause: err },
          );
        }
        await sleep(backoffMs(this.#drops++), this.#signal);
        continue;
      }
      if (this.#skip > 0) {
        const skip = Math.min(this.#skip, n);
        this.#skip -= skip;
        drop(skip, n);
        n -= skip;
      }
      if (n === 0) continue;
      this.#drops = 0;
      this.#offset += n;
      return n;
    }
  }

  cancel(): void {
    this.#done = true;
    this.#cancel.abort(new SbxError(`${this.#label}: cancelled`, "client_closed"));
    this.#reply?.cancel();
    this.#reply = undefined;
  }
}

/** The source of a stream with nothing in it (`stdout: "ignore"`). */
export const EMPTY_SOURCE: ByteSource = { next: async () => null, cancel: () => {} };

interface OutputState {
  started: boolean;
  /** readBytes() before any read switches the stream to raw bytes. */
  raw: boolean;
}

/**
 * A process's stdout or stderr: a ReadableStream of strings (text mode, UTF-8
 * decoded across chunk boundaries; invalid bytes become U+FFFD, never an
 * error) or of Uint8Array (binary mode), plus readText() and readBytes().
 * Nothing is fetched until the stream is read.
 *
 * A binary stream is a byte stream: `getReader({ mode: "byob" })` reads into
 * the reader's own buffer, straight from the connection's (plain HTTP; over
 * HTTPS the bytes take node's usual path). That is the way to read bulk
 * output: no buffer is allocated per read.
 */
export class SbxReadableStream<T extends string | Uint8Array = string> extends ReadableStream<T> {
  readonly #state: OutputState;
  readonly #mode: StreamMode;

  constructor(source: ByteSource, mode: StreamMode) {
    const state: OutputState = { started: false, raw: false };
    // Pull only when read: an unread stream costs no connection.
    const strategy = { highWaterMark: 0 };
    if (mode === "binary") {
      // A byte stream: a BYOB reader's buffer is filled straight from the socket.
      super(byteStreamSource(source, state) as unknown as UnderlyingSource<T>, strategy);
    } else {
      const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
      super(
        {
          pull: async (controller) => {
            state.started = true;
            for (;;) {
              const chunk = await source.next();
              if (chunk === null) {
                if (!state.raw) {
                  const tail = decoder.decode();
                  if (tail) controller.enqueue(tail as T);
                }
                controller.close();
                return;
              }
              if (state.raw) {
                controller.enqueue(chunk as T);
                return;
              }
              const text = decoder.decode(chunk, { stream: true });
              if (text) {
                controller.enqueue(text as T);
                return;
              }
              // Only part of a character so far: read on.
            }
          },
          cancel: () => source.cancel(),
        },
        strategy,
      );
    }
    this.#state = state;
    this.#mode = mode;
  }

  get mode(): StreamMode {
    return this.#mode;
  }

  /** Reads the rest of the stream as text (UTF-8, invalid bytes replaced). */
  async readText(): Promise<string> {
    const reader = this.getReader();
    const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
    let out = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        out += typeof value === "string" ? value : decoder.decode(value as Uint8Array, { stream: true });
      }
      return out + decoder.decode();
    } finally {
      reader.releaseLock();
    }
  }

  /**
   * Reads the rest of the stream as bytes. On a text stream not yet read the
   * bytes are exact; after text was read, the rest is re-encoded as UTF-8.
   */
  async readBytes(): Promise<Uint8Array> {
    if (!this.#state.started) this.#state.raw = true;
    const reader = this.getReader();
    const encoder = new TextEncoder();
    const parts: Uint8Array[] = [];
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(typeof value === "string" ? encoder.encode(value) : (value as Uint8Array));
      }
    } finally {
      reader.releaseLock();
    }
    return concat(parts);
  }
}

/**
 * The source of a binary stream. A BYOB read hands its view to the source
 * (straight from the socket when the source can); a default read gets a
 * chunk of its own. enqueue() transfers a chunk's ArrayBuffer, so a chunk
 * that is a window on a larger buffer is copied out first.
 */
function byteStreamSource(source: ByteSource, state: OutputState): UnderlyingByteSource {
  return {
    type: "bytes",
    pull: async (controller) => {
      state.started = true;
      const view = controller.byobRequest?.view;
      if (view && source.nextInto) {
        const n = await source.nextInto(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
        if (n === null) {
          controller.close();
          controller.byobRequest?.respond(0);
        } else {
          controller.byobRequest!.respond(n);
        }
        return;
      }
      const chunk = await source.next();
      if (chunk === null) {
        controller.close();
        controller.byobRequest?.respond(0);
        return;
      }
      controller.enqueue(chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength ? chunk : chunk.slice());
    },
    cancel: () => source.cancel(),
  };
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function outputStream<T extends string | Uint8Array>(
  http: HttpClient,
  execPath: string,
  name: StreamName,
  mode: StreamMode,
  piped: boolean,
  signal: AbortSignal | undefined,
  onExit?: (code: number) => void,
): SbxReadableStream<T> {
  if (!piped) return new SbxReadableStream<T>(EMPTY_SOURCE, mode);
  const source = new ResumableByteSource(
    (offset, sig) => http.stream({ method: "GET", path: `${execPath}/${name}`, query: { offset }, signal: sig }),
    {
      signal,
      label: `${execPath}/${name}`,
      onEnd: (reply) => {
        const code = reply.trailer(TRAILER_EXIT_CODE);
        if (onExit && code && /^\d{1,3}$/.test(code)) onExit(Number(code));
      },
    },
  );
  return new SbxReadableStream<T>(source, mode);
}

/** Stops re-sending when the server accepts nothing for this many rounds in a row. */
const MAX_STDIN_STALLS = 20;
/** The largest write buffer a StdinSender keeps for reuse. */
const MAX_SPARE_BYTES = 16 << 20;

/**
 * Sends stdin bytes in order, each write with the offset of its first byte.
 * The server replies with the total it accepted; what it did not accept is
 * sent again. Writes are serialized; after a failure every later write fails.
 */
export class StdinSender {
  readonly #http: HttpClient;
  readonly #path: string;
  readonly #signal: AbortSignal | undefined;
  #offset: number | undefined;
  #chain: Promise<void> = Promise.resolve();
  #failed: unknown;
  #closed = false;

  /** `startOffset` undefined: ask the server where stdin stands before the first write. */
  constructor(http: HttpClient, execPath: string, signal: AbortSignal | undefined, startOffset: number | undefined) {
    this.#http = http;
    this.#path = `${execPath}/stdin`;
    this.#signal = signal;
    this.#offset = startOffset;
  }

  /**
   * The buffer of the last write that went through, kept for the next
   * write's copy: a fresh buffer of MiBs faults in every page, which on a
   * VM cost the client more than the copy and the upload together.
   */
  #spare: ArrayBuffer | undefined;

  write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new ConflictError("stdin is closed"));
    // A copy: the caller may reuse its buffer as soon as this returns.
    const copy = this.#copyOf(bytes);
    return this.#enqueue(async () => {
      await this.#send(copy);
      if (copy.buffer.byteLength <= MAX_SPARE_BYTES && copy.buffer.byteLength > (this.#spare?.byteLength ?? 0)) this.#spare = copy.buffer as ArrayBuffer;
    });
  }

  #copyOf(bytes: Uint8Array): Uint8Array {
    const spare = this.#spare;
    if (!spare || spare.byteLength < bytes.length) return bytes.slice();
    this.#spare = undefined;
    const copy = new Uint8Array(spare, 0, bytes.length);
    copy.set(bytes);
    return copy;
  }

  close(): Promise<void> {
    if (this.#closed) return this.#chain;
    this.#closed = true;
    return this.#enqueue(async () => {
      await this.#http.json<StdinAck>({ method: "POST", path: `${this.#path}/close`, idempotent: true, signal: this.#signal });
    });
  }

  #enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.#chain.then(async () => {
      if (this.#failed !== undefined) throw this.#failed;
      try {
        await op();
      } catch (err) {
        this.#failed = err;
        throw err;
      }
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  async #post(offset: number, bytes: Uint8Array): Promise<number> {
    const ack = await this.#http.json<StdinAck>({
      method: "POST",
      path: this.#path,
      query: { offset },
      body: bytes,
      idempotent: true,
      signal: this.#signal,
    });
    return ack.offset;
  }

  async #send(bytes: Uint8Array): Promise<void> {
    if (this.#offset === undefined) this.#offset = await this.#post(0, new Uint8Array(0));
    let rest = bytes;
    let stalls = 0;
    while (rest.length > 0) {
      const piece = rest.subarray(0, LIMITS.maxStdinChunkBytes);
      const base: number = this.#offset;
      const acked = await this.#post(base, piece);
      if (acked < base) {
        throw new ConflictError(`stdin: the server acknowledged ${acked} bytes, fewer than the ${base} it had accepted before`);
      }
      const consumed = Math.min(acked - base, rest.length);
      if (consumed === 0) {
        if (++stalls > MAX_STDIN_STALLS) {
          throw new SbxError(`stdin: the process accepted no input for ${MAX_STDIN_STALLS} attempts at byte ${base}`, "resource_exhausted");
        }
        await sleep(backoffMs(Math.min(stalls, 5)), this.#signal);
        continue;
      }
      stalls = 0;
      this.#offset = base + consumed;
      rest = rest.subarray(consumed);
    }
  }
}

/**
 * A process's stdin: a WritableStream of strings or bytes, plus writeText(),
 * writeBytes() and close() (EOF after every byte written before it).
 */
export class SbxWritableStream extends WritableStream<string | Uint8Array> {
  readonly #sender: StdinSender;

  constructor(sender: StdinSender) {
    const encoder = new TextEncoder();
    super({
      write: (chunk) => sender.write(typeof chunk === "string" ? encoder.encode(chunk) : chunk),
      close: () => sender.close(),
    });
    this.#sender = sender;
  }

  /** Writes UTF-8 text; resolves once the server accepted it. */
  writeText(text: string): Promise<void> {
    return this.#sender.write(new TextEncoder().encode(text));
  }

  /** Writes bytes; resolves once the server accepted them. */
  writeBytes(bytes: Uint8Array): Promise<void> {
    return this.#sender.write(bytes);
  }

  /** Closes stdin: the process reads EOF after the bytes written before. */
  override close(): Promise<void> {
    return this.locked ? this.#sender.close() : super.close();
  }
}

// ---- server-sent events ------------------------------------------------------

/** One server-sent event: its `event:` type (default "message"), `data:` lines joined by "\n", and `id:`. */
export interface SseMessage {
  event: string;
  data: string;
  id: string | undefined;
}

/**
 * An incremental text/event-stream parser (the WHATWG rules: lines end in
 * \n, \r\n or \r; a blank line dispatches; ":" starts a comment; one space
 * after the colon is dropped). Feed it decoded text in any pieces.
 */
export class SseParser {
  #buffer = "";
  #event = "";
  #data: string[] = [];
  #id: string | undefined;
  /** A \r ended the last piece: a \n starting the next belongs to it. */
  #pendingCr = false;

  push(text: string): SseMessage[] {
    if (this.#pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.#pendingCr = false;
    this.#buffer += text;
    const out: SseMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.#buffer);
      if (!m) break;
      if (m[0] === "\r" && m.index === this.#buffer.length - 1) {
        // Could be the first half of \r\n: take the line, remember the \r.
        this.#pendingCr = true;
      }
      const line = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      const msg = this.#line(line);
      if (msg) out.push(msg);
    }
    return out;
  }

  #line(line: string): SseMessage | undefined {
    if (line === "") {
      if (this.#data.length === 0) {
        this.#event = "";
        return undefined;
      }
      const msg: SseMessage = { event: this.#event || "message", data: this.#data.join("\n"), id: this.#id };
      this.#event = "";
      this.#data = [];
      return msg;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#event = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    return undefined;
  }
}

/** Yields the messages of an event-stream body until it ends (an unterminated last event is dropped). */
export async function* sseMessages(body: StreamReply): AsyncGenerator<SseMessage, void, undefined> {
  const decoder = new TextDecoder("utf-8", { fatal: false });
  const parser = new SseParser();
  try {
    for (;;) {
      const value = await body.read();
      // An event not ended by a blank line when the body ends is incomplete: dropped.
      if (value === null) return;
      yield* parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    body.cancel();
  }
}
