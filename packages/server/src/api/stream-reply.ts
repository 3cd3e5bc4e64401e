// A process's output sent as a chunked reply written straight to the socket.
// Fastify's send(stream) would pipe the chunks, and a pipe cannot tell when
// the socket has taken a chunk's bytes. Writing here can: each chunk's buffer
// goes back to the reader for its next read, so a GiB of output is read into
// the same two MiB instead of a fresh MiB per read (see buffer-pool.ts).
import { once } from "node:events";
import type { ServerResponse } from "node:http";
import type { FastifyReply } from "fastify";
import type { ReadBuffers } from "../core/index.js";
import { BufferPool } from "./buffer-pool.js";

/** How long a reply's headers wait for its first bytes before they are sent alone. */
const HEADERS_ALONE_AFTER_MS = 20;

/** The read buffers of one stream: lent to its reader, given back by its writer. */
export class ChunkBuffers implements ReadBuffers {
  /** Made at the first lend: the reader picks the size. */
  #pool: BufferPool | undefined;
  readonly #lent = new Map<ArrayBufferLike, Buffer>();
  readonly #keep: number;

  /** `keep`: how many given-back buffers are held for reuse; more are left to the GC. */
  constructor(keep = 2) {
    this.#keep = keep;
  }

  lend(size: number): Uint8Array {
    this.#pool ??= new BufferPool(size, this.#keep);
    if (size !== this.#pool.size) return Buffer.allocUnsafe(size);
    const buf = this.#pool.take();
    this.#lent.set(buf.buffer, buf);
    return buf;
  }

  /** The consumer is done with `chunk`: if it is a view of a lent buffer, that buffer may be read into again. */
  giveBack(chunk: Uint8Array): void {
    const buf = this.#lent.get(chunk.buffer);
    if (buf === undefined) return;
    this.#lent.delete(chunk.buffer);
    this.#pool?.give(buf);
  }

  /** Buffers lent and not given back (for tests). */
  get lentCount(): number {
    return this.#lent.size;
  }
}

export interface StreamReplyOptions {
  headers: Record<string, string>;
  /** One trailer, its value computed after the last chunk was written. */
  trailer?: { name: string; value: () => Promise<string> };
  /** Where the chunks' buffers go back to, if they were lent. */
  buffers?: ChunkBuffers;
  /** Aborted when the client goes away (abortOnClose). */
  signal: AbortSignal;
}

/**
 * Writes `chunks` as a 200 chunked reply, then the trailer if there is one.
 * The reply is hijacked from Fastify, so this must be called only after
 * every check that can answer with an error. A failure after the headers
 * (the client leaving, a read error) cuts the connection: the SDK resumes
 * from the offset it got to.
 */
export async function sendStream(reply: FastifyReply, chunks: AsyncGenerator<Uint8Array>, opts: StreamReplyOptions): Promise<void> {
  reply.hijack();
  const res = reply.raw;
  try {
    if (reply.request.method === "HEAD") {
      await chunks.return(undefined);
      res.writeHead(200, opts.headers).end();
      return;
    }
    // Trailers need chunked encoding, which an HTTP/1.0 client does not get.
    const trailer = res.useChunkedEncodingByDefault ? opts.trailer : undefined;
    res.writeHead(200, trailer ? { ...opts.headers, trailer: trailer.name } : opts.headers);
    // node sends the headers with the first bytes. A process may print
    // nothing for minutes, and a client bounds its wait for the headers (the
    // SDK's connectTimeoutMs): they go alone if no bytes come soon.
    const early = setTimeout(() => res.flushHeaders(), HEADERS_ALONE_AFTER_MS);
    try {
      await writeChunks(res, chunks, opts, () => clearTimeout(early));
    } finally {
      clearTimeout(early);
    }
    if (trailer) res.addTrailers({ [trailer.name]: await trailer.value() });
    res.end();
  } catch {
    res.destroy();
  }
}

async function writeChunks(res: ServerResponse, chunks: AsyncGenerator<Uint8Array>, opts: StreamReplyOptions, onWrite: () => void): Promise<void> {
  for await (const chunk of chunks) {
    onWrite();
    // The callback runs once the socket has the bytes (or failed to take them).
    const more = res.write(chunk, () => opts.buffers?.giveBack(chunk));
    if (!more) await once(res, "drain", { signal: opts.signal });
  }
  if (opts.signal.aborted) throw opts.signal.reason; // the reader stopped because the client left
}
