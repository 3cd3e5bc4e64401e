// Secrets: environment variables that reach only the sandbox. Inline secrets
// travel with the request that uses them; named ones are stored on the server
// (encrypted at rest) and referenced by name. No reply ever carries a value.
import { InvalidError, NotFoundError } from "./errors.js";
import type { HttpClient } from "./http.js";
import type { CallOptions } from "./process.js";
import {
  ENV_KEY_PATTERN,
  LIMITS,
  NAME_PATTERN,
  type SecretCreateRequest,
  type SecretInfo,
  type SecretList,
  type SecretRef,
} from "./wire.js";

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
  /** Keys the secret must have; a create (or exec) using it fails without them. */
  requiredKeys?: string[];
}

export interface SecretCreateParams extends CallOptions {
  /** Replace the values of an existing secret of that name (else AlreadyExistsError). */
  overwrite?: boolean;
}

export interface SecretDeleteParams extends CallOptions {
  /** Succeed when there is no secret of that name (else NotFoundError). */
  allowMissing?: boolean;
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !NAME.test(name) || name.length > LIMITS.maxNameLength) {
    throw new InvalidError(`secret name must match ${NAME_PATTERN} and have at most ${LIMITS.maxNameLength} characters (got ${JSON.stringify(name)})`);
  }
}

export class SecretService {
  readonly #http: HttpClient;

  /** @internal */
  constructor(http: HttpClient) {
    this.#http = http;
  }

  /** An inline secret; its values are sent with the sandbox (or exec) that uses it. */
  fromObject(entries: Record<string, string>): Secret {
    checkEnv(entries, "secret");
    return new Secret({ kind: "inline", env: { ...entries } });
  }

  /**
   * A reference to a secret stored on the server. Lazy: the server checks
   * that it exists and has `requiredKeys` when a sandbox or exec uses it
   * (NotFoundError, InvalidError).
   */
  async fromName(name: string, params: SecretFromNameParams = {}): Promise<Secret> {
    checkName(name);
    if (params.requiredKeys !== undefined && !Array.isArray(params.requiredKeys)) throw new InvalidError("requiredKeys must be an array of strings");
    for (const key of params.requiredKeys ?? []) checkEnvKey(key, "requiredKeys");
    return new Secret({ kind: "named", name, ...(params.requiredKeys ? { requiredKeys: [...params.requiredKeys] } : {}) });
  }

  /** Stores a secret on the server; AlreadyExistsError if the name is taken, unless `overwrite`. */
  async create(name: string, entries: Record<string, string>, params: SecretCreateParams = {}): Promise<SecretInfo> {
    checkName(name);
    checkEnv(entries, "secret");
    const body: SecretCreateRequest = { name, env: { ...entries }, ...(params.overwrite ? { overwrite: true } : {}) };
    return this.#http.json<SecretInfo>({ method: "POST", path: "/v1/secrets", body, signal: params.signal });
  }

  /** The stored secrets: names and keys, never values. */
  async list(opts: CallOptions = {}): Promise<SecretInfo[]> {
    const list = await this.#http.json<SecretList>({ method: "GET", path: "/v1/secrets", signal: opts.signal });
    return list.secrets;
  }

  /** Deletes a stored secret; NotFoundError when there is none, unless `allowMissing`. */
  async delete(name: string, params: SecretDeleteParams = {}): Promise<void> {
    checkName(name);
    try {
      await this.#http.json({ method: "DELETE", path: `/v1/secrets/${encodeURIComponent(name)}`, signal: params.signal });
    } catch (err) {
      if (!(params.allowMissing && err instanceof NotFoundError)) throw err;
    }
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
