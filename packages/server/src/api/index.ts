// api/: HTTP only. Routes (routes.ts), bearer-token auth, the OpenAPI
// document and the one error translation. No domain logic: every handler is
// a call into core.
import Fastify, { type FastifyInstance } from "fastify";
import { LIMITS } from "sbx/wire";
import type { TokenService } from "../core/index.js";
import { parseOctetStreamBodies } from "./body-buffers.js";
import { errorBody, handleError } from "./errors.js";
import { buildOpenApi } from "./openapi.js";
import { ROUTES, type Services } from "./routes.js";
import { setScope } from "./scope.js";

export { buildOpenApi } from "./openapi.js";
export type { Services } from "./routes.js";

/** The only routes answered without a token. Tests hold every other route to 401. */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(["GET /healthz"]);

const routeLists = new WeakMap<FastifyInstance, { method: string; url: string }[]>();

/** Every route the router holds (HEAD routes fastify adds included), as registered. */
export function registeredRoutes(app: FastifyInstance): { method: string; url: string }[] {
  return [...(routeLists.get(app) ?? [])];
}

export interface ApiOptions {
  services: Services;
  tokens: TokenService;
  logger?: boolean;
}

export function buildApi(opts: ApiOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: 1024 * 1024,
    // Reject unknown fields instead of silently dropping them.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: false } },
    return503OnClosing: true,
  });

  const routes: { method: string; url: string }[] = [];
  routeLists.set(app, routes);
  app.addHook("onRoute", (r) => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) routes.push({ method, url: r.url });
  });

  parseOctetStreamBodies(app, LIMITS.maxStdinChunkBytes);

  app.addHook("onRequest", async (req, reply) => {
    if (PUBLIC_ROUTES.has(`${req.method} ${req.routeOptions.url ?? ""}`)) return;
    const header = req.headers.authorization ?? "";
    const m = /^Bearer (\S+)$/.exec(header);
    const scope = m ? opts.tokens.verify(m[1]!) : null;
    if (scope) setScope(req, scope);
    else {
      return reply
        .status(401)
        .send(errorBody("unauthenticated", "missing or invalid API token: send Authorization: Bearer <token> (the admin token is in <data-dir>/admin-token)"));
    }
  });

  app.setErrorHandler(handleError);
  app.setNotFoundHandler((req, reply) => {
    void reply.status(404).send(errorBody("not_found", `no route ${req.method} ${req.url.split("?")[0]}`));
  });

  const openapi = buildOpenApi(opts.services.version);
  app.get("/v1/openapi.json", async () => openapi);

  for (const route of ROUTES) {
    app.route({
      method: route.method,
      url: route.url,
      schema: {
        ...(route.schema.params ? { params: route.schema.params } : {}),
        ...(route.schema.querystring ? { querystring: route.schema.querystring } : {}),
        ...(route.schema.body ? { body: route.schema.body } : {}),
      },
      handler: (req, reply) => route.handler(opts.services, req, reply),
    });
  }
  return app;
}
