// Secrets as the sandbox sees them: environment variables. Inline secrets
// come with the request; their values are passed to the runtime and never
// stored, logged or echoed in errors.
import type { SecretRef } from "sbx/wire";
import { InvalidArgumentError } from "./errors.js";

export function resolveSecretEnv(refs: SecretRef[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ref of refs ?? []) {
    if (ref.kind === "named") {
      throw new InvalidArgumentError(
        `secret "${ref.name}": named secrets are not supported by this server yet; use secrets.fromObject`,
      );
    }
    Object.assign(env, ref.env);
  }
  return env;
}
