// The HTTP wire format of sbx: one schema source. The server validates
// request bodies with these schemas and builds /v1/openapi.json from them; the
// SDK takes its wire types from them. Changing a schema changes all three.
import { Type, type Static, type TSchema } from "@sinclair/typebox";

export const API_VERSION = "v1";

export { LIMITS, NAME_PATTERN, ENV_KEY_PATTERN, EnvMap, SecretRef } from "./wire-common.js";
import { LIMITS, NAME_PATTERN, EnvMap, SecretRef } from "./wire-common.js";

// ---- errors ----------------------------------------------------------------

export const ErrorCode = Type.Union([
  Type.Literal("invalid"),
  Type.Literal("unauthenticated"),
  Type.Literal("not_found"),
  Type.Literal("already_exists"),
  Type.Literal("conflict"),
  Type.Literal("timeout"),
  Type.Literal("resource_exhausted"),
  Type.Literal("unavailable"),
  Type.Literal("internal"),
]);
export type ErrorCode = Static<typeof ErrorCode>;

/** Every non-2xx response has this body. */
export const ErrorBody = Type.Object({
  error: Type.Object({
    code: ErrorCode,
    message: Type.String(),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
});
export type ErrorBody = Static<typeof ErrorBody>;

/** The one table of error code → HTTP status. The SDK maps status/code back. */
export const ERROR_STATUS: Record<ErrorCode, number> = {
  invalid: 400,
  unauthenticated: 401,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  timeout: 408,
  resource_exhausted: 429,
  unavailable: 503,
  internal: 500,
};

// ---- shared pieces ---------------------------------------------------------

const Id = (pattern: string) => Type.String({ pattern, maxLength: 64 });
export const SandboxIdSchema = Id("^sb-[a-z0-9]{1,40}$");
export const AppIdSchema = Id("^ap-[a-z0-9]{1,40}$");
export const ExecIdSchema = Id("^(entry|ex-[a-z0-9]{1,40})$");

const Argv = Type.Array(Type.String({ maxLength: LIMITS.maxArgvBytes }), {
  minItems: 1,
  maxItems: LIMITS.maxArgs,
});
const Timestamp = Type.String({ description: "RFC 3339 time" });



// ImageSpec and the image-management shapes live in wire-images.ts.
export * from "./wire-images.js";
import { ImageSpec } from "./wire-images.js";

// ---- apps ------------------------------------------------------------------

export const App = Type.Object({ appId: AppIdSchema, name: Type.String(), createdAt: Timestamp });
export type App = Static<typeof App>;

export const AppLookupRequest = Type.Object(
  {
    name: Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: LIMITS.maxNameLength }),
    createIfMissing: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type AppLookupRequest = Static<typeof AppLookupRequest>;

// ---- sandboxes -------------------------------------------------------------

export const SandboxState = Type.Union([
  Type.Literal("created"),
  Type.Literal("scheduled"),
  Type.Literal("started"),
  Type.Literal("finished"),
]);
export type SandboxState = Static<typeof SandboxState>;

export const FinishReason = Type.Union([
  Type.Literal("exited"),
  Type.Literal("terminated"),
  Type.Literal("timeout"),
  Type.Literal("idle-timeout"),
  Type.Literal("oom"),
  Type.Literal("failed"),
]);
export type FinishReason = Static<typeof FinishReason>;

export const SandboxCreateRequest = Type.Object(
  {
    appId: AppIdSchema,
    image: ImageSpec,
    command: Type.Optional(Argv),
    timeoutMs: Type.Optional(Type.Integer()),
    idleTimeoutMs: Type.Optional(Type.Integer()),
    workdir: Type.Optional(Type.String({ maxLength: 4096 })),
    cpu: Type.Optional(Type.Number()),
    cpuLimit: Type.Optional(Type.Number()),
    memoryMiB: Type.Optional(Type.Integer()),
    memoryLimitMiB: Type.Optional(Type.Integer()),
    env: Type.Optional(EnvMap),
    secrets: Type.Optional(Type.Array(SecretRef, { maxItems: 64 })),
    blockNetwork: Type.Optional(Type.Boolean()),
    name: Type.Optional(Type.String({ maxLength: 256 })),
    tags: Type.Optional(Type.Record(Type.String({ maxLength: LIMITS.maxTagLength }), Type.String({ maxLength: LIMITS.maxTagLength }))),
  },
  { additionalProperties: false },
);
export type SandboxCreateRequest = Static<typeof SandboxCreateRequest>;

export const Sandbox = Type.Object({
  sandboxId: SandboxIdSchema,
  appId: AppIdSchema,
  name: Type.Union([Type.String(), Type.Null()]),
  state: SandboxState,
  returncode: Type.Union([Type.Integer(), Type.Null()]),
  finishReason: Type.Union([FinishReason, Type.Null()]),
  imageId: Type.Union([Type.String(), Type.Null()]),
  tags: Type.Record(Type.String(), Type.String()),
  createdAt: Timestamp,
});
export type Sandbox = Static<typeof Sandbox>;

export const EventType = Type.Union([
  Type.Literal("Created"),
  Type.Literal("Scheduled"),
  Type.Literal("Started"),
  Type.Literal("Ready"),
  Type.Literal("Finished"),
]);
export type EventType = Static<typeof EventType>;

export const SandboxEvent = Type.Object({
  type: EventType,
  at: Timestamp,
  reason: Type.Union([Type.String(), Type.Null()]),
  returncode: Type.Union([Type.Integer(), Type.Null()]),
});
export type SandboxEvent = Static<typeof SandboxEvent>;

export const SandboxEventList = Type.Object({ events: Type.Array(SandboxEvent) });
export type SandboxEventList = Static<typeof SandboxEventList>;

export const SandboxList = Type.Object({
  sandboxes: Type.Array(Sandbox),
  nextCursor: Type.Union([Type.String(), Type.Null()]),
});
export type SandboxList = Static<typeof SandboxList>;

export const WaitQuery = Type.Object(
  { timeoutMs: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.maxWaitMs })) },
  { additionalProperties: false },
);
export type WaitQuery = Static<typeof WaitQuery>;

