// Who the request is from: set by the auth hook from the bearer token, read
// by handlers to pass on to core. A request on a public route has none.
import type { FastifyRequest } from "fastify";
import type { Scope } from "../core/index.js";
import { UnauthenticatedError } from "../core/index.js";

const scopes = new WeakMap<FastifyRequest, Scope>();

export function setScope(req: FastifyRequest, scope: Scope): void {
  scopes.set(req, scope);
}

export function scopeOf(req: FastifyRequest): Scope {
  const scope = scopes.get(req);
  if (!scope) throw new UnauthenticatedError("this request carries no API token");
  return scope;
}
