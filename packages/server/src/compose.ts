// Wiring: builds the object graph from the config. The only file that knows
// every implementation; each part is handed the interfaces it needs.
import { chmod, mkdir, writeFile, rename } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { buildApi } from "./api/index.js";
import type { ServerConfig } from "./config.js";
import {
  AppService,
  InvalidArgumentError,
  NotFoundError,
  SandboxService,
  TokenService,
  UnauthenticatedError,
  UnavailableError,
  SbxServerError,
  type ImageService,
  type Store,
} from "./core/index.js";
import { createImageService } from "./images/index.js";
import { createLocalBackend } from "./runtime/index.js";
import { FileOutputReader } from "./runtime/index.js";
import { openSqliteStore } from "./store/index.js";

export const VERSION = "0.1.0";

export interface Composed {
  api: FastifyInstance;
  store: Store;
  sandboxes: SandboxService;
  /** The admin token when this start created it (first start of a data dir). */
  newAdminToken: string | null;
  close(): Promise<void>;
}

/** agent/build of this repository: packages/server/dist/compose.js → ../../../agent/build. */
export function defaultAgentDir(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), "../../../agent/build");
}

/** Image errors arrive from images/ with their own classes; core speaks SbxServerError. */
function translateImageErrors(images: ImageService): ImageService {
  return {
    async resolve(source, signal) {
      try {
        return await images.resolve(source, signal);
      } catch (err) {
        if (err instanceof SbxServerError || !(err instanceof Error)) throw err;
        const opts = { cause: err };
        switch (err.name) {
          case "ImageNotFoundError":
            throw new NotFoundError(err.message, opts);
          case "RegistryAuthError":
            throw new UnauthenticatedError(err.message, opts);
          case "ImageRefError":
          case "ImageConfigError":
            throw new InvalidArgumentError(err.message, opts);
          default:
            throw new UnavailableError(`image ${describe(source)}: ${err.message}`, opts);
        }
      }
    },
  };
}

function describe(source: Parameters<ImageService["resolve"]>[0]): string {
  return source.kind === "registry" ? source.ref : source.kind === "id" ? source.imageId : "debianSlim";
}

export async function compose(config: ServerConfig): Promise<Composed> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o711 });
  const log = (msg: string) => process.stderr.write(`sbx: ${msg}\n`);
  const store = openSqliteStore(join(config.dataDir, "sbx.db"));
  const images = createImageService({
    dataDir: config.dataDir,
    mirrors: config.registryMirrors,
    insecureRegistries: config.insecureRegistries,
    ...(config.baseCacheDir ? { baseCacheDir: config.baseCacheDir } : {}),
    log,
  });
  const backend = await createLocalBackend({
    dataDir: config.dataDir,
    agentDir: config.agentDir ?? defaultAgentDir(),
    ...(config.runtime ? { runtime: config.runtime } : {}),
    serverPort: config.listen.port,
    log,
  });
  const sandboxes = new SandboxService({
    store,
    backend,
    images: translateImageErrors(images),
    output: new FileOutputReader(config.dataDir),
    log,
  });
  const tokens = new TokenService(store);
  const apps = new AppService(store);
  const api = buildApi({ services: { apps, sandboxes, version: VERSION }, tokens, logger: config.logger ?? false });
  return {
    api,
    store,
    sandboxes,
    newAdminToken: tokens.ensureAdminToken(),
    async close() {
      sandboxes.close();
      await api.close();
      images.close();
      store.close();
    },
  };
}

/** Writes a file only its owner can read, atomically. */
export async function writePrivateFile(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
