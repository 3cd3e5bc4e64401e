// Versioned schema migrations. Each runs once, in order, in a transaction;
// the applied version is SQLite's user_version. Never edit a shipped
// migration: add the next one.
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "tokens, apps, sandboxes, events, execs",
    sql: `
      CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE apps (
        app_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
      );
      CREATE TABLE sandboxes (
        sandbox_id TEXT PRIMARY KEY,
        app_id TEXT NOT NULL REFERENCES apps(app_id),
        name TEXT,
        state TEXT NOT NULL CHECK (state IN ('created','scheduled','started','finished')),
        spec TEXT NOT NULL,
        image_id TEXT,
        returncode INTEGER,
        finish_reason TEXT,
        tags TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        deadline_at INTEGER NOT NULL,
        finished_at TEXT
      );
      -- A name is unique among the running sandboxes of an app only.
      CREATE UNIQUE INDEX sandboxes_active_name ON sandboxes(app_id, name)
        WHERE name IS NOT NULL AND state != 'finished';
      CREATE INDEX sandboxes_active ON sandboxes(state, sandbox_id);
      CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        sandbox_id TEXT NOT NULL REFERENCES sandboxes(sandbox_id),
        type TEXT NOT NULL,
        at TEXT NOT NULL,
        reason TEXT,
        returncode INTEGER
      );
      CREATE INDEX events_sandbox ON events(sandbox_id, seq);
      CREATE TABLE execs (
        exec_id TEXT NOT NULL,
        sandbox_id TEXT NOT NULL REFERENCES sandboxes(sandbox_id),
        argv TEXT NOT NULL,
        created_at TEXT NOT NULL,
        returncode INTEGER,
        reason TEXT,
        finished_at TEXT,
        PRIMARY KEY (sandbox_id, exec_id)
      );
    `,
  },
  {
    version: 2,
    description: "readiness, secrets (encrypted), volumes and their mounts",
    sql: `
      ALTER TABLE sandboxes ADD COLUMN ready_at TEXT;
      CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        keys TEXT NOT NULL,
        sealed BLOB NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE TABLE volumes (
        volume_id TEXT PRIMARY KEY,
        name TEXT UNIQUE,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
      );
      CREATE TABLE sandbox_volumes (
        sandbox_id TEXT NOT NULL REFERENCES sandboxes(sandbox_id),
        volume_id TEXT NOT NULL REFERENCES volumes(volume_id),
        PRIMARY KEY (sandbox_id, volume_id)
      );
      CREATE INDEX sandbox_volumes_volume ON sandbox_volumes(volume_id);
    `,
  },
  {
    version: 3,
    description: "tokens become sbx_<id>_<secret> with the secret's hash stored: earlier tokens cannot be converted",
    // Dropping them makes the server mint a new admin token on this start and
    // write it to <data-dir>/admin-token and the client config, as on a first start.
    sql: `DELETE FROM tokens;`,
  },
  {
    version: 4,
    description: "workspaces: tokens, apps, secrets, volumes and images belong to one; names are unique within it",
    sql: `
      CREATE TABLE workspaces (
        workspace_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
      );
      INSERT INTO workspaces (workspace_id, name, created_at)
        VALUES ('ws-default', 'default', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

      ALTER TABLE tokens ADD COLUMN workspace_id TEXT NOT NULL DEFAULT 'ws-default' REFERENCES workspaces(workspace_id);
      ALTER TABLE tokens ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
      UPDATE tokens SET admin = 1 WHERE name = 'admin';

      CREATE TABLE apps_v4 (
        app_id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (workspace_id, name)
      );
      INSERT INTO apps_v4 SELECT app_id, 'ws-default', name, created_at FROM apps;
      DROP TABLE apps;
      ALTER TABLE apps_v4 RENAME TO apps;

      CREATE TABLE secrets_v4 (
        workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
        name TEXT NOT NULL,
        keys TEXT NOT NULL,
        sealed BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (workspace_id, name)
      );
      INSERT INTO secrets_v4 SELECT 'ws-default', name, keys, sealed, created_at FROM secrets;
      DROP TABLE secrets;
      ALTER TABLE secrets_v4 RENAME TO secrets;

      CREATE TABLE volumes_v4 (
        volume_id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
        name TEXT,
        ephemeral INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        UNIQUE (workspace_id, name)
      );
      INSERT INTO volumes_v4 SELECT volume_id, 'ws-default', name, ephemeral, created_at FROM volumes;
      DROP TABLE volumes;
      ALTER TABLE volumes_v4 RENAME TO volumes;

      -- Images are content-addressed and shared on disk; which workspace may
      -- use which image is recorded here.
      CREATE TABLE image_grants (
        workspace_id TEXT NOT NULL REFERENCES workspaces(workspace_id),
        image_id TEXT NOT NULL,
        granted_at TEXT NOT NULL,
        PRIMARY KEY (workspace_id, image_id)
      );
    `,
  },
  {
    version: 5,
    description: "warm pools: a pooled sandbox's sealed env, an app's pool size",
    sql: `
      ALTER TABLE sandboxes ADD COLUMN sealed_env BLOB;
      ALTER TABLE apps ADD COLUMN warm_pool_size INTEGER;
    `,
  },
];
