// Apps: named groups of sandboxes.
import { HttpClient } from "./http.js";
import type { CallOptions } from "./process.js";
import type { App as WireApp, AppLookupRequest } from "./wire.js";

export class App {
  readonly appId: string;
  readonly name: string;

  /** @internal Use apps.fromName(). */
  constructor(wire: Pick<WireApp, "appId" | "name">) {
    this.appId = wire.appId;
    this.name = wire.name;
  }
}

export interface AppFromNameParams extends CallOptions {
  /** Create the app when there is none of that name (else NotFoundError). */
  createIfMissing?: boolean;
}

export class AppService {
  readonly #http: HttpClient;

  /** @internal */
  constructor(http: HttpClient) {
    this.#http = http;
  }

  /** Looks an app up by name; NotFoundError when missing unless createIfMissing. */
  async fromName(name: string, params: AppFromNameParams = {}): Promise<App> {
    const body: AppLookupRequest = { name, createIfMissing: params.createIfMissing ?? false };
    const app = await this.#http.json<WireApp>({ method: "POST", path: "/v1/apps/lookup", body, signal: params.signal });
    return new App(app);
  }

  /**
   * How many sandboxes of each shape (image, resources, network mode) this
   * app keeps started and idle, so that creates of that shape start at once;
   * null returns to the server's default (`sbx serve --warm-pool`).
   */
  async setWarmPoolSize(app: App, size: number | null, opts: CallOptions = {}): Promise<void> {
    await this.#http.json<WireApp>({
      method: "PUT",
      path: `/v1/apps/${encodeURIComponent(app.appId)}/warm-pool`,
      body: { size },
      signal: opts.signal,
    });
  }
}
