// The embedded default Store: one SQLite file in the data dir, WAL mode.
// better-sqlite3 is synchronous, which keeps every multi-row change atomic
// without locks of our own.
import { chmodSync } from "node:fs";
import Database from "better-sqlite3";
import type {
  AppRecord,
  EventRecord,
  ExecRecord,
  SandboxRecord,
  SecretRecord,
  Store,
  TokenRecord,
  VolumeRecord,
  WorkspaceRecord,
} from "../core/ports.js";
import { MIGRATIONS, type Migration } from "./migrations.js";

type Row = Record<string, unknown>;

export class StoreMigrationError extends Error {}

export function openSqliteStore(path: string, migrations: readonly Migration[] = MIGRATIONS): Store {
  const db = new Database(path);
  // Token hashes and secrets live here: owner-only, like the admin token file.
  if (path !== ":memory:") chmodSync(path, 0o600);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000");
  migrate(db, migrations);
  return new SqliteStore(db);
}

function migrate(db: Database.Database, migrations: readonly Migration[]): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  const latest = migrations.at(-1)?.version ?? 0;
  if (current > latest) {
    throw new StoreMigrationError(
      `the database is at schema version ${current}, newer than this server knows (${latest}); run a newer sbx`,
    );
  }
  // Rebuilding a table (the only way SQLite changes a constraint) needs foreign
  // keys off, which cannot change inside a transaction; they are checked after.
  db.pragma("foreign_keys = OFF");
  try {
    for (const m of migrations) {
      if (m.version <= current) continue;
      db.transaction(() => {
        db.exec(m.sql);
        const broken = db.pragma("foreign_key_check") as unknown[];
        if (broken.length > 0) {
          throw new StoreMigrationError(`migration ${m.version} (${m.description}) left ${broken.length} broken reference(s)`);
        }
        db.pragma(`user_version = ${m.version}`);
      })();
    }
  } finally {
    db.pragma("foreign_keys = ON");
  }
}

function sandboxFromRow(r: Row): SandboxRecord {
  return {
    sandboxId: r.sandbox_id as string,
    appId: r.app_id as string,
    name: (r.name as string | null) ?? null,
    state: r.state as SandboxRecord["state"],
    spec: JSON.parse(r.spec as string) as SandboxRecord["spec"],
    imageId: (r.image_id as string | null) ?? null,
    returncode: (r.returncode as number | null) ?? null,
    finishReason: (r.finish_reason as SandboxRecord["finishReason"]) ?? null,
    tags: JSON.parse(r.tags as string) as Record<string, string>,
    createdAt: r.created_at as string,
    deadlineAt: r.deadline_at as number,
    finishedAt: (r.finished_at as string | null) ?? null,
    readyAt: (r.ready_at as string | null) ?? null,
    sealedEnv: (r.sealed_env as Buffer | null) ?? null,
  };
}

function appFromRow(r: Row): AppRecord {
  return {
    appId: r.app_id as string,
    workspaceId: r.workspace_id as string,
    warmPoolSize: (r.warm_pool_size as number | null) ?? null,
    name: r.name as string,
    createdAt: r.created_at as string,
  };
}

function workspaceFromRow(r: Row): WorkspaceRecord {
  return { workspaceId: r.workspace_id as string, name: r.name as string, createdAt: r.created_at as string };
}

function secretFromRow(r: Row): SecretRecord {
  return {
    workspaceId: r.workspace_id as string,
    name: r.name as string,
    keys: JSON.parse(r.keys as string) as string[],
    sealed: r.sealed as Buffer,
    createdAt: r.created_at as string,
  };
}

function volumeFromRow(r: Row): VolumeRecord {
  return {
    volumeId: r.volume_id as string,
    workspaceId: r.workspace_id as string,
    name: (r.name as string | null) ?? null,
    ephemeral: r.ephemeral === 1,
    createdAt: r.created_at as string,
  };
}

function execFromRow(r: Row): ExecRecord {
  return {
    execId: r.exec_id as string,
    sandboxId: r.sandbox_id as string,
    argv: JSON.parse(r.argv as string) as string[],
    createdAt: r.created_at as string,
    returncode: (r.returncode as number | null) ?? null,
    reason: (r.reason as string | null) ?? null,
    finishedAt: (r.finished_at as string | null) ?? null,
  };
}

const SANDBOX_COLUMNS: Record<string, string> = {
  state: "state",
  imageId: "image_id",
  returncode: "returncode",
  finishReason: "finish_reason",
  finishedAt: "finished_at",
  tags: "tags",
  readyAt: "ready_at",
};

