// The sandboxes service: create, look up and list sandboxes.
import { App } from "./apps.js";
import { InvalidError } from "./errors.js";
import { HttpClient } from "./http.js";
import { Image, ImageService } from "./images.js";
import type { CallOptions } from "./process.js";
import { Probe } from "./probe.js";
import { Sandbox, checkArgv, checkTags, checkWorkdir } from "./sandbox.js";
import { Secret, checkEnv, resolveSecrets } from "./secrets.js";
import { Volume, resolveVolumes } from "./volumes.js";
import {
  LIMITS,
  NAME_PATTERN,
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
  /**
   * Terminate the sandbox (finish reason "idle-timeout") after this long
   * without activity: a running exec, a stdin write, an open tunnel connection.
   */
  idleTimeoutMs?: number;
  /** Absolute; created when the image lacks it. */
  workdir?: string;
  /** CPU cores reserved (request). */
  cpu?: number;
  /** CPU cores at most (cgroup limit). */
  cpuLimit?: number;
  /** Memory reserved (request), MiB. */
  memoryMiB?: number;
  /** Memory at most (cgroup limit), MiB: beyond it the OOM killer ends the process (137, reason "oom"). */
  memoryLimitMiB?: number;
  env?: Record<string, string>;
  /** Inline (secrets.fromObject) or named (secrets.fromName) secrets: environment variables of the sandbox. */
  secrets?: (Secret | Promise<Secret>)[];
  blockNetwork?: boolean;
  /** Unique among the app's running sandboxes: ^[A-Za-z0-9._-]+$, at most 64 characters. */
  name?: string;
  tags?: Record<string, string>;
  /** Show the image's build / pull log on stderr while it is made (see onLog). */
  verbose?: boolean;
  /** Receives the image's build / pull log while it is made, before the sandbox is created. */
  onLog?: (text: string) => void;
  /** Mount path (absolute) → volume, or a promise of one (e.g. an unawaited volumes.fromName()). */
  volumes?: Record<string, Volume | Promise<Volume>>;
  /** Passed to the server, which refuses it while it is not supported. */
  pty?: boolean;
  /** Passed to the server, which refuses ports while tunnels are not supported. */
  encryptedPorts?: number[];
  unencryptedPorts?: number[];
  h2Ports?: number[];
  /** Passed to the server, which refuses allowlists while they are not supported. */
  outboundCidrAllowlist?: string[];
  /** Alias of outboundCidrAllowlist. */
  cidrAllowlist?: string[];
  inboundCidrAllowlist?: string[];
  /** Probe.withTcp() or Probe.withExec(): records Ready once it succeeds; see sandbox.waitUntilReady(). */
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
  const { cidrAllowlist, outboundCidrAllowlist } = params;
  if (cidrAllowlist !== undefined && outboundCidrAllowlist !== undefined && JSON.stringify(cidrAllowlist) !== JSON.stringify(outboundCidrAllowlist)) {
    throw new InvalidError("give outboundCidrAllowlist or cidrAllowlist (its alias), not both");
  }
  if (params.tags !== undefined) checkTags(params.tags);
  const probe = params.readinessProbe;
  if (probe !== undefined && !(probe instanceof Probe)) throw new InvalidError("readinessProbe must be a Probe (from Probe.withTcp() or Probe.withExec())");
  const [imageSpec, secrets, volumes] = await Promise.all([image.toWire(), resolveSecrets(params.secrets), resolveVolumes(params.volumes)]);
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
    readinessProbe: probe?.toWire(),
    volumes,
    encryptedPorts: params.encryptedPorts,
    unencryptedPorts: params.unencryptedPorts,
    h2Ports: params.h2Ports,
    outboundCidrAllowlist: outboundCidrAllowlist ?? cidrAllowlist,
    inboundCidrAllowlist: params.inboundCidrAllowlist,
    pty: params.pty,
  };
}

/** The `tag` query of a list: repeated k=v pairs (the server splits at the first "=", so keys must not hold one). */
export function tagQuery(tags: Record<string, string> | undefined): string[] {
  if (tags === undefined) return [];
  checkTags(tags);
  return Object.entries(tags).map(([k, v]) => {
    if (k.includes("=")) throw new InvalidError(`cannot filter on tag key ${JSON.stringify(k)}: a key holding "=" cannot be told from its value`);
    return `${k}=${v}`;
  });
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
    const onLog = params.onLog ?? (params.verbose ? (text: string) => void process.stderr.write(text) : undefined);
    // With a log wanted, build (or pull) first through the build API, which streams it.
    if (onLog && resolved instanceof Image && resolved.imageId === undefined) await resolved.build(app, { onLog, signal: params.signal });
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
    for (const [what, v] of [["appName", appName], ["name", name]] as const) {
      if (typeof v !== "string" || v === "") throw new InvalidError(`${what} must be a non-empty string`);
    }
    const wire = await this.#http.json<WireSandbox>({
      method: "GET",
      path: `/v1/sandboxes/by-name/${encodeURIComponent(appName)}/${encodeURIComponent(name)}`,
      signal: opts.signal,
    });
    return new Sandbox(this.#http, wire, undefined);
  }

  /** The running sandboxes (of an app, having at least the given tags), page by page. */
  async *list(params: SandboxListParams = {}): AsyncGenerator<Sandbox, void, undefined> {
    const tag = tagQuery(params.tags);
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
