// Apps: named groups of sandboxes. Looked up by name, created on request.
import { NotFoundError } from "./errors.js";
import { newId } from "./ids.js";
import type { AppRecord, Scope, Store } from "./ports.js";
import { checkName, enforce } from "./validate.js";

export class AppService {
  constructor(private readonly store: Store) {}

  lookup(scope: Scope, name: string, createIfMissing: boolean): AppRecord {
    enforce([{ field: "name", problem: checkName(name) }]);
    return this.store.transaction(() => {
      const found = this.store.findAppByName(scope.workspaceId, name);
      if (found) return found;
      if (!createIfMissing) {
        throw new NotFoundError(`app "${name}" does not exist; pass createIfMissing: true to create it`);
      }
      const app: AppRecord = { appId: newId("ap"), workspaceId: scope.workspaceId, name, createdAt: new Date().toISOString() };
      this.store.insertApp(app);
      return app;
    });
  }

  /** How many sandboxes of each shape the app keeps warm; null: the server's default. */
  setWarmPoolSize(scope: Scope, appId: string, size: number | null): AppRecord {
    this.get(scope, appId);
    this.store.setAppWarmPoolSize(appId, size);
    return this.get(scope, appId);
  }

  get(scope: Scope, appId: string): AppRecord {
    const app = this.store.findApp(appId);
    if (!app || app.workspaceId !== scope.workspaceId) throw new NotFoundError(`app ${appId} does not exist`);
    return app;
  }
}
