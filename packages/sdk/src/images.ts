// Images: lazy descriptions of a root filesystem, resolved by the server when
// a sandbox is created (pulled, or built from Dockerfile instructions, once
// per recipe) or explicitly with image.build(). The image store itself
// (list, inspect, remove, prune) is on the images service.
import { App } from "./apps.js";
import { InvalidError, SbxError, errorFromWire } from "./errors.js";
import { HttpClient } from "./http.js";
import type { CallOptions } from "./process.js";
import { Secret, checkEnv, resolveSecrets } from "./secrets.js";
import { ResumableByteSource } from "./streams.js";
import { LIMITS, type ImageBuild, type ImageInfo, type ImageList, type ImageRemoveResult, type ImageSpec } from "./wire.js";

type ImageSource =
  | { kind: "registry"; ref: string; secret: Secret | Promise<Secret> | undefined }
  | { kind: "debianSlim"; pythonVersion: string | undefined }
  | { kind: "id"; imageId: string }
  | {
      kind: "dockerfile";
      base: Image;
      commands: string[];
      env: Record<string, string> | undefined;
      secrets: (Secret | Promise<Secret>)[] | undefined;
      forceBuild: boolean;
    };

const IMAGE_ID = /^sha256:[a-f0-9]{64}$/;

export interface DockerfileCommandsParams {
  /** Environment variables set in the image (like ENV) and seen by every RUN. */
  env?: Record<string, string>;
  /** Seen by RUN steps only, never stored in the image. Their key names are part of the build cache key. */
  secrets?: (Secret | Promise<Secret>)[];
  /** Build even when the server has this recipe cached. */
  forceBuild?: boolean;
}

export interface ImageBuildParams extends CallOptions {
  /** Receives the build's log (pull progress, each instruction, the output of RUN steps) as it happens. */
  onLog?: (text: string) => void;
}

export class Image {
  /** The content id (sha256:…) once known: after build(), or after a sandbox using the image started. */
  imageId: string | undefined;
  readonly #source: ImageSource;
  readonly #http: HttpClient | undefined;
  /** Set by build(): the server has this image under imageId. */
  #built = false;

  /** @internal Use the images service. */
  constructor(source: ImageSource, http?: HttpClient) {
    this.#source = source;
    this.#http = http;
    this.imageId = source.kind === "id" ? source.imageId : undefined;
  }

  /** @internal An image built from Dockerfile instructions (on the server) rather than pulled. */
  get isBuilt(): boolean {
    return this.#source.kind === "dockerfile";
  }

  /**
   * A new image: this one plus one layer built from Dockerfile instructions.
   * Supported: RUN (shell and exec form), ENV, ARG, WORKDIR, USER, SHELL,
   * CMD, ENTRYPOINT, COPY --from=<image>. Other instructions are refused by
   * the server before anything is built. Lazy: built by build() or by the
   * first sandboxes.create() that uses it; the same recipe is built once.
   */
  dockerfileCommands(commands: string[], params: DockerfileCommandsParams = {}): Image {
    if (!Array.isArray(commands) || !commands.every((c) => typeof c === "string")) {
      throw new InvalidError("dockerfileCommands: commands must be an array of strings");
    }
    if (params.env !== undefined) checkEnv(params.env, "env");
    return new Image(
      { kind: "dockerfile", base: this, commands: [...commands], env: params.env, secrets: params.secrets, forceBuild: params.forceBuild ?? false },
      this.#http,
    );
  }

  /**
   * Makes the server build (or pull) the image now, streaming the log to
   * `onLog`. Resolves with this image, its imageId set. A failing build
   * rejects with InvalidError whose message names the failing instruction,
   * its exit code and the last lines of its output (also in `details`).
   * `app` is accepted for compatibility; images are not per app.
   */
  async build(app?: App, params: ImageBuildParams = {}): Promise<Image> {
    if (app !== undefined && !(app instanceof App)) throw new InvalidError("app must be an App (from apps.fromName())");
    const http = this.#http;
    if (!http) throw new InvalidError("this image is not attached to a client; make it with client.images");
    const image = await this.toWire();
    let job = await http.json<ImageBuild>({ method: "POST", path: "/v1/images/builds", body: { image }, signal: params.signal });
    const logDone = params.onLog ? followLog(http, job.buildId, params.onLog, params.signal) : Promise.resolve();
    try {
      while (job.state === "running") {
        job = await http.json<ImageBuild>({
          method: "GET",
          path: `/v1/images/builds/${job.buildId}/wait`,
          query: { timeoutMs: LIMITS.maxWaitMs },
          timeoutMs: LIMITS.maxWaitMs + http.config.timeoutMs,
          signal: params.signal,
        });
      }
    } finally {
      // Everything the log holds is shown before build() returns or throws.
      await logDone.catch(() => {});
    }
    if (job.state === "failed" || !job.imageId) {
      const e = job.error ?? { code: "internal", message: `build ${job.buildId} failed` };
      throw errorFromWire(e.code, e.message, 0, e.details);
    }
    this.imageId = job.imageId;
    this.#built = true;
    return this;
  }

