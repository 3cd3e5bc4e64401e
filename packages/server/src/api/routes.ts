// The route table: every endpoint once, with its schemas. Fastify validates
// requests with these schemas and openapi.ts documents them from the same
// table, so the two cannot drift.
import { Readable } from "node:stream";
import { Type, type TSchema } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import {
  App,
  AppLookupRequest,
  WarmPoolRequest,

  Exec,
  ExecRequest,
  HEADER_STREAM_OFFSET,
  TRAILER_EXIT_CODE,
  Health,
  LIMITS,
  Sandbox,
  SandboxCreateRequest,
  SandboxEventList,
  SandboxList,
  StdinAck,
  ReadyQuery,
  SecretCreateRequest,
  SecretInfo,
  SecretList,
  SetTagsRequest,
  Volume,
  VolumeList,
  VolumeLookupRequest,
  SandboxEvent,
  TokenCreateRequest,
  TokenCreated,
  WorkspaceCreateRequest,
  WorkspaceCreated,
  WorkspaceList,
  StreamQuery,
  WaitQuery,
  type StreamName,
} from "sbx/wire";
import type { AppService, SandboxService, SecretService, VolumeService, WorkspaceService } from "../core/index.js";
import { InvalidArgumentError } from "../core/index.js";
import { scopeOf } from "./scope.js";
import { abortOnClose } from "./request-signal.js";
import { ChunkBuffers, sendStream } from "./stream-reply.js";
import {
  presentApp,
  presentEvent,
  presentExec,
  presentSandbox,
  presentSecret,
  presentVolume,
  presentWorkspace,
} from "./present.js";
import type { BuildService } from "../core/index.js";
import { IMAGE_ROUTES } from "./image-routes.js";

export interface Services {
  apps: AppService;
  sandboxes: SandboxService;
  secrets: SecretService;
  volumes: VolumeService;
  workspaces: WorkspaceService;
  /** Image builds, pulls and the image store (api/image-routes.ts). */
  builds: BuildService;
  version: string;
}

