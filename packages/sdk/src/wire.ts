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

export const VolumeIdSchema = Id("^vo-[a-z0-9]{1,40}$");

// Keys cannot hold "=": the list filter sends tags as tag=key=value.
const Tags = Type.Record(
  Type.String({ pattern: `^[^=]{1,${LIMITS.maxTagLength}}$` }),
  Type.String({ maxLength: LIMITS.maxTagLength }),
  { additionalProperties: false, maxProperties: LIMITS.maxTags },
);

const Argv = Type.Array(Type.String({ maxLength: LIMITS.maxArgvBytes }), {
  minItems: 1,
  maxItems: LIMITS.maxArgs,
});
const Timestamp = Type.String({ description: "RFC 3339 time" });



// ImageSpec and the image-management shapes live in wire-images.ts.
export * from "./wire-images.js";
import { IMAGE_SCHEMAS, ImageSpec } from "./wire-images.js";

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

/** An app's warm pool size per sandbox shape; null returns to the server's default. */
export const WarmPoolRequest = Type.Object(
  { size: Type.Union([Type.Integer({ minimum: 0, maximum: 64 }), Type.Null()]) },
  { additionalProperties: false },
);
export type WarmPoolRequest = Static<typeof WarmPoolRequest>;

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

/** A readiness probe: run until it first succeeds (at most 5 minutes), then Ready is recorded. */
export const ReadinessProbe = Type.Union([
  Type.Object(
    {
      kind: Type.Literal("tcp"),
      port: Type.Integer({ minimum: 1, maximum: 65535 }),
      intervalMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal("exec"),
      argv: Argv,
      intervalMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000 })),
    },
    { additionalProperties: false },
  ),
]);
export type ReadinessProbe = Static<typeof ReadinessProbe>;

/** A volume mounted into a sandbox, by id (see POST /v1/volumes/lookup). */
export const VolumeMount = Type.Object(
  {
    volumeId: VolumeIdSchema,
    readOnly: Type.Optional(Type.Boolean()),
    subPath: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type VolumeMount = Static<typeof VolumeMount>;

const Ports = Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 64 });
const Cidrs = Type.Array(Type.String({ maxLength: 64 }), { maxItems: 256 });

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
    tags: Type.Optional(Tags),
    readinessProbe: Type.Optional(ReadinessProbe),
    /** container path → volume. */
    volumes: Type.Optional(Type.Record(Type.String({ maxLength: 4096 }), VolumeMount)),
    encryptedPorts: Type.Optional(Ports),
    unencryptedPorts: Type.Optional(Ports),
    h2Ports: Type.Optional(Ports),
    outboundCidrAllowlist: Type.Optional(Cidrs),
    inboundCidrAllowlist: Type.Optional(Cidrs),
    pty: Type.Optional(Type.Boolean()),
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
  /** Whether a readiness probe is configured, and whether it has succeeded. */
  hasReadinessProbe: Type.Boolean(),
  ready: Type.Boolean(),
});
export type Sandbox = Static<typeof Sandbox>;

export const SetTagsRequest = Type.Object({ tags: Tags }, { additionalProperties: false });
export type SetTagsRequest = Static<typeof SetTagsRequest>;

// ---- secrets and volumes ---------------------------------------------------

export const SecretCreateRequest = Type.Object(
  {
    name: Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: LIMITS.maxNameLength }),
    env: EnvMap,
    /** Replace the values of an existing secret of that name. */
    overwrite: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type SecretCreateRequest = Static<typeof SecretCreateRequest>;

/** What the server tells about a secret: never its values. */
export const SecretInfo = Type.Object({ name: Type.String(), keys: Type.Array(Type.String()), createdAt: Timestamp });
export type SecretInfo = Static<typeof SecretInfo>;
export const SecretList = Type.Object({ secrets: Type.Array(SecretInfo) });
export type SecretList = Static<typeof SecretList>;

export const VolumeLookupRequest = Type.Object(
  {
    name: Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: LIMITS.maxNameLength }),
    createIfMissing: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type VolumeLookupRequest = Static<typeof VolumeLookupRequest>;

export const Volume = Type.Object({
  volumeId: VolumeIdSchema,
  /** null for an ephemeral volume. */
  name: Type.Union([Type.String(), Type.Null()]),
  ephemeral: Type.Boolean(),
  createdAt: Timestamp,
});
export type Volume = Static<typeof Volume>;
export const VolumeList = Type.Object({ volumes: Type.Array(Volume) });
export type VolumeList = Static<typeof VolumeList>;

// ---- workspaces and tokens (admin) -------------------------------------------

export const Workspace = Type.Object({ workspaceId: Type.String(), name: Type.String(), createdAt: Timestamp });
export type Workspace = Static<typeof Workspace>;
export const WorkspaceList = Type.Object({ workspaces: Type.Array(Workspace) });
export type WorkspaceList = Static<typeof WorkspaceList>;

export const WorkspaceCreateRequest = Type.Object(
  { name: Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: LIMITS.maxNameLength }) },
  { additionalProperties: false },
);
export type WorkspaceCreateRequest = Static<typeof WorkspaceCreateRequest>;

/** A token is shown once, here; the server keeps only its hash. */
export const TokenCreated = Type.Object({ token: Type.String() });
export type TokenCreated = Static<typeof TokenCreated>;

export const WorkspaceCreated = Type.Object({ workspace: Workspace, token: Type.String() });
export type WorkspaceCreated = Static<typeof WorkspaceCreated>;

export const TokenCreateRequest = Type.Object(
  { name: Type.String({ pattern: NAME_PATTERN, minLength: 1, maxLength: LIMITS.maxNameLength }) },
  { additionalProperties: false },
);
export type TokenCreateRequest = Static<typeof TokenCreateRequest>;

export const ReadyQuery = Type.Object(
  { timeoutMs: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMITS.maxWaitMs })) },
  { additionalProperties: false },
);

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
/**
 * HTTP trailer at the end of a process's stdout/stderr stream: its exit code
 * once the stream ended because the process did (empty otherwise), so a
 * client that read the output to its end needs no wait call.
 */
export const TRAILER_EXIT_CODE = "x-sbx-exit-code";

/** For callers that enumerate schemas (OpenAPI). */
export const SCHEMAS: Record<string, TSchema> = {
  ...IMAGE_SCHEMAS,
  ErrorBody,
  App,
  AppLookupRequest,
  WarmPoolRequest,
  ImageSpec,
  SecretRef,
  SandboxCreateRequest,
  Sandbox,
  SandboxEvent,
  SandboxEventList,
  SandboxList,
  ExecRequest,
  Exec,
  ReadinessProbe,
  VolumeMount,
  SetTagsRequest,
  SecretCreateRequest,
  SecretInfo,
  SecretList,
  VolumeLookupRequest,
  Volume,
  VolumeList,
  Workspace,
  WorkspaceList,
  WorkspaceCreateRequest,
  WorkspaceCreated,
  TokenCreateRequest,
  TokenCreated,
  StdinAck,
  Health,
};
