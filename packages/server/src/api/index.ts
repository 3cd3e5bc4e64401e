// api/: HTTP only. Routes (routes.ts), bearer-token auth, the OpenAPI
// document and the one error translation. No domain logic: every handler is
// a call into core.
import Fastify, { type FastifyInstance } from "fastify";
import { LIMITS } from "sbx/wire";
import type { TokenService } from "../core/index.js";
import { errorBody, handleError } from "./errors.js";
import { buildOpenApi } from "./openapi.js";
import { ROUTES, type Services } from "./routes.js";

export { buildOpenApi } from "./openapi.js";
export type { Services } from "./routes.js";

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

  app.addContentTypeParser(
    "application/octet-stream",
    { parseAs: "buffer", bodyLimit: LIMITS.maxStdinChunkBytes },
    (_req, body, done) => done(null, body),
  );

  app.addHook("onRequest", async (req, reply) => {
    const route = req.routeOptions.config as { auth?: boolean } | undefined;
    if (route?.auth === false) return;
    const header = req.headers.authorization ?? "";
    const m = /^Bearer (\S+)$/.exec(header);
    if (!m || !opts.tokens.verify(m[1]!)) {
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
  app.get("/v1/openapi.json", { config: { auth: true } }, async () => openapi);

  for (const route of ROUTES) {
    app.route({
      method: route.method,
      url: route.url,
      config: { auth: route.auth },
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