export interface RouteDef {
  method: "GET" | "POST" | "PUT" | "DELETE";
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
    /** Server-sent events instead of JSON. */
    eventStream?: boolean;
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
const NameParams = Type.Object({ name: Type.String({ maxLength: 256 }) });
const Empty = Type.Object({});

/** Server-sent events from an async iterable; the stream ends when it does. */
function sendEvents<T>(reply: FastifyReply, events: AsyncIterable<T>, type: (e: T) => string): FastifyReply {
  async function* frames(): AsyncGenerator<string> {
    for await (const e of events) yield `event: ${type(e)}\ndata: ${JSON.stringify(e)}\n\n`;
  }
  void reply.header("content-type", "text/event-stream").header("cache-control", "no-store");
  return reply.send(Readable.from(frames()));
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
      const scope = scopeOf(req);
      const signal = abortOnClose(reply);
      const buffers = new ChunkBuffers();
      const chunks = s.sandboxes.follow(scope, sandboxId, execId, stream, offset, signal, buffers);
      await sendStream(reply, chunks, {
        headers: { "content-type": "application/octet-stream", "cache-control": "no-store", [HEADER_STREAM_OFFSET]: String(offset) },
        // Always a string: the stream ends once the process has, so this is its code ("" if it is not known).
        trailer: { name: TRAILER_EXIT_CODE, value: async () => String((await s.sandboxes.exitCodeOf(scope, sandboxId, execId).catch(() => null)) ?? "") },
        buffers,
        signal,
      });
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
      return presentApp(s.apps.lookup(scopeOf(req), body.name, body.createIfMissing ?? false));
    },
  },
  {
    method: "PUT",
    url: "/v1/apps/:appId/warm-pool",
    summary: "Sets how many sandboxes of each shape the app keeps started and idle (null: the server's --warm-pool).",
    auth: true,
    schema: { params: Type.Object({ appId: Type.String({ maxLength: 64 }) }), body: WarmPoolRequest, response: App },
    handler: async (s, req) =>
      presentApp(s.apps.setWarmPoolSize(scopeOf(req), (req.params as { appId: string }).appId, (req.body as WarmPoolRequest).size)),
  },
  {
    method: "POST",
    url: "/v1/sandboxes",
    summary: "Creates a sandbox and returns it once Started (or Finished with reason failed).",
    auth: true,
    schema: { body: SandboxCreateRequest, response: Sandbox, status: 201 },
    handler: async (s, req, reply) => {
      const sb = await s.sandboxes.create(scopeOf(req), req.body as SandboxCreateRequest, abortOnClose(reply));
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
      const page = s.sandboxes.listRunning(scopeOf(req), {
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
    handler: async (s, req) => presentSandbox(s.sandboxes.get(scopeOf(req), (req.params as P).sandboxId)),
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/wait",
    summary: "Waits until the sandbox has finished or timeoutMs (≤ 50 000) passed; returncode is null if it still runs.",
    auth: true,
    schema: { params: SandboxParams, querystring: WaitQuery, response: Sandbox },
    handler: async (s, req, reply) => {
      const q = req.query as WaitQuery;
      const sb = await s.sandboxes.waitFinished(scopeOf(req), (req.params as P).sandboxId, q.timeoutMs ?? LIMITS.maxWaitMs, abortOnClose(reply));
      return presentSandbox(sb);
    },
  },
  {
    method: "POST",
    url: "/v1/sandboxes/:sandboxId/terminate",
    summary: "Kills the sandbox (SIGKILL, returncode 137). Idempotent.",
    auth: true,
    schema: { params: SandboxParams, response: Sandbox },
    handler: async (s, req) => presentSandbox(await s.sandboxes.terminate(scopeOf(req), (req.params as P).sandboxId)),
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/events",
    summary: "The sandbox's lifecycle events, oldest first.",
    auth: true,
    schema: { params: SandboxParams, response: SandboxEventList },
    handler: async (s, req) => ({ events: s.sandboxes.events(scopeOf(req), (req.params as P).sandboxId).map(presentEvent) }),
  },
  {
    method: "PUT",
    url: "/v1/sandboxes/:sandboxId/tags",
    summary: "Replaces the sandbox's tags as a whole.",
    auth: true,
    schema: { params: SandboxParams, body: SetTagsRequest, response: Sandbox },
    handler: async (s, req) =>
      presentSandbox(s.sandboxes.setTags(scopeOf(req), (req.params as P).sandboxId, (req.body as SetTagsRequest).tags)),
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/ready",
    summary: "Waits until the readiness probe succeeded or timeoutMs (≤ 50 000) passed (ready stays false). 409 without a probe or once finished unready.",
    auth: true,
    schema: { params: SandboxParams, querystring: ReadyQuery, response: Sandbox },
    handler: async (s, req, reply) => {
      const q = req.query as { timeoutMs?: number };
      const sb = await s.sandboxes.waitReady(scopeOf(req), (req.params as P).sandboxId, q.timeoutMs ?? LIMITS.maxWaitMs, abortOnClose(reply));
      return presentSandbox(sb);
    },
  },
  {
    method: "GET",
    url: "/v1/sandboxes/:sandboxId/events/stream",
    summary: "Server-sent events: every stored lifecycle event, then new ones as they happen; ends after Finished.",
    auth: true,
    schema: { params: SandboxParams, eventStream: true, response: SandboxEvent },
    handler: async (s, req, reply) => {
      const { sandboxId } = req.params as P;
      const events = s.sandboxes.followEvents(scopeOf(req), sandboxId, abortOnClose(reply));
      s.sandboxes.get(scopeOf(req), sandboxId); // 404 before the stream starts
      async function* present() {
        for await (const e of events) yield presentEvent(e);
      }
      return sendEvents(reply, present(), (e) => e.type);
    },
  },
  {
    method: "GET",
    url: "/v1/sandboxes/by-name/:appName/:name",
    summary: "The running sandbox with that name in the app of that name.",
    auth: true,
    schema: {
      params: Type.Object({ appName: Type.String({ maxLength: 256 }), name: Type.String({ maxLength: 256 }) }),
      response: Sandbox,
    },
    handler: async (s, req) => {
      const { appName, name } = req.params as { appName: string; name: string };
      return presentSandbox(s.sandboxes.getByName(scopeOf(req), appName, name));
    },
  },
  {
    method: "POST",
    url: "/v1/secrets",
    summary: "Stores a named secret (encrypted at rest). 409 if it exists, unless overwrite.",
    auth: true,
    schema: { body: SecretCreateRequest, response: SecretInfo, status: 201 },
    handler: async (s, req, reply) => {
      const b = req.body as SecretCreateRequest;
      const info = s.secrets.create(scopeOf(req), b.name, b.env, b.overwrite ?? false);
      void reply.status(201);
      return presentSecret(info);
    },
  },
  {
    method: "GET",
    url: "/v1/secrets",
    summary: "Secret names and keys; never values.",
    auth: true,
    schema: { response: SecretList },
    handler: async (s, req) => ({ secrets: s.secrets.list(scopeOf(req)).map(presentSecret) }),
  },
  {
    method: "GET",
    url: "/v1/secrets/:name",
    summary: "One secret's name and keys.",
    auth: true,
    schema: { params: NameParams, response: SecretInfo },
    handler: async (s, req) => presentSecret(s.secrets.get(scopeOf(req), (req.params as { name: string }).name)),
  },
  {
    method: "DELETE",
    url: "/v1/secrets/:name",
    summary: "Deletes a secret. Running sandboxes keep the values they were given.",
    auth: true,
    schema: { params: NameParams, response: Empty },
    handler: async (s, req) => {
      s.secrets.delete(scopeOf(req), (req.params as { name: string }).name);
      return {};
    },
  },
  {
    method: "POST",
    url: "/v1/workspaces",
    summary: "Admin: creates a workspace and its first token (shown once).",
    auth: true,
    schema: { body: WorkspaceCreateRequest, response: WorkspaceCreated, status: 201 },
    handler: async (s, req, reply) => {
      const { workspace, token } = s.workspaces.create(scopeOf(req), (req.body as WorkspaceCreateRequest).name);
      void reply.status(201);
      return { workspace: presentWorkspace(workspace), token };
    },
  },
  {
    method: "GET",
    url: "/v1/workspaces",
    summary: "Admin: all workspaces.",
    auth: true,
    schema: { response: WorkspaceList },
    handler: async (s, req) => ({ workspaces: s.workspaces.list(scopeOf(req)).map(presentWorkspace) }),
  },
  {
    method: "POST",
    url: "/v1/workspaces/:name/tokens",
    summary: "Admin: another token for a workspace (shown once).",
    auth: true,
    schema: { params: NameParams, body: TokenCreateRequest, response: TokenCreated, status: 201 },
    handler: async (s, req, reply) => {
      const token = s.workspaces.createToken(scopeOf(req), (req.params as { name: string }).name, (req.body as TokenCreateRequest).name);
      void reply.status(201);
      return { token };
    },
  },
  {
    method: "POST",
    url: "/v1/volumes/lookup",
    summary: "Finds a volume by name, creating it when createIfMissing is set.",
    auth: true,
    schema: { body: VolumeLookupRequest, response: Volume },
    handler: async (s, req) => {
      const b = req.body as VolumeLookupRequest;
      return presentVolume(await s.volumes.lookup(scopeOf(req), b.name, b.createIfMissing ?? false));
    },
  },
  {
    method: "POST",
    url: "/v1/volumes/ephemeral",
    summary: "Creates an ephemeral volume: deleted once the last sandbox mounting it has finished.",
    auth: true,
    schema: { response: Volume, status: 201 },
    handler: async (s, req, reply) => {
      const v = await s.volumes.createEphemeral(scopeOf(req));
      void reply.status(201);
      return presentVolume(v);
    },
  },
  {
    method: "GET",
    url: "/v1/volumes",
    summary: "All volumes.",
    auth: true,
    schema: { response: VolumeList },
    handler: async (s, req) => ({ volumes: s.volumes.list(scopeOf(req)).map(presentVolume) }),
  },
  {
    method: "DELETE",
    url: "/v1/volumes/by-name/:name",
    summary: "Deletes a named volume and its data. 409 while a running sandbox mounts it.",
    auth: true,
    schema: { params: NameParams, response: Empty },
    handler: async (s, req) => {
      await s.volumes.deleteByName(scopeOf(req), (req.params as { name: string }).name);
      return {};
    },
  },
  {
    method: "DELETE",
    url: "/v1/volumes/:volumeId",
    summary: "Deletes a volume by id. 409 while a running sandbox mounts it.",
    auth: true,
    schema: { params: Type.Object({ volumeId: Type.String({ maxLength: 64 }) }), response: Empty },
    handler: async (s, req) => {
      await s.volumes.delete(scopeOf(req), (req.params as { volumeId: string }).volumeId);
      return {};
    },
  },
  {
    method: "POST",
    url: "/v1/sandboxes/:sandboxId/execs",
    summary: "Starts a process in a running sandbox.",
    auth: true,
    schema: { params: SandboxParams, body: ExecRequest, response: Exec, status: 201 },
    handler: async (s, req, reply) => {
      const ex = await s.sandboxes.exec(scopeOf(req), (req.params as P).sandboxId, req.body as ExecRequest);
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
      return presentExec(s.sandboxes.getExec(scopeOf(req), sandboxId, execId));
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
      return presentExec(await s.sandboxes.waitExec(scopeOf(req), sandboxId, execId, q.timeoutMs ?? LIMITS.maxWaitMs, abortOnClose(reply)));
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
      return { offset: await s.sandboxes.writeStdin(scopeOf(req), sandboxId, execId, offset, body) };
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
      await s.sandboxes.closeStdin(scopeOf(req), sandboxId, execId);
      return {};
    },
  },
  ...IMAGE_ROUTES,
];
