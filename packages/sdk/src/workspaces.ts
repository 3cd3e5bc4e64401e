// Workspaces (admin): the unit of tenancy. Each token belongs to one, and a
// client sees only its own workspace's apps, sandboxes, secrets, volumes and
// images. These calls need the admin token; tokens are shown once.
import type { HttpClient } from "./http.js";
import type { CallOptions } from "./process.js";
import type { TokenCreated, Workspace, WorkspaceCreated, WorkspaceList } from "./wire.js";

export class WorkspaceService {
  readonly #http: HttpClient;

  /** @internal */
  constructor(http: HttpClient) {
    this.#http = http;
  }

  /** Creates a workspace; returns it with its first token (keep it: it is not shown again). */
  async create(name: string, opts: CallOptions = {}): Promise<WorkspaceCreated> {
    return this.#http.json<WorkspaceCreated>({ method: "POST", path: "/v1/workspaces", body: { name }, signal: opts.signal });
  }

  async list(opts: CallOptions = {}): Promise<Workspace[]> {
    return (await this.#http.json<WorkspaceList>({ method: "GET", path: "/v1/workspaces", signal: opts.signal })).workspaces;
  }

  /** Another token for a workspace, e.g. to rotate one. */
  async createToken(workspace: string, tokenName: string, opts: CallOptions = {}): Promise<string> {
    const res = await this.#http.json<TokenCreated>({
      method: "POST",
      path: `/v1/workspaces/${encodeURIComponent(workspace)}/tokens`,
      body: { name: tokenName },
      signal: opts.signal,
    });
    return res.token;
  }
}
