// Big buffers kept for reuse. On this project's machine (a nested VM) a
// fresh MiB costs 256 page faults when first written, which made fresh
// buffers most of the server's CPU for stdin and stdout: a GiB through
// either went through 256-1024 of them.

/** Buffers of one size, at most `keep` of them held while unused. */
export class BufferPool {
  readonly #idle: Buffer[] = [];

  constructor(
    readonly size: number,
    readonly keep: number,
  ) {}

  /** A buffer of `size` bytes with its own ArrayBuffer (not a slice of node's shared pool). */
  take(): Buffer {
    return this.#idle.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Hands back a buffer nothing refers to any more; one of another size, or past `keep`, is left to the GC. */
  give(buf: Buffer): void {
    if (buf.length === this.size && this.#idle.length < this.keep) this.#idle.push(buf);
  }
}
