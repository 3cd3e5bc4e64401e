// What a client asked for (wire ImageSpec) → what the image service resolves
// (ImageSource): credentials and build secrets come out of their secrets
// here, and the stored form of a spec never holds them.
import type { ImageSpec, SecretRef } from "sbx/wire";
import { parseDockerfile } from "./dockerfile.js";
import { InvalidArgumentError } from "./errors.js";
import type { ImageSource } from "./ports.js";
import { resolveSecretEnv } from "./secrets.js";

/** Deepest chain of dockerfileCommands() on one base. */
export const MAX_BUILD_DEPTH = 32;

type SecretEnv = (refs: SecretRef[] | undefined) => Record<string, string>;

/**
 * `secretEnv` resolves secret references (default: inline ones only; pass
 * SecretService.resolveEnv to allow named ones). `workspaceId` keeps build
 * cache entries per workspace: a recipe's secrets have the same names but not
 * the same values in two workspaces, so one must not get the other's build.
 */
export function toImageSource(spec: ImageSpec, secretEnv: SecretEnv = resolveSecretEnv, workspaceId = ""): ImageSource {
  return convert(spec, secretEnv, workspaceId, 0);
}

function convert(spec: ImageSpec, secretEnv: SecretEnv, workspaceId: string, depth: number): ImageSource {
  switch (spec.kind) {
    case "registry": {
      const auth = spec.secret ? registryAuth(secretEnv([spec.secret])) : undefined;
      return auth ? { kind: "registry", ref: spec.ref, auth } : { kind: "registry", ref: spec.ref };
    }
    case "debianSlim":
      return spec.pythonVersion === undefined ? { kind: "debianSlim" } : { kind: "debianSlim", pythonVersion: spec.pythonVersion };
    case "id":
      return { kind: "id", imageId: spec.imageId };
    case "dockerfile": {
      if (depth >= MAX_BUILD_DEPTH) {
        throw new InvalidArgumentError(`image: more than ${MAX_BUILD_DEPTH} dockerfileCommands() on one base; build an intermediate image and use images.fromId()`);
      }
      return {
        kind: "dockerfile",
        base: convert(spec.base, secretEnv, workspaceId, depth + 1),
        commands: spec.commands,
        env: spec.env ?? {},
        secretEnv: secretEnv(spec.secrets),
        forceBuild: spec.forceBuild ?? false,
        cacheScope: workspaceId,
      };
    }
  }
}

/** The spec as stored with a sandbox: everything but secret values. */
export function storedImageSpec(spec: ImageSpec): unknown {
  switch (spec.kind) {
    case "registry":
      return { kind: "registry", ref: spec.ref };
    case "dockerfile":
      return {
        kind: "dockerfile",
        base: storedImageSpec(spec.base),
        commands: spec.commands,
        ...(spec.env ? { env: spec.env } : {}),
        ...(spec.secrets ? { secrets: spec.secrets.map((s) => (s.kind === "named" ? s : { kind: "inline", keys: Object.keys(s.env) })) } : {}),
        ...(spec.forceBuild ? { forceBuild: true } : {}),
      };
    default:
      return spec;
  }
}

function registryAuth(env: Record<string, string>): { username: string; password: string } | undefined {
  const username = env.REGISTRY_USERNAME;
  const password = env.REGISTRY_PASSWORD;
  if (username === undefined || password === undefined) return undefined;
  return { username, password };
}

/**
 * The image ids a spec names (images.fromId), its build bases and the
 * images its COPY --from=sha256:… instructions read included. Throws
 * InvalidArgumentError for instructions that do not parse.
 */
export function imageIdsIn(spec: ImageSpec): string[] {
  switch (spec.kind) {
    case "id":
      return [spec.imageId];
    case "dockerfile": {
      const copied = parseDockerfile(spec.commands).flatMap((i) => (i.op === "COPY" && IMAGE_ID.test(i.from) ? [i.from] : []));
      return [...imageIdsIn(spec.base), ...copied];
    }
    default:
      return [];
  }
}

const IMAGE_ID = /^sha256:[a-f0-9]{64}$/;
