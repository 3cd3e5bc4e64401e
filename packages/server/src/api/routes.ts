// The route table: every endpoint once, with its schemas. Fastify validates
// requests with these schemas and openapi.ts documents them from the same
// table, so the two cannot drift.
import { Readable } from "node:stream";
import { Type, type TSchema } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  App,
  AppLookupRequest,

  Exec,
  ExecRequest,
  HEADER_STREAM_OFFSET,
  Health,
  LIMITS,
  Sandbox,
  SandboxCreateRequest,
  SandboxEventList,
  SandboxList,
  StdinAck,
  StreamQuery,
  WaitQuery,
  type StreamName,
} from "sbx/wire";
import type { AppService, SandboxService } from "../core/index.js";
import { InvalidArgumentError } from "../core/index.js";
import { presentApp, presentEvent, presentExec, presentSandbox } from "./present.js";

export interface Services {
  apps: AppService;
  sandboxes: SandboxService;
  version: string;
}

export interface RouteDef {
  method: "GET" | "POST";
  url: string;
  summary: string;
  auth: boolean;
  schema: {
    params?: TSchema;
    querystring?: TSchema;
    body?: TSchema;
    /** Raw bytes in (stdin) or out (streams): documented, not JSON. */
    rawBody?: boolean;
    rawResponse?: boolean;
    response: TSchema;
    status?: number;
  };
  handler: (s: Services, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

const SandboxParams = Type.Object({ sandboxId: Type.String({ maxLength: 64 }) });
const ExecParams = Type.Object({ sandboxId: Type.String({ maxLength: 64 }), execId: Type.String({ maxLength: 64 }) });
const ListQuery = Type.Object(
  {
    appId: Type.Optional(Type.String({ maxLength: 64 })),
    tag: Type.Optional(Type.Array(Type.String({ maxLength: 2 * LIMITS.maxTagLength + 1 }), { maxItems: LIMITS.maxTags })),
    cursor: Type.Optional(Type.String({ maxLength: 64 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  },
  { additionalProperties: false },
);

type P = { sandboxId: string; execId: string };

/** Ends the response's generator when the client goes away. */
function abortOnClose(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.on("close", () => ac.abort());
  return ac.signal;
}

function streamRoute(stream: StreamName): RouteDef {
  return {
    method: "GET",
    url: `/v1/sandboxes/:sandboxId/execs/:execId/${stream}`,
    summary: `The process's ${stream} from a byte offset, held open until more bytes arrive; ends after the process has exited and every byte was sent.`,
    auth: true,
    schema: { params: ExecParams, querystring: StreamQuery, rawResponse: true, response: Type.String({ format: "binary" }) },
    handler: async (s, req, reply) => {
      const { sandboxId, execId } = req.params as P;
      const offset = (req.query as { offset?: number }).offset ?? 0;
      const chunks = s.sandboxes.follow(sandboxId, execId, stream, offset, abortOnClose(reply));
      void reply
        .header("content-type", "application/octet-stream")
        .header("cache-control", "no-store")
        .header(HEADER_STREAM_OFFSET, String(offset));
      return reply.send(Readable.from(chunks, { objectMode: false }));
    },
  };
}

export const ROUTES: RouteDef[] = [
  {
    method: "GET",
    url: "/healthz",
    summary: "Liveness; needs no token.",
    auth: false,
    schema: { response: Health },
    handler: async (s) => ({ ok: true, version: s.version }),
  },
  {
    method: "POST",
    url: "/v1/apps/lookup",
    summary: "Finds an app by name, creating it when createIfMissing is set.",
    auth: true,
    schema: { body: AppLookupRequest, response: App },
    handler: async (s, req) => {
      const body = req.body as AppLookupRequest;
      return presentApp(s.apps.lookup(body.name, body.createIfMissing ?? false));
    },
  },
  {
    method: "POST",
    url: "/v1/sandboxes",
    summary: "Creates a sandbox and returns it once Started (or Finished with reason failed).",
    auth: true,
    schema: { body: SandboxCreateRequest, response: Sandbox, status: 201 },
    handler: async (s, req, reply) => {
      const sb = await s.sandboxes.create(req.body as SandboxCreateRequest, abortOnClose(reply));
      void reply.status(201);
      return presentSandbox(sb);
    },
  },
  {
    method: "GET",
    url: "/v1/sandboxes",
    summary: "Lists running sandboxes, optionally of one app and having at least the given tags (tag=k=v, repeated).",
    auth: true,
    schema: { querystring: ListQuery, response: SandboxList },
    handler: async (s, req) => {
      const q = req.query as { appId?: string; tag?: string[]; cursor?: string; limit?: number };
      const tags: Record<string, string> = {};
      for (const t of q.tag ?? []) {
        const eq = t.indexOf("=");
        if (eq <= 0) throw new InvalidArgumentError(`tag "${t}" must be key=value`);
        tags[t.slice(0, eq)] = t.slice(eq + 1);
      }
      const limit = q.limit ?? 100;
      const page = s.sandboxes.listRunning({
        ...(q.appId !== undefined ? { appId: q.appId } : {}),
        ...(q.cursor !== undefined ? { afterId: q.cursor } : {}),
        tags,
        limit,
      });
      return {
        sandboxes: page.map(presentSandbox),
        nextCursor: page.length === limit ? page[page.length - 1]!.sandboxId : null,
      };
    },
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId",
    summary: "One sandbox.",
    auth: true,
    schema: { params: SandboxParams, response: Sandbox },
    handler: async (s, req) => presentSandbox(s.sandboxes.get((req.params as P).sandboxId)),
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/wait",
    summary: "Waits until the sandbox has finished or timeoutMs (≤ 50 000) passed; returncode is null if it still runs.",
    auth: true,
    schema: { params: SandboxParams, querystring: WaitQuery, response: Sandbox },
    handler: async (s, req, reply) => {
      const q = req.query as WaitQuery;
      const sb = await s.sandboxes.waitFinished((req.params as P).sandboxId, q.timeoutMs ?? LIMITS.maxWaitMs, abortOnClose(reply));
      return presentSandbox(sb);
    },
  },
  {
    method: "POST",
    url: "/v1/sandboxes/:sandboxId/terminate",
    summary: "Kills the sandbox (SIGKILL, returncode 137). Idempotent.",
    auth: true,
    schema: { params: SandboxParams, response: Sandbox },
    handler: async (s, req) => presentSandbox(await s.sandboxes.terminate((req.params as P).sandboxId)),
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/events",
    summary: "The sandbox's lifecycle events, oldest first.",
    auth: true,
    schema: { params: SandboxParams, response: SandboxEventList },
    handler: async (s, req) => ({ events: s.sandboxes.events((req.params as P).sandboxId).map(presentEvent) }),
  },
  {
    method: "POST",
    url: "/v1/sandboxes/:sandboxId/execs",
    summary: "Starts a process in a running sandbox.",
    auth: true,
    schema: { params: SandboxParams, body: ExecRequest, response: Exec, status: 201 },
    handler: async (s, req, reply) => {
      const ex = await s.sandboxes.exec((req.params as P).sandboxId, req.body as ExecRequest);
      void reply.status(201);
      return presentExec(ex);
    },
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/execs/:execId",
    summary: "One process.",
    auth: true,
    schema: { params: ExecParams, response: Exec },
    handler: async (s, req) => {
      const { sandboxId, execId } = req.params as P;
      return presentExec(s.sandboxes.getExec(sandboxId, execId));
    },
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/execs/:execId/wait",
    summary: "Waits until the process has exited or timeoutMs passed; returncode is null if it still runs.",
    auth: true,
    schema: { params: ExecParams, querystring: WaitQuery, response: Exec },
    handler: async (s, req, reply) => {
      const { sandboxId, execId } = req.params as P;
      const q = req.query as WaitQuery;
      return presentExec(await s.sandboxes.waitExec(sandboxId, execId, q.timeoutMs ?? LIMITS.maxWaitMs, abortOnClose(reply)));
    },
  },
  streamRoute("stdout"),
  streamRoute("stderr"),
  {
    method: "POST",
    url: "/v1/sandboxes/:sandboxId/execs/:execId/stdin",
    summary: "Appends bytes (application/octet-stream, ≤ 4 MiB) at ?offset to the process's stdin; bytes before the accepted total are skipped, so retries apply once.",
    auth: true,
    schema: {
      params: ExecParams,
      querystring: Type.Object({ offset: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
      rawBody: true,
      response: StdinAck,
    },
    handler: async (s, req) => {
      const { sandboxId, execId } = req.params as P;
      const { offset } = req.query as { offset: number };
      const body = req.body;
      if (!(body instanceof Buffer)) throw new InvalidArgumentError("stdin bytes must be sent as application/octet-stream");
      return { offset: await s.sandboxes.writeStdin(sandboxId, execId, offset, body) };
    },
  },
  {
    method: "POST",
    url: "/v1/sandboxes/:sandboxId/execs/:execId/stdin/close",
    summary: "Closes the process's stdin (EOF once buffered bytes are written). Idempotent.",
    auth: true,
    schema: { params: ExecParams, response: Type.Object({}) },
    handler: async (s, req) => {
      const { sandboxId, execId } = req.params as P;
      await s.sandboxes.closeStdin(sandboxId, execId);
      return {};
    },
  },
];

