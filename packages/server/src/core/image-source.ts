// What a client asked for (wire ImageSpec) → what the image service resolves
// (ImageSource): credentials come out of their secret here, and the stored
// form of a spec never holds them.
import type { ImageSpec } from "sbx/wire";
import type { ImageSource } from "./ports.js";
import { resolveSecretEnv } from "./secrets.js";

export function toImageSource(spec: ImageSpec): ImageSource {
  switch (spec.kind) {
    case "registry": {
      const auth = spec.secret ? registryAuth(resolveSecretEnv([spec.secret])) : undefined;
      return auth ? { kind: "registry", ref: spec.ref, auth } : { kind: "registry", ref: spec.ref };
    }
    case "debianSlim":
      return spec.pythonVersion === undefined ? { kind: "debianSlim" } : { kind: "debianSlim", pythonVersion: spec.pythonVersion };
    case "id":
      return { kind: "id", imageId: spec.imageId };
  }
}

/** The spec as stored with a sandbox: everything but secret values. */
export function storedImageSpec(spec: ImageSpec): unknown {
  return spec.kind === "registry" ? { kind: "registry", ref: spec.ref } : spec;
}

function registryAuth(env: Record<string, string>): { username: string; password: string } | undefined {
  const username = env.REGISTRY_USERNAME;
  const password = env.REGISTRY_PASSWORD;
  if (username === undefined || password === undefined) return undefined;
  return { username, password };
}
