// Secrets: environment variables that reach only the sandbox.
import { InvalidError } from "./errors.js";
import { ENV_KEY_PATTERN, LIMITS, NAME_PATTERN, type SecretRef } from "./wire.js";

const ENV_KEY = new RegExp(ENV_KEY_PATTERN);
const NAME = new RegExp(NAME_PATTERN);

export class Secret {
  /** The name of a named secret; undefined for an inline one. */
  readonly name: string | undefined;
  readonly #ref: SecretRef;

  /** @internal Use secrets.fromObject() or secrets.fromName(). */
  constructor(ref: SecretRef) {
    this.#ref = ref;
    this.name = ref.kind === "named" ? ref.name : undefined;
  }

  /** @internal The wire form. */
  toWire(): SecretRef {
    return this.#ref;
  }
}

export interface SecretFromNameParams {
  /** Keys the secret must have; the sandbox fails to start without them. */
  requiredKeys?: string[];
}

export class SecretService {
  /** An inline secret; its values are sent with the sandbox (or exec) that uses it. */
  fromObject(entries: Record<string, string>): Secret {
    checkEnv(entries, "secret");
    return new Secret({ kind: "inline", env: { ...entries } });
  }

  /** A reference to a secret stored on the server (server support comes later). */
  async fromName(name: string, params: SecretFromNameParams = {}): Promise<Secret> {
    if (typeof name !== "string" || !NAME.test(name) || name.length > LIMITS.maxNameLength) {
      throw new InvalidError(`secret name must match ${NAME_PATTERN} and have at most ${LIMITS.maxNameLength} characters (got ${JSON.stringify(name)})`);
    }
    for (const key of params.requiredKeys ?? []) checkEnvKey(key, "requiredKeys");
    return new Secret({ kind: "named", name, ...(params.requiredKeys ? { requiredKeys: [...params.requiredKeys] } : {}) });
  }
}

function checkEnvKey(key: string, what: string): void {
  if (!ENV_KEY.test(key)) throw new InvalidError(`${what}: ${JSON.stringify(key)} is not a valid environment variable name (${ENV_KEY_PATTERN})`);
}

/** Cheap client-side check of an env map; the server is the authority. */
export function checkEnv(env: unknown, what: string): asserts env is Record<string, string> {
  if (env === null || typeof env !== "object" || Array.isArray(env)) throw new InvalidError(`${what} must be an object of strings`);
  const entries = Object.entries(env);
  if (entries.length > LIMITS.maxEnvEntries) throw new InvalidError(`${what} has ${entries.length} entries; at most ${LIMITS.maxEnvEntries} are allowed`);
  for (const [key, value] of entries) {
    checkEnvKey(key, what);
    if (typeof value !== "string") throw new InvalidError(`${what}: the value of ${key} must be a string (got ${typeof value})`);
  }
}

/** Resolves secrets given as Secret objects or promises of them. */
export async function resolveSecrets(
  secrets: readonly (Secret | Promise<Secret>)[] | undefined,
): Promise<SecretRef[] | undefined> {
  if (secrets === undefined) return undefined;
  if (!Array.isArray(secrets)) throw new InvalidError("secrets must be an array of Secret objects");
  const resolved = await Promise.all(secrets);
  return resolved.map((s, i) => {
    if (!(s instanceof Secret)) throw new InvalidError(`secrets[${i}] is not a Secret (make one with secrets.fromObject())`);
    return s.toWire();
  });
}
