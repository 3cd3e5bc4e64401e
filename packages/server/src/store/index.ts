// store/: persistence behind core's Store interface. The embedded default is
// SQLite (one file in the data dir, versioned migrations); a PostgreSQL store
// for several API servers would implement the same interface.
export { openSqliteStore, StoreMigrationError } from "./sqlite-store.js";
export { MIGRATIONS, type Migration } from "./migrations.js";