// ---- exec ------------------------------------------------------------------

export const ExecRequest = Type.Object(
  {
    argv: Argv,
    workdir: Type.Optional(Type.String({ maxLength: 4096 })),
    env: Type.Optional(EnvMap),
    secrets: Type.Optional(Type.Array(SecretRef, { maxItems: 64 })),
    timeoutMs: Type.Optional(Type.Integer()),
    stdout: Type.Optional(Type.Union([Type.Literal("pipe"), Type.Literal("ignore")])),
    stderr: Type.Optional(Type.Union([Type.Literal("pipe"), Type.Literal("ignore")])),
  },
  { additionalProperties: false },
);
export type ExecRequest = Static<typeof ExecRequest>;

export const Exec = Type.Object({
  execId: ExecIdSchema,
  sandboxId: SandboxIdSchema,
  returncode: Type.Union([Type.Integer(), Type.Null()]),
  reason: Type.Union([Type.String(), Type.Null()]),
});
export type Exec = Static<typeof Exec>;

export const StreamName = Type.Union([Type.Literal("stdout"), Type.Literal("stderr")]);
export type StreamName = Static<typeof StreamName>;

export const StreamQuery = Type.Object(
  { offset: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);

/** Reply to a stdin write: the total number of stdin bytes the process has accepted. */
export const StdinAck = Type.Object({ offset: Type.Integer({ minimum: 0 }) });
export type StdinAck = Static<typeof StdinAck>;

export const Health = Type.Object({ ok: Type.Boolean(), version: Type.String() });

// Header names of the streaming endpoints.
export const HEADER_STREAM_OFFSET = "x-sbx-offset";

/** For callers that enumerate schemas (OpenAPI). */
export const SCHEMAS: Record<string, TSchema> = {
  ErrorBody,
  App,
  AppLookupRequest,
  ImageSpec,
  SecretRef,
  SandboxCreateRequest,
  Sandbox,
  SandboxEvent,
  SandboxEventList,
  SandboxList,
  ExecRequest,
  Exec,
  StdinAck,
  Health,
};