  /** @internal The wire form, with its secrets resolved. */
  async toWire(): Promise<ImageSpec> {
    const s = this.#source;
    if (this.#built && this.imageId) return { kind: "id", imageId: this.imageId };
    switch (s.kind) {
      case "registry": {
        if (s.secret === undefined) return { kind: "registry", ref: s.ref };
        const secret = await s.secret;
        if (!(secret instanceof Secret)) throw new InvalidError("the registry secret is not a Secret (make one with secrets.fromObject())");
        return { kind: "registry", ref: s.ref, secret: secret.toWire() };
      }
      case "debianSlim":
        return s.pythonVersion === undefined ? { kind: "debianSlim" } : { kind: "debianSlim", pythonVersion: s.pythonVersion };
      case "id":
        return { kind: "id", imageId: s.imageId };
      case "dockerfile": {
        const [base, secrets] = await Promise.all([s.base.toWire(), resolveSecrets(s.secrets)]);
        return {
          kind: "dockerfile",
          base,
          commands: s.commands,
          ...(s.env ? { env: s.env } : {}),
          ...(secrets && secrets.length > 0 ? { secrets } : {}),
          ...(s.forceBuild ? { forceBuild: true } : {}),
        };
      }
    }
  }
}

/** Reads a build's log from the start until it ends, handing text to `onLog`. */
async function followLog(http: HttpClient, buildId: string, onLog: (t: string) => void, signal?: AbortSignal): Promise<void> {
  const source = new ResumableByteSource(
    (offset, sig) => http.stream({ method: "GET", path: `/v1/images/builds/${buildId}/log`, query: { offset }, signal: sig }),
    { ...(signal ? { signal } : {}), label: `build ${buildId} log` },
  );
  const decoder = new TextDecoder("utf-8", { fatal: false });
  for (;;) {
    const chunk = await source.next();
    if (chunk === null) break;
    const text = decoder.decode(chunk, { stream: true });
    if (text) onLog(text);
  }
  const rest = decoder.decode();
  if (rest) onLog(rest);
}

export interface DebianSlimParams {
  pythonVersion?: string;
}

export interface ImagePruneParams extends CallOptions {
  /** Also drop the build cache (else images of cached builds are kept). */
  all?: boolean;
}

export class ImageService {
  readonly #http: HttpClient | undefined;

  /** @internal */
  constructor(http?: HttpClient) {
    this.#http = http;
  }

  /**
   * An image from an OCI registry, e.g. "python:3.13-slim". Lazy: nothing is
   * pulled until a sandbox uses it. `secret` holds REGISTRY_USERNAME and
   * REGISTRY_PASSWORD for a private registry.
   */
  fromRegistry(ref: string, secret?: Secret | Promise<Secret>): Image {
    if (typeof ref !== "string" || ref.trim() === "") throw new InvalidError(`image reference must be a non-empty string (got ${JSON.stringify(ref)})`);
    return new Image({ kind: "registry", ref, secret }, this.#http);
  }

  /** A Debian slim image with Python (the default image of a sandbox). */
  debianSlim(params: DebianSlimParams = {}): Image {
    if (params.pythonVersion !== undefined && !/^3\.\d+$/.test(params.pythonVersion)) {
      throw new InvalidError(`pythonVersion must look like "3.12" (got ${JSON.stringify(params.pythonVersion)})`);
    }
    return new Image({ kind: "debianSlim", pythonVersion: params.pythonVersion }, this.#http);
  }

  /** An image the server already has, by content id (sha256:…). */
  fromId(imageId: string): Image {
    if (typeof imageId !== "string" || !IMAGE_ID.test(imageId)) {
      throw new InvalidError(`image id must look like sha256:<64 hex digits> (got ${JSON.stringify(imageId)})`);
    }
    return new Image({ kind: "id", imageId }, this.#http);
  }

  /** The images the server holds, with disk usage per image and layer. */
  async list(opts: CallOptions = {}): Promise<ImageInfo[]> {
    const res = await this.#client().json<ImageList>({ method: "GET", path: "/v1/images", signal: opts.signal });
    return res.images;
  }

  /** One image; NotFoundError when the server does not have it. */
  async inspect(imageId: string, opts: CallOptions = {}): Promise<ImageInfo> {
    this.fromId(imageId);
    return this.#client().json<ImageInfo>({ method: "GET", path: `/v1/images/${encodeURIComponent(imageId)}`, signal: opts.signal });
  }

  /** Removes an image and what only it used; ConflictError while a running sandbox or build uses it. */
  async remove(imageId: string, opts: CallOptions = {}): Promise<ImageRemoveResult> {
    this.fromId(imageId);
    return this.#client().json<ImageRemoveResult>({ method: "DELETE", path: `/v1/images/${encodeURIComponent(imageId)}`, signal: opts.signal });
  }

  /** Removes images no running sandbox or build uses (and, unless `all`, not kept by the build cache). */
  async prune(params: ImagePruneParams = {}): Promise<ImageRemoveResult> {
    return this.#client().json<ImageRemoveResult>({ method: "POST", path: "/v1/images/prune", body: { all: params.all ?? false }, signal: params.signal });
  }

  #client(): HttpClient {
    if (!this.#http) throw new SbxError("this images service is not attached to a client", "invalid");
    return this.#http;
  }
}

