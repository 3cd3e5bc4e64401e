// /v1/openapi.json, generated from the route table and wire.ts's schemas.
import { ERROR_STATUS, SCHEMAS } from "sbx/wire";
import { ROUTES, type RouteDef } from "./routes.js";

type Json = Record<string, unknown>;

/** TypeBox schemas carry symbol keys; a JSON round trip leaves plain JSON Schema. */
const plain = (schema: unknown): Json => JSON.parse(JSON.stringify(schema)) as Json;

function parameters(route: RouteDef): Json[] {
  const out: Json[] = [];
  for (const [where, schema] of [["path", route.schema.params], ["query", route.schema.querystring]] as const) {
    const props = (schema as { properties?: Record<string, unknown>; required?: string[] } | undefined);
    for (const [name, s] of Object.entries(props?.properties ?? {})) {
      out.push({ name, in: where, required: where === "path" || (props?.required ?? []).includes(name), schema: plain(s) });
    }
  }
  return out;
}

export function buildOpenApi(version: string): Json {
  const paths: Record<string, Record<string, Json>> = {};
  const errorStatuses = [...new Set(Object.values(ERROR_STATUS))].sort();
  for (const route of ROUTES) {
    const path = route.url.replace(/:([A-Za-z]+)/g, "{$1}");
    const ok = String(route.schema.status ?? 200);
    const responses: Json = {
      [ok]: {
        description: "OK",
        content: route.schema.rawResponse
          ? { "application/octet-stream": { schema: { type: "string", format: "binary" } } }
          : route.schema.eventStream
            ? { "text/event-stream": { schema: { type: "string", "x-event-data": plain(route.schema.response) } } }
            : { "application/json": { schema: plain(route.schema.response) } },
      },
    };
    for (const status of errorStatuses) {
      responses[String(status)] = { $ref: "#/components/responses/Error" };
    }
    const op: Json = {
      summary: route.summary,
      parameters: parameters(route),
      responses,
      ...(route.auth ? {} : { security: [] }),
    };
    if (route.schema.body) op.requestBody = { required: true, content: { "application/json": { schema: plain(route.schema.body) } } };
    if (route.schema.rawBody) {
      op.requestBody = { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } };
    }
    (paths[path] ??= {})[route.method.toLowerCase()] = op;
  }
  return {
    openapi: "3.1.0",
    info: { title: "sbx", version, description: "Self-hosted sandboxes for untrusted code." },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      responses: {
        Error: { description: "Error", content: { "application/json": { schema: { $ref: "#/components/schemas/ErrorBody" } } } },
      },
      schemas: Object.fromEntries(Object.entries(SCHEMAS).map(([name, schema]) => [name, plain(schema)])),
    },
    security: [{ bearer: [] }],
    paths,
  };
}
