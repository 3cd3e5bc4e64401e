// Workspaces: the unit of tenancy. Every token belongs to one, and a caller
// sees and touches only its own workspace's apps, sandboxes, secrets,
// volumes and images; another workspace's objects are answered exactly as
// missing ones are (no existence oracle). Only admin tokens manage them.
import { AlreadyExistsError, NotFoundError, UnauthenticatedError } from "./errors.js";
import { newId } from "./ids.js";
import type { Scope, Store, WorkspaceRecord } from "./ports.js";
import type { TokenService } from "./tokens.js";
import { checkName, enforce } from "./validate.js";

export class WorkspaceService {
  constructor(
    private readonly store: Store,
    private readonly tokens: TokenService,
  ) {}

  /** Creates a workspace and its first token (returned once). */
  create(scope: Scope, name: string): { workspace: WorkspaceRecord; token: string } {
    requireAdmin(scope);
    enforce([{ field: "name", problem: checkName(name) }]);
    return this.store.transaction(() => {
      if (this.store.findWorkspaceByName(name)) throw new AlreadyExistsError(`workspace "${name}" already exists`);
      const workspace: WorkspaceRecord = { workspaceId: newId("ws"), name, createdAt: new Date().toISOString() };
      this.store.insertWorkspace(workspace);
      return { workspace, token: this.tokens.create(workspace.workspaceId, `${name}-1`) };
    });
  }

  list(scope: Scope): WorkspaceRecord[] {
    requireAdmin(scope);
    return this.store.listWorkspaces();
  }

  /** Another token for a workspace (e.g. to rotate the first one). */
  createToken(scope: Scope, workspaceName: string, tokenName: string): string {
    requireAdmin(scope);
    enforce([{ field: "name", problem: checkName(tokenName) }]);
    const ws = this.store.findWorkspaceByName(workspaceName);
    if (!ws) throw new NotFoundError(`workspace "${workspaceName}" does not exist`);
    return this.tokens.create(ws.workspaceId, tokenName);
  }
}

function requireAdmin(scope: Scope): void {
  // Same answer as a bad token: a workspace token learns nothing about others.
  if (!scope.admin) throw new UnauthenticatedError("this token cannot manage workspaces; use the admin token");
}