class SqliteStore implements Store {
  private readonly stmts;
  /** Statements prepared by sql(), by their text. */
  private readonly prepared = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {
    this.stmts = {
      tokenCount: db.prepare("SELECT COUNT(*) AS n FROM tokens"),
      insertToken: db.prepare(
        "INSERT INTO tokens (id, hash, name, workspace_id, admin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      ),
      tokenById: db.prepare("SELECT * FROM tokens WHERE id = ?"),
      appByName: db.prepare("SELECT * FROM apps WHERE workspace_id = ? AND name = ?"),
      appById: db.prepare("SELECT * FROM apps WHERE app_id = ?"),
      insertApp: db.prepare("INSERT INTO apps (app_id, workspace_id, name, created_at) VALUES (?, ?, ?, ?)"),
      insertSandbox: db.prepare(
        `INSERT INTO sandboxes (sandbox_id, app_id, name, state, spec, image_id, returncode, finish_reason,
           tags, created_at, deadline_at, finished_at, ready_at, sealed_env)
         VALUES (@sandboxId, @appId, @name, @state, @spec, @imageId, @returncode, @finishReason,
           @tags, @createdAt, @deadlineAt, @finishedAt, @readyAt, @sealedEnv)`,
      ),
      sandboxById: db.prepare("SELECT * FROM sandboxes WHERE sandbox_id = ?"),
      sandboxWorkspace: db.prepare(
        "SELECT a.workspace_id FROM sandboxes s JOIN apps a ON a.app_id = s.app_id WHERE s.sandbox_id = ?",
      ),
      activeByName: db.prepare("SELECT * FROM sandboxes WHERE app_id = ? AND name = ? AND state != 'finished'"),
      insertEvent: db.prepare("INSERT INTO events (sandbox_id, type, at, reason, returncode) VALUES (?, ?, ?, ?, ?)"),
      events: db.prepare("SELECT * FROM events WHERE sandbox_id = ? ORDER BY seq"),
      insertExec: db.prepare(
        "INSERT INTO execs (exec_id, sandbox_id, argv, created_at, returncode, reason, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      execById: db.prepare("SELECT * FROM execs WHERE sandbox_id = ? AND exec_id = ?"),
      runningExecs: db.prepare("SELECT * FROM execs WHERE sandbox_id = ? AND returncode IS NULL"),
      finishExec: db.prepare(
        "UPDATE execs SET returncode = ?, reason = ?, finished_at = ? WHERE sandbox_id = ? AND exec_id = ? AND returncode IS NULL",
      ),
    };
  }

  /**
   * A prepared statement for `text`, prepared once: preparing costs more
   * than running a one-row statement (~0.3 ms against ~0.03 ms here).
   */
  private sql(text: string): Database.Statement {
    let stmt = this.prepared.get(text);
    if (!stmt) {
      stmt = this.db.prepare(text);
      this.prepared.set(text, stmt);
    }
    return stmt;
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  tokenCount(): number {
    return (this.stmts.tokenCount.get() as { n: number }).n;
  }
  insertToken(t: TokenRecord): void {
    this.stmts.insertToken.run(t.id, t.hash, t.name, t.workspaceId, t.admin ? 1 : 0, t.createdAt);
  }
  getToken(id: string): TokenRecord | null {
    const r = this.stmts.tokenById.get(id) as Row | undefined;
    if (!r) return null;
    return {
      id: r.id as string,
      hash: r.hash as string,
      name: r.name as string,
      workspaceId: r.workspace_id as string,
      admin: r.admin === 1,
      createdAt: r.created_at as string,
    };
  }

  insertWorkspace(w: WorkspaceRecord): void {
    this.sql("INSERT INTO workspaces (workspace_id, name, created_at) VALUES (?, ?, ?)").run(w.workspaceId, w.name, w.createdAt);
  }
  getWorkspace(workspaceId: string): WorkspaceRecord | null {
    const r = this.sql("SELECT * FROM workspaces WHERE workspace_id = ?").get(workspaceId) as Row | undefined;
    return r ? workspaceFromRow(r) : null;
  }
  findWorkspaceByName(name: string): WorkspaceRecord | null {
    const r = this.sql("SELECT * FROM workspaces WHERE name = ?").get(name) as Row | undefined;
    return r ? workspaceFromRow(r) : null;
  }
  listWorkspaces(): WorkspaceRecord[] {
    return (this.sql("SELECT * FROM workspaces ORDER BY name").all() as Row[]).map(workspaceFromRow);
  }

  findAppByName(workspaceId: string, name: string): AppRecord | null {
    const r = this.stmts.appByName.get(workspaceId, name) as Row | undefined;
    return r ? appFromRow(r) : null;
  }
  findApp(appId: string): AppRecord | null {
    const r = this.stmts.appById.get(appId) as Row | undefined;
    return r ? appFromRow(r) : null;
  }
  insertApp(app: AppRecord): void {
    this.stmts.insertApp.run(app.appId, app.workspaceId, app.name, app.createdAt);
  }
  setAppWarmPoolSize(appId: string, size: number | null): void {
    this.sql("UPDATE apps SET warm_pool_size = ? WHERE app_id = ?").run(size, appId);
  }

  insertSandbox(sb: SandboxRecord): void {
    this.stmts.insertSandbox.run({ ...sb, spec: JSON.stringify(sb.spec), tags: JSON.stringify(sb.tags) });
  }
  getSandbox(sandboxId: string): SandboxRecord | null {
    const r = this.stmts.sandboxById.get(sandboxId) as Row | undefined;
    return r ? sandboxFromRow(r) : null;
  }
  sandboxWorkspaceId(sandboxId: string): string | null {
    const r = this.stmts.sandboxWorkspace.get(sandboxId) as { workspace_id: string } | undefined;
    return r?.workspace_id ?? null;
  }
  listActiveSandboxes(
    filter: { workspaceId?: string; appId?: string; afterId?: string; limit?: number } = {},
  ): SandboxRecord[] {
    const where = ["state != 'finished'"];
    const args: unknown[] = [];
    if (filter.workspaceId !== undefined) {
      where.push("app_id IN (SELECT app_id FROM apps WHERE workspace_id = ?)");
      args.push(filter.workspaceId);
    }
    if (filter.appId !== undefined) {
      where.push("app_id = ?");
      args.push(filter.appId);
    }
    if (filter.afterId !== undefined) {
      where.push("sandbox_id > ?");
      args.push(filter.afterId);
    }
    const limit = filter.limit ?? -1;
    const rows = this
      .sql(`SELECT * FROM sandboxes WHERE ${where.join(" AND ")} ORDER BY sandbox_id LIMIT ${limit}`)
      .all(...args) as Row[];
    return rows.map(sandboxFromRow);
  }
  findActiveByName(appId: string, name: string): SandboxRecord | null {
    const r = this.stmts.activeByName.get(appId, name) as Row | undefined;
    return r ? sandboxFromRow(r) : null;
  }
  updateSandbox(sandboxId: string, patch: Parameters<Store["updateSandbox"]>[1]): void {
    const sets: string[] = [];
    const args: unknown[] = [];
    for (const [key, value] of Object.entries(patch)) {
      const column = SANDBOX_COLUMNS[key];
      if (column === undefined || value === undefined) continue;
      sets.push(`${column} = ?`);
      args.push(key === "tags" ? JSON.stringify(value) : value);
    }
    if (sets.length === 0) return;
    this.sql(`UPDATE sandboxes SET ${sets.join(", ")} WHERE sandbox_id = ?`).run(...args, sandboxId);
  }

  insertEvent(e: EventRecord): void {
    this.stmts.insertEvent.run(e.sandboxId, e.type, e.at, e.reason, e.returncode);
  }
  listEvents(sandboxId: string): EventRecord[] {
    return (this.stmts.events.all(sandboxId) as Row[]).map((r) => ({
      sandboxId: r.sandbox_id as string,
      type: r.type as EventRecord["type"],
      at: r.at as string,
      reason: (r.reason as string | null) ?? null,
      returncode: (r.returncode as number | null) ?? null,
    }));
  }

  insertExec(e: ExecRecord): void {
    this.stmts.insertExec.run(e.execId, e.sandboxId, JSON.stringify(e.argv), e.createdAt, e.returncode, e.reason, e.finishedAt);
  }
  getExec(sandboxId: string, execId: string): ExecRecord | null {
    const r = this.stmts.execById.get(sandboxId, execId) as Row | undefined;
    return r ? execFromRow(r) : null;
  }
  listRunningExecs(sandboxId: string): ExecRecord[] {
    return (this.stmts.runningExecs.all(sandboxId) as Row[]).map(execFromRow);
  }
  finishExec(sandboxId: string, execId: string, returncode: number, reason: string, finishedAt: string): void {
    this.stmts.finishExec.run(returncode, reason, finishedAt, sandboxId, execId);
  }

  insertSecret(sec: SecretRecord): void {
    this
      .sql("INSERT INTO secrets (workspace_id, name, keys, sealed, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(sec.workspaceId, sec.name, JSON.stringify(sec.keys), sec.sealed, sec.createdAt);
  }
  replaceSecret(sec: SecretRecord): void {
    this
      .sql("INSERT OR REPLACE INTO secrets (workspace_id, name, keys, sealed, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(sec.workspaceId, sec.name, JSON.stringify(sec.keys), sec.sealed, sec.createdAt);
  }
  getSecret(workspaceId: string, name: string): SecretRecord | null {
    const r = this.sql("SELECT * FROM secrets WHERE workspace_id = ? AND name = ?").get(workspaceId, name) as Row | undefined;
    return r ? secretFromRow(r) : null;
  }
  listSecrets(workspaceId: string): SecretRecord[] {
    return (this.sql("SELECT * FROM secrets WHERE workspace_id = ? ORDER BY name").all(workspaceId) as Row[]).map(secretFromRow);
  }
  deleteSecret(workspaceId: string, name: string): boolean {
    return this.sql("DELETE FROM secrets WHERE workspace_id = ? AND name = ?").run(workspaceId, name).changes > 0;
  }

  insertVolume(v: VolumeRecord): void {
    this
      .sql("INSERT INTO volumes (volume_id, workspace_id, name, ephemeral, created_at) VALUES (?, ?, ?, ?, ?)")
      .run(v.volumeId, v.workspaceId, v.name, v.ephemeral ? 1 : 0, v.createdAt);
  }
  getVolume(volumeId: string): VolumeRecord | null {
    const r = this.sql("SELECT * FROM volumes WHERE volume_id = ?").get(volumeId) as Row | undefined;
    return r ? volumeFromRow(r) : null;
  }
  findVolumeByName(workspaceId: string, name: string): VolumeRecord | null {
    const r = this.sql("SELECT * FROM volumes WHERE workspace_id = ? AND name = ?").get(workspaceId, name) as Row | undefined;
    return r ? volumeFromRow(r) : null;
  }
  listVolumes(workspaceId: string): VolumeRecord[] {
    return (
      this.sql("SELECT * FROM volumes WHERE workspace_id = ? ORDER BY created_at, volume_id").all(workspaceId) as Row[]
    ).map(volumeFromRow);
  }
  deleteVolume(volumeId: string): void {
    this.sql("DELETE FROM sandbox_volumes WHERE volume_id = ?").run(volumeId);
    this.sql("DELETE FROM volumes WHERE volume_id = ?").run(volumeId);
  }
  attachVolumes(sandboxId: string, volumeIds: string[]): void {
    if (volumeIds.length === 0) return;
    const stmt = this.sql("INSERT OR IGNORE INTO sandbox_volumes (sandbox_id, volume_id) VALUES (?, ?)");
    for (const v of volumeIds) stmt.run(sandboxId, v);
  }
  activeSandboxesUsingVolume(volumeId: string): string[] {
    return (
      this
        .sql(
          `SELECT s.sandbox_id FROM sandbox_volumes sv JOIN sandboxes s ON s.sandbox_id = sv.sandbox_id
           WHERE sv.volume_id = ? AND s.state != 'finished'`,
        )
        .all(volumeId) as Row[]
    ).map((r) => r.sandbox_id as string);
  }
  volumesOfSandbox(sandboxId: string): string[] {
    return (this.sql("SELECT volume_id FROM sandbox_volumes WHERE sandbox_id = ?").all(sandboxId) as Row[]).map(
      (r) => r.volume_id as string,
    );
  }

  grantImage(workspaceId: string, imageId: string): void {
    this
      .sql("INSERT OR IGNORE INTO image_grants (workspace_id, image_id, granted_at) VALUES (?, ?, ?)")
      .run(workspaceId, imageId, new Date().toISOString());
  }
  hasImageGrant(workspaceId: string, imageId: string): boolean {
    return this.sql("SELECT 1 FROM image_grants WHERE workspace_id = ? AND image_id = ?").get(workspaceId, imageId) !== undefined;
  }
  imageGrants(workspaceId: string): string[] {
    return (this.sql("SELECT image_id FROM image_grants WHERE workspace_id = ?").all(workspaceId) as Row[]).map(
      (r) => r.image_id as string,
    );
  }
  allGrantedImages(): string[] {
    return (this.sql("SELECT DISTINCT image_id FROM image_grants").all() as Row[]).map((r) => r.image_id as string);
  }
  revokeImage(workspaceId: string, imageId: string): void {
    this.sql("DELETE FROM image_grants WHERE workspace_id = ? AND image_id = ?").run(workspaceId, imageId);
  }

  close(): void {
    this.db.close();
  }
}
