// The sandboxes service: create, look up and list sandboxes.
import { App } from "./apps.js";
import { InvalidError, NotFoundError } from "./errors.js";
import { HttpClient } from "./http.js";
import { Image, ImageService } from "./images.js";
import type { CallOptions } from "./process.js";
import { Probe } from "./probe.js";
import { Sandbox, checkArgv, checkWorkdir, unsupported } from "./sandbox.js";
import { Secret, checkEnv, resolveSecrets } from "./secrets.js";
import {
  LIMITS,
  NAME_PATTERN,
  type App as WireApp,
  type Sandbox as WireSandbox,
  type SandboxCreateRequest,
  type SandboxList,
} from "./wire.js";

const NAME = new RegExp(NAME_PATTERN);

/** Creating a sandbox may pull an image: its reply may take this long. */
const CREATE_TIMEOUT_MS = 15 * 60 * 1000;

export interface SandboxCreateParams extends CallOptions {
  /** The entrypoint: argv of the sandbox's main process (see sandbox.stdout). */
  command?: string[];
  /** Alias of `command`. */
  entrypoint?: string[];
  /** Lifetime: default 300 000 (5 min), at most 24 h, a positive multiple of 1000. */
  timeoutMs?: number;
  idleTimeoutMs?: number;
  /** Absolute; created when the image lacks it. */
  workdir?: string;
  cpu?: number;
  cpuLimit?: number;
  memoryMiB?: number;
  memoryLimitMiB?: number;
  env?: Record<string, string>;
  secrets?: (Secret | Promise<Secret>)[];
  blockNetwork?: boolean;
  /** Unique among the app's running sandboxes: ^[A-Za-z0-9._-]+$, at most 64 characters. */
  name?: string;
  tags?: Record<string, string>;
  /** Build output (no effect yet: images are not built). */
  verbose?: boolean;
  /** Not supported yet. */
  volumes?: Record<string, unknown>;
  /** Not supported yet. */
  pty?: boolean;
  /** Not supported yet. */
  encryptedPorts?: number[];
  /** Not supported yet. */
  unencryptedPorts?: number[];
  /** Not supported yet. */
  h2Ports?: number[];
  /** Not supported yet. */
  outboundCidrAllowlist?: string[];
  /** Alias of outboundCidrAllowlist. Not supported yet. */
  cidrAllowlist?: string[];
  /** Not supported yet. */
  inboundCidrAllowlist?: string[];
  /** Not supported yet. */
  readinessProbe?: Probe;
}

export interface SandboxListParams extends CallOptions {
  appId?: string;
  /** Matches sandboxes having at least these tags. */
  tags?: Record<string, string>;
}

function nonEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false) return false;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") return Object.keys(v).length > 0;
  return true;
}

/** Builds the create request; cheap checks only, the server is the authority. */
async function createRequest(app: App, image: Image, params: SandboxCreateParams): Promise<SandboxCreateRequest> {
  if (!app || typeof app.appId !== "string") throw new InvalidError("app must be an App (from apps.fromName())");
  if (!(image instanceof Image)) throw new InvalidError("image must be an Image (from images.fromRegistry(), debianSlim() or fromId())");
  const { command, entrypoint } = params;
  if (command !== undefined && entrypoint !== undefined && JSON.stringify(command) !== JSON.stringify(entrypoint)) {
    throw new InvalidError("give command or entrypoint (its alias), not both");
  }
  const argv = command ?? entrypoint;
  if (argv !== undefined) checkArgv(argv, command !== undefined ? "command" : "entrypoint");
  const { timeoutMs, idleTimeoutMs } = params;
  if (timeoutMs !== undefined) {
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs % 1000 !== 0) {
      throw new InvalidError(`timeoutMs must be a positive multiple of 1000 (got ${timeoutMs})`);
    }
    if (timeoutMs > LIMITS.maxTimeoutMs) throw new InvalidError(`timeoutMs must be at most ${LIMITS.maxTimeoutMs} (24 h) (got ${timeoutMs})`);
  }
  if (idleTimeoutMs !== undefined && (!Number.isInteger(idleTimeoutMs) || idleTimeoutMs <= 0)) {
    throw new InvalidError(`idleTimeoutMs must be a positive integer (got ${idleTimeoutMs})`);
  }
  checkWorkdir(params.workdir);
  if (params.env !== undefined) checkEnv(params.env, "env");
  if (params.name !== undefined && (typeof params.name !== "string" || !NAME.test(params.name) || params.name.length > LIMITS.maxNameLength)) {
    throw new InvalidError(`name must match ${NAME_PATTERN} and have at most ${LIMITS.maxNameLength} characters (got ${JSON.stringify(params.name)})`);
  }
  const networked = ["encryptedPorts", "unencryptedPorts", "h2Ports", "outboundCidrAllowlist", "cidrAllowlist", "inboundCidrAllowlist"] as const;
  if (params.blockNetwork) {
    const clash = networked.find((k) => nonEmpty(params[k]));
    if (clash) throw new InvalidError(`${clash} cannot be combined with blockNetwork`);
  }
  for (const key of [...networked, "volumes", "pty", "readinessProbe"] as const) {
    if (nonEmpty(params[key])) throw unsupported(key);
  }
  const [imageSpec, secrets] = await Promise.all([image.toWire(), resolveSecrets(params.secrets)]);
  return {
    appId: app.appId,
    image: imageSpec,
    command: argv ? [...argv] : undefined,
    timeoutMs,
    idleTimeoutMs,
    workdir: params.workdir,
    cpu: params.cpu,
    cpuLimit: params.cpuLimit,
    memoryMiB: params.memoryMiB,
    memoryLimitMiB: params.memoryLimitMiB,
    env: params.env,
    secrets,
    blockNetwork: params.blockNetwork,
    name: params.name,
    tags: params.tags,
  };
}

