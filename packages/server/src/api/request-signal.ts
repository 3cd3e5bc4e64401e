// A signal that aborts when the client of a request goes away, so long polls
// and streams stop working for nobody.
import type { FastifyReply } from "fastify";

/** Ends the response's generator when the client goes away. */
export function abortOnClose(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.on("close", () => ac.abort());
  return ac.signal;
}
