// API tokens: `sbx_<id>_<secret>`. Only a SHA-256 hash of the secret is
// stored; a presented token is looked up by its id and its secret's hash
// compared in constant time. The admin token is returned once, on first
// start, for the caller to hand to the operator.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { newId } from "./ids.js";
import type { Scope, Store, TokenRecord } from "./ports.js";

/** The workspace every data dir starts with; the admin token belongs to it. */
export const DEFAULT_WORKSPACE_ID = "ws-default";

const TOKEN_RE = /^sbx_([a-z2-7]{20})_([A-Za-z0-9_-]{43})$/;

export function hashToken(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

/** A new token and what to store of it. */
export function mintToken(): { token: string; id: string; hash: string } {
  const id = newId("tk");
  const secret = randomBytes(32).toString("base64url");
  return { token: `sbx_${id.slice(3)}_${secret}`, id, hash: hashToken(secret) };
}

/** Token rows kept in memory at most; past this, lookups go to the store. */
const KNOWN_TOKENS_MAX = 10_000;

export class TokenService {
  /**
   * Token rows already read, by id. Every request verifies a token, and a
   * token row never changes once written (there is no revoke yet; one must
   * delete from here too). The secret is still hashed and compared each time.
   */
  private readonly known = new Map<string, TokenRecord>();

  constructor(private readonly store: Store) {}

  /** Creates the admin token when the store has none; returns it then, else null. */
  ensureAdminToken(): string | null {
    return this.store.transaction(() => {
      if (this.store.tokenCount() > 0) return null;
      const t = mintToken();
      this.store.insertToken({
        id: t.id,
        hash: t.hash,
        name: "admin",
        workspaceId: DEFAULT_WORKSPACE_ID,
        admin: true,
        createdAt: new Date().toISOString(),
      });
      return t.token;
    });
  }

  /** The caller a token stands for, or null when it is not a valid token. */
  verify(token: string): Scope | null {
    const m = TOKEN_RE.exec(token);
    if (!m) return null;
    const id = `tk-${m[1]}`;
    const stored = this.known.get(id) ?? this.store.getToken(id);
    if (stored && this.known.size < KNOWN_TOKENS_MAX) this.known.set(id, stored);
    // Hash anyway, so a wrong id costs what a wrong secret does.
    const presented = Buffer.from(hashToken(m[2]!), "hex");
    const expected = Buffer.from(stored?.hash ?? "0".repeat(64), "hex");
    if (!timingSafeEqual(presented, expected) || !stored) return null;
    return { workspaceId: stored.workspaceId, admin: stored.admin };
  }

  /** A new token for a workspace; the token itself is returned once, only its hash kept. */
  create(workspaceId: string, name: string, admin = false): string {
    const t = mintToken();
    this.store.insertToken({ id: t.id, hash: t.hash, name, workspaceId, admin, createdAt: new Date().toISOString() });
    return t.token;
  }
}