export class SandboxService {
  readonly #http: HttpClient;
  readonly #images: ImageService;

  /** @internal */
  constructor(http: HttpClient, images: ImageService) {
    this.#http = http;
    this.#images = images;
  }

  /**
   * Creates a sandbox and resolves once it started. Without an image the
   * sandbox runs images.debianSlim(). A sandbox that failed to start is
   * returned finished (finishReason "failed"); see sandbox.events().
   */
  async create(app: App, image?: Image | Promise<Image>, params: SandboxCreateParams = {}): Promise<Sandbox> {
    const resolved = (await image) ?? this.#images.debianSlim();
    const body = await createRequest(app, resolved, params);
    const wire = await this.#http.json<WireSandbox>({
      method: "POST",
      path: "/v1/sandboxes",
      body,
      timeoutMs: Math.max(CREATE_TIMEOUT_MS, this.#http.config.timeoutMs),
      signal: params.signal,
    });
    if (wire.imageId) resolved.imageId = wire.imageId;
    return new Sandbox(this.#http, wire, 0);
  }

  /** A handle on an existing sandbox; NotFoundError when there is none. */
  async fromId(sandboxId: string, opts: CallOptions = {}): Promise<Sandbox> {
    if (typeof sandboxId !== "string" || sandboxId === "") throw new InvalidError("sandboxId must be a non-empty string");
    const wire = await this.#http.json<WireSandbox>({
      method: "GET",
      path: `/v1/sandboxes/${encodeURIComponent(sandboxId)}`,
      signal: opts.signal,
    });
    return new Sandbox(this.#http, wire, undefined);
  }

  /** The running sandbox of that name in the app of that name; NotFoundError when there is none. */
  async fromName(appName: string, name: string, opts: CallOptions = {}): Promise<Sandbox> {
    const app = await this.#http.json<WireApp>({
      method: "POST",
      path: "/v1/apps/lookup",
      body: { name: appName, createIfMissing: false },
      signal: opts.signal,
    });
    for await (const sb of this.list({ appId: app.appId, signal: opts.signal })) {
      if (sb.name === name) return sb;
    }
    throw new NotFoundError(`no running sandbox named ${JSON.stringify(name)} in app ${JSON.stringify(appName)}`);
  }

  /** The running sandboxes (of an app, having at least the given tags), page by page. */
  async *list(params: SandboxListParams = {}): AsyncGenerator<Sandbox, void, undefined> {
    const tag = Object.entries(params.tags ?? {}).map(([k, v]) => `${k}=${v}`);
    let cursor: string | undefined;
    do {
      const page: SandboxList = await this.#http.json<SandboxList>({
        method: "GET",
        path: "/v1/sandboxes",
        query: { appId: params.appId, tag, cursor },
        signal: params.signal,
      });
      for (const wire of page.sandboxes) yield new Sandbox(this.#http, wire, undefined);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
  }
}
