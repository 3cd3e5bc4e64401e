// @sbx/server: the sbx daemon. `startServer` is what `sbx serve` runs.
import { join } from "node:path";
import { compose, writePrivateFile, VERSION } from "./compose.js";
import type { ServerConfig } from "./config.js";

export type { ServerConfig } from "./config.js";
export { DEFAULT_PORT } from "./config.js";
export { VERSION } from "./compose.js";
export { buildOpenApi, PUBLIC_ROUTES, registeredRoutes } from "./api/index.js";
export { compose } from "./compose.js";
/** The host-wide Debian base rootfs tar (built once); benchmarks and tests run baselines on it. */
export { ensureBaseRootfsTar } from "./images/index.js";

export interface RunningServer {
  url: string;
  /** Set on the first start of a data dir only; also written to <data-dir>/admin-token. */
  adminToken: string | null;
  /** Stops serving. Sandboxes keep running and are adopted by the next server. */
  close(): Promise<void>;
}

export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const c = await compose(config);
  const recovered = await c.sandboxes.recover();
  if (recovered.adopted + recovered.lost > 0) {
    process.stderr.write(`sbx: adopted ${recovered.adopted} running sandbox(es); ${recovered.lost} had ended\n`);
  }
  await c.api.listen({ host: config.listen.host, port: config.listen.port });
  const addr = c.api.server.address();
  const port = typeof addr === "object" && addr ? addr.port : config.listen.port;
  const host = config.listen.host.includes(":") ? `[${config.listen.host}]` : config.listen.host;
  const url = `http://${host}:${port}`;
  if (c.newAdminToken !== null) {
    // The token is shown once: here and in these two files. Only its hash is stored.
    await writePrivateFile(join(config.dataDir, "admin-token"), `${c.newAdminToken}\n`);
    if (config.clientConfigPath) {
      await writePrivateFile(config.clientConfigPath, JSON.stringify({ serverUrl: url, token: c.newAdminToken }, null, 2) + "\n");
    }
  }
  return { url, adminToken: c.newAdminToken, close: () => c.close() };
}

export const version = VERSION;
