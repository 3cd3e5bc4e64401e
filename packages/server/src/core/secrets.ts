// Secrets: named sets of environment variables, stored encrypted
// (AES-256-GCM, key held outside the database) and handed only to the
// sandboxes that ask for them. Values never appear in what the server
// returns, logs, stores in plaintext, or puts in an error message: errors
// name secrets and keys, never values.
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { SecretRef } from "sbx/wire";
import { AlreadyExistsError, InternalError, InvalidArgumentError, NotFoundError } from "./errors.js";
import type { Scope, SecretRecord, Store } from "./ports.js";
import { checkEnv, checkName, enforce } from "./validate.js";

const IV_BYTES = 12;
const TAG_BYTES = 16;

export interface SecretInfo {
  name: string;
  keys: string[];
  createdAt: string;
}

export class SecretService {
  /** @param key 32 bytes; compose reads it from (or creates it in) the data dir. */
  constructor(
    private readonly store: Store,
    private readonly key: Buffer,
  ) {
    if (key.length !== 32) throw new InternalError("the secrets key must be 32 bytes");
  }

  create(scope: Scope, name: string, env: Record<string, string>, overwrite: boolean): SecretInfo {
    enforce([
      { field: "name", problem: checkName(name) },
      { field: "env", problem: checkEnv(env) },
    ]);
    if (Object.keys(env).length === 0) throw new InvalidArgumentError("env must hold at least one key");
    const record: SecretRecord = {
      workspaceId: scope.workspaceId,
      name,
      keys: Object.keys(env).sort(),
      sealed: this.sealEnv(env),
      createdAt: new Date().toISOString(),
    };
    this.store.transaction(() => {
      if (!overwrite && this.store.getSecret(scope.workspaceId, name)) {
        throw new AlreadyExistsError(`secret "${name}" already exists; pass overwrite to replace its values`);
      }
      this.store.replaceSecret(record);
    });
    return info(record);
  }

  list(scope: Scope): SecretInfo[] {
    return this.store.listSecrets(scope.workspaceId).map(info);
  }

  get(scope: Scope, name: string): SecretInfo {
    const rec = this.store.getSecret(scope.workspaceId, name);
    if (!rec) throw new NotFoundError(`secret "${name}" does not exist; create it with sbx secrets create`);
    return info(rec);
  }

  delete(scope: Scope, name: string): void {
    if (!this.store.deleteSecret(scope.workspaceId, name)) throw new NotFoundError(`secret "${name}" does not exist`);
  }

  /** The environment a list of secret references gives, later ones overriding earlier ones. */
  resolveEnv(scope: Scope, refs: SecretRef[] | undefined): Record<string, string> {
    const env: Record<string, string> = {};
    for (const ref of refs ?? []) {
      if (ref.kind === "inline") {
        Object.assign(env, ref.env);
        continue;
      }
      const rec = this.store.getSecret(scope.workspaceId, ref.name);
      if (!rec) throw new NotFoundError(`secret "${ref.name}" does not exist; create it with sbx secrets create`);
      const missing = (ref.requiredKeys ?? []).filter((k) => !rec.keys.includes(k));
      if (missing.length > 0) {
        throw new InvalidArgumentError(`secret "${ref.name}" lacks the required keys ${missing.join(", ")}`);
      }
      Object.assign(env, this.open(rec));
    }
    return env;
  }

  /** Encrypts an env for storage (a pooled sandbox's, or a secret's). */
  sealEnv(env: Record<string, string>): Buffer {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    const body = Buffer.concat([cipher.update(JSON.stringify(env), "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  private open(rec: SecretRecord): Record<string, string> {
    return this.openEnv(rec.sealed, `secret "${rec.name}"`);
  }

  openEnv(sealed: Buffer, what = "a stored environment"): Record<string, string> {
    try {
      const iv = sealed.subarray(0, IV_BYTES);
      const tag = sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES);
      const decipher = createDecipheriv("aes-256-gcm", this.key, iv);
      decipher.setAuthTag(tag);
      const plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
      return JSON.parse(plain.toString("utf8")) as Record<string, string>;
    } catch (err) {
      // No detail: it could only be about the ciphertext or the key.
      throw new InternalError(`${what} cannot be decrypted with this server's key`, { cause: err });
    }
  }
}

function info(rec: SecretRecord): SecretInfo {
  return { name: rec.name, keys: rec.keys, createdAt: rec.createdAt };
}

/**
 * Inline secrets only, for callers without a SecretService at hand (registry
 * credentials of an image spec). Named ones need SecretService.resolveEnv.
 */
export function resolveSecretEnv(refs: SecretRef[] | undefined): Record<string, string> {
  const env: Record<string, string> = {};
  for (const ref of refs ?? []) {
    if (ref.kind === "named") {
      throw new InvalidArgumentError(`secret "${ref.name}": only inline secrets (secrets.fromObject) are accepted here`);
    }
    Object.assign(env, ref.env);
  }
  return env;
}
