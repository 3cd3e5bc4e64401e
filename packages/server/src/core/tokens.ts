// API tokens. Only a SHA-256 hash of each token is stored; the admin token is
// returned once, on first start, for the caller to hand to the operator.
import { createHash, randomBytes } from "node:crypto";
import { newId } from "./ids.js";
import type { Store } from "./ports.js";

export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export class TokenService {
  constructor(private readonly store: Store) {}

  /** Creates the admin token when the store has none; returns it then, else null. */
  ensureAdminToken(): string | null {
    return this.store.transaction(() => {
      if (this.store.tokenCount() > 0) return null;
      const token = `sbx_${randomBytes(32).toString("base64url")}`;
      this.store.insertToken({ id: newId("tk"), hash: hashToken(token), name: "admin", createdAt: new Date().toISOString() });
      return token;
    });
  }

  verify(token: string): boolean {
    if (token.length < 8 || token.length > 512) return false;
    return this.store.findTokenByHash(hashToken(token)) !== null;
  }
}
