// Limits and shapes that several parts of the wire format share (see wire.ts).
import { Type, type Static } from "@sinclair/typebox";

// ---- limits shared by both sides -------------------------------------------

export const LIMITS = {
  /** Sandbox lifetime: default 5 minutes, at most 24 hours, whole seconds. */
  defaultTimeoutMs: 300_000,
  maxTimeoutMs: 24 * 60 * 60 * 1000,
  /** argv of a command or exec, summed over its elements' UTF-8 bytes. */
  maxArgvBytes: 64 * 1024,
  maxArgs: 4096,
  maxEnvEntries: 1024,
  maxEnvBytes: 256 * 1024,
  maxNameLength: 64,
  maxTags: 64,
  maxTagLength: 256,
  /** A single stdin write. */
  maxStdinChunkBytes: 4 * 1024 * 1024,
  /** Long polls (wait) are capped so proxies do not cut them; clients loop. */
  maxWaitMs: 50_000,
} as const;

export const NAME_PATTERN = "^[A-Za-z0-9._-]+$";
export const ENV_KEY_PATTERN = "^[A-Za-z_][A-Za-z0-9_]*$";

export const EnvMap = Type.Record(Type.String({ pattern: ENV_KEY_PATTERN, maxLength: 256 }), Type.String({ maxLength: 128 * 1024 }));

/** A secret given inline or by name; its values reach only the sandbox. */
export const SecretRef = Type.Union([
  Type.Object({ kind: Type.Literal("inline"), env: EnvMap }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal("named"),
      name: Type.String({ pattern: NAME_PATTERN, maxLength: LIMITS.maxNameLength }),
      requiredKeys: Type.Optional(Type.Array(Type.String({ pattern: ENV_KEY_PATTERN }))),
    },
    { additionalProperties: false },
  ),
]);
export type SecretRef = Static<typeof SecretRef>;
