// Wiring: builds the object graph from the config. The only file that knows
// every implementation; each part is handed the interfaces it needs.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, writeFile, rename } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyInstance } from "fastify";
import { buildApi } from "./api/index.js";
import type { ServerConfig } from "./config.js";
import { useHostSpawner } from "./host-spawner.js";
import {
  Admission,
  WarmPools,
  AppService,
  WorkspaceService,
  BuildService,
  SecretService,
  VolumeService,
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
import { createLocalBackend, LocalVolumeStorage } from "./runtime/index.js";
import { FileOutputReader } from "./runtime/index.js";
import { openSqliteStore } from "./store/index.js";
import { parseUpstream } from "./net/index.js";

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
    async resolve(source, signal, opts) {
      try {
        return await images.resolve(source, signal, opts);
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
  return source.kind === "registry" ? source.ref : source.kind === "id" ? source.imageId : source.kind;
}

export async function compose(config: ServerConfig): Promise<Composed> {
  await mkdir(config.dataDir, { recursive: true, mode: 0o711 });
  const log = (msg: string) => process.stderr.write(`sbx: ${msg}\n`);
  const agentDir = config.agentDir ?? defaultAgentDir();
  // Host tools (runc, mount, ip, …) are started by a small helper, not by forking this process.
  // SBX_HOST_SPAWNER=0: fork the server for each tool instead (for comparison and as an escape hatch).
  const releaseSpawner = process.env.SBX_HOST_SPAWNER === "0" ? () => undefined : await useHostSpawner(join(agentDir, "sbx-agent"), log);
  const store = openSqliteStore(join(config.dataDir, "sbx.db"));
  const images = createImageService({
    dataDir: config.dataDir,
    ...(config.faultInjection?.killAtStep === "unpack" ? { faultInjection: { killAtStep: "unpack" } } : {}),
    mirrors: config.registryMirrors,
    insecureRegistries: config.insecureRegistries,
    ...(config.baseCacheDir ? { baseCacheDir: config.baseCacheDir } : {}),
    log,
  });
  const backend = await createLocalBackend({
    dataDir: config.dataDir,
    agentDir,
    ...(config.runtime ? { runtime: config.runtime } : {}),
    serverPort: config.listen.port,
    ...(config.dnsUpstreams?.length ? { dnsUpstreams: config.dnsUpstreams.map(parseUpstream) } : {}),
    // Crash tests only: the server SIGKILLs itself at a named create step.
    ...(config.faultInjection?.killAtStep && config.faultInjection.killAtStep !== "unpack"
      ? { faultInjection: { killAtStep: config.faultInjection.killAtStep } }
      : {}),
    log,
  });
  const secrets = new SecretService(store, await secretsKey(config.dataDir));
  const volumes = new VolumeService(store, new LocalVolumeStorage(config.dataDir));
  // Builds wrap the image store: sandboxes get plain images and built ones through it.
  const builds = new BuildService({
    images,
    backend,
    output: new FileOutputReader(config.dataDir),
    sandboxImages: () => store.listActiveSandboxes().flatMap((r) => (r.imageId ? [r.imageId] : [])),
    grants: {
      grant: (ws, id) => store.grantImage(ws, id),
      has: (ws, id) => store.hasImageGrant(ws, id),
      list: (ws) => store.imageGrants(ws),
      revoke: (ws, id) => store.revokeImage(ws, id),
      all: () => store.allGrantedImages(),
    },
    log,
  });
  const sandboxImages = translateImageErrors(builds);
  const pools = new WarmPools({
    backend,
    images: sandboxImages,
    sizeFor: (appId) => store.findApp(appId)?.warmPoolSize ?? config.warmPoolSize ?? 0,
    log,
  });
  const sandboxes = new SandboxService({
    store,
    backend,
    images: sandboxImages,
    output: new FileOutputReader(config.dataDir),
    secrets,
    volumes,
    admission: new Admission(capacityOf(config)),
    pools,
    log,
  });
  const tokens = new TokenService(store);
  const apps = new AppService(store);
  const api = buildApi({
    services: { apps, sandboxes, secrets, volumes, builds, workspaces: new WorkspaceService(store, tokens), version: VERSION },
    tokens,
    logger: config.logger ?? false,
  });
  return {
    api,
    store,
    sandboxes,
    newAdminToken: tokens.ensureAdminToken(),
    async close() {
      await api.close(); // no new requests first
      await sandboxes.close();
      await pools.close();
      await backend.close?.();
      builds.close();
      images.close();
      store.close();
      releaseSpawner();
    },
  };
}

/**
 * Sandbox reservations are requests, not limits, so the defaults overcommit:
 * 32 default-sized (0.125 core) sandboxes per core, and 4× the host's memory
 * in 128 MiB reservations.
 */
function capacityOf(config: ServerConfig): { cpu: number; memoryBytes: number; queueLimit: number } {
  return {
    cpu: config.capacity?.cpu ?? availableParallelism() * 32,
    memoryBytes: (config.capacity?.memoryMiB ?? Math.floor((totalmem() * 4) / 1024 / 1024)) * 1024 * 1024,
    queueLimit: config.capacity?.queueLimit ?? 100,
  };
}

/** The key secrets are encrypted with: 32 random bytes in the data dir, made on first start. */
async function secretsKey(dataDir: string): Promise<Buffer> {
  const path = join(dataDir, "secrets.key");
  try {
    const key = await readFile(path);
    if (key.length !== 32) throw new Error(`${path} must hold exactly 32 bytes (it has ${key.length})`);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    const key = randomBytes(32);
    await writeFile(path, key, { mode: 0o600, flag: "wx" });
    return key;
  }
}

/** Writes a file only its owner can read, atomically. */
export async function writePrivateFile(path: string, content: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, content, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
