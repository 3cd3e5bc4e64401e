// A signal that aborts when the client of a request goes away, so long polls
// and streams stop working for nobody.
import type { FastifyReply } from "fastify";

/** Ends the response's generator when the client goes away. */
export function abortOnClose(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  // A reply that was sent in full also closes; aborting then would only cost
  // an AbortError and its listeners on every long poll and stream.
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac.signal;
}
