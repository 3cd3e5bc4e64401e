// SbxClient: the entry point of the SDK.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { AppService } from "./apps.js";
import { InvalidError } from "./errors.js";
import { HttpClient } from "./http.js";
import { ImageService } from "./images.js";
import { SandboxService } from "./sandboxes.js";
import { SecretService } from "./secrets.js";
import { VolumeService } from "./volumes.js";
import { WorkspaceService } from "./workspaces.js";

export const DEFAULT_SERVER_URL = "http://127.0.0.1:7423";

export interface SbxClientOptions {
  /** Default: $SBX_SERVER_URL, then the config file, then http://127.0.0.1:7423. */
  serverUrl?: string;
  /** Default: $SBX_TOKEN, then the config file. */
  token?: string;
  /** Deadline of a unary call (default 60 000). Long polls and sandbox creation allow more. */
  timeoutMs?: number;
  /** Deadline for a stream's reply headers (default 10 000). */
  connectTimeoutMs?: number;
  /** Retries of a safe call after a connection error or 502/503/504 (default 4). */
  maxRetries?: number;
  /** Default: $SBX_CONFIG, then ~/.config/sbx/config.json. */
  configPath?: string;
}

interface ConfigFile {
  serverUrl?: string;
  token?: string;
}

function readConfig(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new InvalidError(`cannot read the sbx config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new InvalidError(`the sbx config file ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (parsed === null || typeof parsed !== "object") throw new InvalidError(`the sbx config file ${path} must hold a JSON object`);
  const { serverUrl, token } = parsed as Record<string, unknown>;
  return {
    serverUrl: typeof serverUrl === "string" ? serverUrl : undefined,
    token: typeof token === "string" ? token : undefined,
  };
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new InvalidError(`${name} must be a positive number (got ${value})`);
  return value;
}

export class SbxClient {
  readonly apps: AppService;
  readonly images: ImageService;
  readonly sandboxes: SandboxService;
  readonly secrets: SecretService;
  readonly volumes: VolumeService;
  /** Admin only: workspaces and their tokens. */
  readonly workspaces: WorkspaceService;
  /** The server this client talks to. */
  readonly serverUrl: string;
  readonly #http: HttpClient;

  constructor(options: SbxClientOptions = {}) {
    const env = process.env;
    let serverUrl = options.serverUrl ?? (env.SBX_SERVER_URL || undefined);
    let token = options.token ?? (env.SBX_TOKEN || undefined);
    if (serverUrl === undefined || token === undefined) {
      const file = readConfig(options.configPath ?? (env.SBX_CONFIG || join(homedir(), ".config", "sbx", "config.json")));
      serverUrl ??= file.serverUrl;
      token ??= file.token;
    }
    this.serverUrl = serverUrl ?? DEFAULT_SERVER_URL;
    this.#http = new HttpClient({
      serverUrl: this.serverUrl,
      token,
      timeoutMs: positive("timeoutMs", options.timeoutMs, 60_000),
      connectTimeoutMs: positive("connectTimeoutMs", options.connectTimeoutMs, 10_000),
      maxRetries: options.maxRetries ?? 4,
    });
    this.apps = new AppService(this.#http);
    this.images = new ImageService(this.#http);
    this.secrets = new SecretService(this.#http);
    this.sandboxes = new SandboxService(this.#http, this.images);
    this.volumes = new VolumeService(this.#http);
    this.workspaces = new WorkspaceService(this.#http);
  }

  /** Aborts every call in flight; later calls throw ClientClosedError. */
  close(): void {
    this.#http.close();
  }
}
