// Image builds and the image catalog as the API sees it.
//
// BuildService is the ImageService sandboxes get: plain sources go to the
// image catalog (images/); a "dockerfile" source (base + instructions) is
// built here, on top of its resolved base, in a build sandbox made by the
// same Backend as every sandbox (same isolation, with egress):
//
//   parse every instruction of the whole chain (refuse before anything runs)
//   → resolve the base (recursively: it may itself be built)
//   → key = sha256(parent image id, instructions, env, secret names)
//   → cache hit (unless forceBuild): done, no command runs
//   → else, once per key even when asked concurrently: start a build sandbox
//     from the parent, run RUN / WORKDIR steps as processes in it (output
//     streamed to the build log), kill it, and let the catalog capture its
//     upper dir as a layer with the new config (ENV, WORKDIR, USER, SHELL,
//     CMD, ENTRYPOINT applied); COPY --from=<image> adds a layer of its own
//   → record key → image id.
//
// A failing RUN raises InvalidArgumentError (400, code "invalid") with
// details { reason: "build_failed", instruction, exitCode, outputTail }.
//
// Builds started through the API (start()) are jobs with an id and a log
// that clients read from a byte offset while it grows. Jobs live in this
// process only (finished ones for an hour); what they build is stored.
import { createHash, randomBytes } from "node:crypto";
import { EventEmitter, once } from "node:events";
import { parseDockerfile, substitute, type Instruction } from "./dockerfile.js";
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  SbxServerError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.js";
import type {
  Backend,
  DockerfileSource,
  ExitStatus,
  ImageCatalog,
  ImageConfig,
  ImageInfo,
  ImageService,
  ImageSource,
  ImageUser,
  OutputReader,
  PruneResult,
  ResolvedImage,
  ResolveOptions,
  RuntimeSandbox,
  Scope,
} from "./ports.js";
import { raceAbort } from "../abort.js";

export interface BuildServiceDeps {
  images: ImageCatalog;
  backend: Backend;
  output: OutputReader;
  /** Image ids of sandboxes that are not finished (their images must stay). */
  sandboxImages: () => Iterable<string>;
  /**
   * Which workspace may use which image (the Store's image grants): a
   * workspace sees and removes only images it pulled, built or ran; an image
   * leaves the disk once no workspace holds a grant on it.
   */
  grants: ImageGrants;
  log: (msg: string) => void;
}

export interface ImageGrants {
  grant(workspaceId: string, imageId: string): void;
  has(workspaceId: string, imageId: string): boolean;
  list(workspaceId: string): string[];
  revoke(workspaceId: string, imageId: string): void;
  /** Images some workspace holds a grant on. */
  all(): string[];
}

/** Build sandboxes: a little more room than a default sandbox (compilers, pip). */
export const BUILD_LIMITS = {
  memoryLimitBytes: 4096 * 1024 * 1024,
  pidsLimit: 4096,
  /** One RUN step at most this long. */
  stepTimeoutMs: 60 * 60 * 1000,
  /** Lines of a failed step's output quoted in the error. */
  tailLines: 30,
  /** A build log keeps at most this many bytes (later output is dropped, with a note). */
  maxLogBytes: 16 * 1024 * 1024,
  /** Finished jobs are forgotten after this long. */
  jobRetentionMs: 60 * 60 * 1000,
} as const;

const DEFAULT_SHELL = ["/bin/sh", "-c"];
const KEY_VERSION = 1;

function localId(prefix: string): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let s = "";
  for (const b of randomBytes(20)) s += alphabet[b & 31];
  return `${prefix}-${s}`;
}

// ---- the build log ---------------------------------------------------------------

/** Append-only text log that readers follow from a byte offset. */
export class BuildLog {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private truncated = false;
  private ended = false;
  private readonly changed = new EventEmitter();
  private readonly listeners = new Set<(t: string) => void>();

  constructor() {
    this.changed.setMaxListeners(0);
  }

  append = (text: string): void => {
    if (this.ended || text === "") return;
    for (const l of this.listeners) l(text);
    if (this.truncated) return;
    let b = Buffer.from(text);
    if (this.size + b.length > BUILD_LIMITS.maxLogBytes) {
      b = Buffer.from(`\n[build log truncated at ${BUILD_LIMITS.maxLogBytes} bytes]\n`);
      this.truncated = true;
    }
    this.chunks.push(b);
    this.size += b.length;
    this.changed.emit("change");
  };

  /** Replays what is there to `fn`, then calls it with every later append. Returns an unsubscribe. */
  subscribe(fn: (t: string) => void): () => void {
    const so_far = Buffer.concat(this.chunks).toString("utf8");
    if (so_far) fn(so_far);
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  end(): void {
    this.ended = true;
    this.listeners.clear();
    this.changed.emit("change");
  }

  /** Bytes from `offset` on, as they come; ends once the log has ended and all was yielded. */
  async *follow(offset: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    let pos = offset;
    for (;;) {
      if (pos < this.size) {
        const all = Buffer.concat(this.chunks);
        const out = all.subarray(pos);
        pos = this.size;
        yield out;
        continue;
      }
      if (this.ended || signal.aborted) return;
      try {
        await once(this.changed, "change", { signal });
      } catch {
        return;
      }
    }
  }
}

// ---- errors ------------------------------------------------------------------------

/** images/ speaks its own error classes; core speaks SbxServerError. */
export function translateImageError(err: unknown, what: string): unknown {
  if (err instanceof SbxServerError || !(err instanceof Error)) return err;
  const opts = { cause: err };
  switch (err.name) {
    case "ImageNotFoundError":
      return new NotFoundError(err.message, opts);
    case "RegistryAuthError":
      return new UnauthenticatedError(err.message, opts);
    case "ImageRefError":
    case "ImageConfigError":
    case "LayerUnpackError":
      return new InvalidArgumentError(err.message, opts);
    case "ImageInUseError":
      return new FailedPreconditionError(err.message, opts);
    case "AbortError":
      return err;
    default:
      return new UnavailableError(`${what}: ${err.message}`, opts);
  }
}

function describe(source: ImageSource): string {
  switch (source.kind) {
    case "registry":
      return source.ref;
    case "id":
      return source.imageId;
    case "debianSlim":
      return "debianSlim";
    case "dockerfile":
      return `${describe(source.base)} + ${source.commands.length} command(s)`;
  }
}

function lastLines(text: string, n: number): string {
  const lines = text.replace(/\n+$/, "").split("\n");
  return lines.slice(-n).join("\n");
}

function setEnv(env: string[], key: string, value: string): string[] {
  return [...env.filter((kv) => !kv.startsWith(`${key}=`)), `${key}=${value}`];
}

function envRecord(env: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of env) {
    const i = kv.indexOf("=");
    if (i > 0) out[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return out;
}

// ---- jobs ----------------------------------------------------------------------------

export interface BuildJob {
  buildId: string;
  workspaceId: string;
  state: "running" | "succeeded" | "failed";
  imageId: string | null;
  error: { code: string; message: string; details?: Record<string, unknown> } | null;
  createdAt: string;
  finishedAt: string | null;
  log: BuildLog;
  done: Promise<void>;
}

interface Inflight {
  promise: Promise<ResolvedImage>;
  log: BuildLog;
}

/** A running build sandbox and what the build knows of it. */
interface Stage {
  handle: RuntimeSandbox;
  sandboxId: string;
  exits: Map<string, (st: ExitStatus) => void>;
  done: Map<string, ExitStatus>;
}

export class BuildService implements ImageService {
  private readonly inflight = new Map<string, Inflight>();
  private readonly jobs = new Map<string, BuildJob>();
  /** Image ids build sandboxes run on (refcounted). */
  private readonly building = new Map<string, number>();
  private readonly closer = new AbortController();

  constructor(private readonly deps: BuildServiceDeps) {}

  // ---- ImageService ---------------------------------------------------------------

  async resolve(source: ImageSource, signal?: AbortSignal, opts: ResolveOptions = {}): Promise<ResolvedImage> {
    this.check(source); // every instruction of the chain, before anything runs
    return this.resolveChecked(source, signal, opts);
  }

  /** Parses the instructions of every dockerfile level; throws InvalidArgumentError. */
  private check(source: ImageSource): void {
    for (let s: ImageSource = source; s.kind === "dockerfile"; s = s.base) parseDockerfile(s.commands);
  }

  private async resolveChecked(source: ImageSource, signal: AbortSignal | undefined, opts: ResolveOptions): Promise<ResolvedImage> {
    if (source.kind !== "dockerfile") {
      try {
        return await this.deps.images.resolve(source, signal, opts);
      } catch (err) {
        throw translateImageError(err, `image ${describe(source)}`);
      }
    }
    const parent = await this.resolveChecked(source.base, signal, opts);
    const instructions = parseDockerfile(source.commands);
    const key = this.cacheKey(parent.imageId, instructions, source);
    const log = opts.onLog ?? (() => {});
    if (!source.forceBuild) {
      const hit = await this.deps.images.cacheGet(key);
      if (hit) {
        log(`=> CACHED ${instructions.map((i) => i.text).join(" && ").slice(0, 200)}\n=> image ${hit}\n`);
        return this.resolveChecked({ kind: "id", imageId: hit }, signal, {});
      }
    }
    let running = this.inflight.get(key);
    if (!running) {
      const buildLog = new BuildLog();
      const promise = this.build(key, parent, instructions, source, buildLog).finally(() => {
        buildLog.end();
        if (this.inflight.get(key)?.promise === promise) this.inflight.delete(key);
      });
      running = { promise, log: buildLog };
      this.inflight.set(key, running);
      promise.catch(() => {});
    } else {
      log(`=> joining a build of the same recipe that is already running\n`);
    }
    const unsubscribe = opts.onLog ? running.log.subscribe(opts.onLog) : () => {};
    try {
      return await raceAbort(running.promise, signal);
    } finally {
      unsubscribe();
    }
  }

  /** Workspace + parent digest + instructions + env + secret names (never their values). */
  private cacheKey(parentId: string, instructions: Instruction[], s: DockerfileSource): string {
    const env = Object.entries(s.env).sort(([a], [b]) => a.localeCompare(b));
    const secrets = Object.keys(s.secretEnv).sort();
    return createHash("sha256")
      .update(JSON.stringify({ v: KEY_VERSION, scope: s.cacheScope, parent: parentId, instructions: instructions.map((i) => i.text), env, secrets }))
      .digest("hex");
  }

  private hold(imageId: string): () => void {
    this.building.set(imageId, (this.building.get(imageId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const n = (this.building.get(imageId) ?? 1) - 1;
      if (n <= 0) this.building.delete(imageId);
      else this.building.set(imageId, n);
    };
  }

  /** The build itself (shared by everyone asking for `key` meanwhile). */
  private async build(key: string, parent: ResolvedImage, instructions: Instruction[], source: DockerfileSource, log: BuildLog): Promise<ResolvedImage> {
    const signal = this.closer.signal;
    const t0 = Date.now();
    const total = instructions.length;
    log.append(`=> building on ${parent.imageId.slice(0, 19)}… (${total} instruction${total === 1 ? "" : "s"})\n`);
    this.deps.log(`build ${key.slice(0, 12)}: ${total} instruction(s) on ${parent.imageId.slice(0, 19)}`);

    let current = parent; // the image the next stage starts from
    let release = this.hold(current.imageId);
    let config: ImageConfig = { ...parent.config, env: [...parent.config.env] };
    for (const [k, v] of Object.entries(source.env)) config.env = setEnv(config.env, k, v);
    let shell = DEFAULT_SHELL;
    const args: Record<string, string> = {};
    let runUser: ImageUser | undefined = parent.user; // who RUN steps run as
    let stage: Stage | null = null;
    let changed = Object.keys(source.env).length > 0; // config differs from `current`
    const history: string[] = [];
    const vars = () => ({ ...args, ...envRecord(config.env) });

    const endStage = async (commit: boolean): Promise<void> => {
      if (!stage) return;
      const st = stage;
      stage = null;
      try {
        await st.handle.kill();
        if (commit) {
          const capture = st.handle.layerCapture?.();
          if (!capture) throw new UnavailableError("this runtime cannot capture a build sandbox's files as a layer");
          const tc = Date.now();
          const next = await this.catalog(() =>
            this.deps.images.commit(
              { parentId: current.imageId, config, history: history.join(" && "), upper: { dir: capture.upperDir, uidBase: capture.uidBase } },
              signal,
            ),
          );
          log.append(`=> captured layer in ${Date.now() - tc} ms\n`);
          release();
          current = next;
          release = this.hold(current.imageId);
          changed = false;
          history.length = 0;
        }
      } finally {
        await st.handle.destroy().catch((e: unknown) => this.deps.log(`build sandbox ${st.sandboxId}: destroy failed: ${String(e)}`));
      }
    };

    const ensureStage = async (): Promise<Stage> => {
      if (stage) return stage;
      const sandboxId = localId("bld");
      const ts = Date.now();
      const handle = await this.deps.backend
        .create(
          {
            sandboxId,
            image: current,
            env: {},
            memoryLimitBytes: BUILD_LIMITS.memoryLimitBytes,
            pidsLimit: BUILD_LIMITS.pidsLimit,
            blockNetwork: false,
          },
          signal,
        )
        .catch((err: unknown) => {
          throw new UnavailableError(`image build: the build sandbox failed to start: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        });
      const s: Stage = { handle, sandboxId, exits: new Map(), done: new Map() };
      handle.onExecExit((execId, status) => {
        s.done.set(execId, status);
        s.exits.get(execId)?.(status);
      });
      stage = s;
      this.deps.log(`build ${key.slice(0, 12)}: sandbox ${sandboxId} started in ${Date.now() - ts} ms`);
      return s;
    };

    let step = 0;
    /** Runs argv in the build sandbox; the output goes to the log. Returns exit code and output tail. */
    const runStep = async (argv: string[], opts: { user?: ImageUser; env: Record<string, string>; cwd?: string }): Promise<{ code: number; tail: string }> => {
      const s = await ensureStage();
      const execId = `build-${++step}`;
      const exited = new Promise<ExitStatus>((resolve) => {
        const known = s.done.get(execId);
        if (known) resolve(known);
        else s.exits.set(execId, resolve);
      });
      await s.handle.exec({
        execId,
        argv,
        env: { ...opts.env, ...(opts.user?.home ? { HOME: opts.user.home } : {}) },
        ...(opts.cwd ? { workdir: opts.cwd } : {}),
        timeoutMs: BUILD_LIMITS.stepTimeoutMs,
        stdoutIgnore: false,
        stderrIgnore: false,
        ...(opts.user ? { user: { uid: opts.user.uid, gid: opts.user.gid } } : {}),
      });
      let finished = false;
      let tail = "";
      const decoder = { stdout: new TextDecoder(), stderr: new TextDecoder() };
      const pump = async (stream: "stdout" | "stderr") => {
        const ac = new AbortController();
        const stop = () => ac.abort();
        signal.addEventListener("abort", stop, { once: true });
        try {
          for await (const chunk of this.deps.output.follow(s.sandboxId, execId, stream, 0, () => finished, ac.signal)) {
            const text = decoder[stream].decode(chunk, { stream: true });
            tail = (tail + text).slice(-64 * 1024);
            log.append(text);
          }
        } finally {
          signal.removeEventListener("abort", stop);
        }
      };
      const pumps = Promise.all([pump("stdout"), pump("stderr")]);
      const status = await raceAbort(exited, signal);
      finished = true;
      await pumps;
      return { code: status.code, tail };
    };

    try {
      for (const [i, ins] of instructions.entries()) {
        signal.throwIfAborted();
        log.append(`=> [${i + 1}/${total}] ${ins.text}\n`);
        const env = { ...args, ...envRecord(config.env), ...source.secretEnv };
        switch (ins.op) {
          case "RUN": {
            const argv = ins.exec ?? [...shell, ins.shell!];
            const tr = Date.now();
            const { code, tail } = await runStep(argv, { env, cwd: config.workdir, ...(runUser ? { user: runUser } : {}) });
            if (code !== 0) {
              const outputTail = lastLines(tail, BUILD_LIMITS.tailLines);
              throw new InvalidArgumentError(
                `image build failed: ${ins.text} exited with code ${code}` + (outputTail ? `; last lines of its output:\n${outputTail}` : " (no output)"),
                { details: { reason: "build_failed", instruction: ins.text, exitCode: code, outputTail } },
              );
            }
            log.append(`=> done in ${Date.now() - tr} ms\n`);
            history.push(ins.text);
            changed = true;
            break;
          }
          case "ENV":
            for (const [k, v] of ins.pairs) config.env = setEnv(config.env, k, substitute(v, vars()));
            changed = true;
            break;
          case "ARG":
            if (!(ins.name in args)) args[ins.name] = ins.value !== undefined ? substitute(ins.value, vars()) : "";
            break;
          case "WORKDIR": {
            const p = substitute(ins.path, vars());
            const dir = p.startsWith("/") ? p : `${config.workdir ?? "/"}/${p}`.replace(/\/+/g, "/");
            const { code, tail } = await runStep(["mkdir", "-p", dir], { env, user: { uid: 0, gid: 0 } });
            if (code !== 0) {
              throw new InvalidArgumentError(`image build failed: ${ins.text}: mkdir -p ${dir} exited with code ${code}: ${lastLines(tail, 5)}`, {
                details: { reason: "build_failed", instruction: ins.text, exitCode: code, outputTail: lastLines(tail, BUILD_LIMITS.tailLines) },
              });
            }
            config = { ...config, workdir: dir };
            history.push(ins.text);
            changed = true;
            break;
          }
          case "USER": {
            const user = substitute(ins.user, vars());
            const layers = stage ? [...current.layers, (stage as Stage).handle.layerCapture?.().upperDir ?? ""].filter(Boolean) : current.layers;
            runUser = user === "root" || user === "0" || user === "0:0"
              ? undefined
              : await this.catalog(() => this.deps.images.resolveUser(layers, user, `image build: ${ins.text}`));
            config = { ...config, user };
            changed = true;
            break;
          }
          case "SHELL":
            shell = ins.argv;
            break;
          case "CMD":
            config = { ...config, cmd: ins.exec ?? [...shell, ins.shell!] };
            changed = true;
            break;
          case "ENTRYPOINT": {
            const { cmd: _reset, ...rest } = config; // Docker: a new ENTRYPOINT resets an inherited CMD
            config = { ...rest, entrypoint: ins.exec ?? [...shell, ins.shell!] };
            changed = true;
            break;
          }
          case "COPY": {
            await endStage(true);
            // Not substituted: a literal image id is checked against the caller's images (imageIdsIn) before the build.
            const fromRef = ins.from;
            const from = await this.resolveChecked(
              /^sha256:[a-f0-9]{64}$/.test(fromRef) ? { kind: "id", imageId: fromRef } : { kind: "registry", ref: fromRef },
              signal,
              { onLog: log.append },
            );
            const releaseFrom = this.hold(from.imageId);
            try {
              for (const src of ins.sources) {
                const dest = substitute(ins.dest, vars());
                const absDest = (dest.startsWith("/") ? dest : `${config.workdir ?? "/"}/${dest}`).replace(/\/+/g, "/").replace(/(.)\/$/, "$1");
                const next = await this.catalog(() =>
                  this.deps.images.commitCopy(
                    { parentId: current.imageId, fromId: from.imageId, srcPath: substitute(src, vars()), destPath: absDest + (dest.endsWith("/") ? "/" : ""), config, history: ins.text },
                    signal,
                  ),
                );
                release();
                current = next;
                release = this.hold(current.imageId);
              }
            } finally {
              releaseFrom();
            }
            changed = false;
            break;
          }
        }
      }
      if (stage) await endStage(true);
      else if (changed || current.imageId === parent.imageId) {
        current = await this.catalog(() => this.deps.images.commit({ parentId: current.imageId, config, history: history.join(" && ") || "config" }, signal));
      }
      await this.deps.images.cachePut(key, current.imageId);
      log.append(`=> image ${current.imageId} built in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      this.deps.log(`build ${key.slice(0, 12)}: ${current.imageId.slice(0, 19)} in ${Date.now() - t0} ms`);
      return current;
    } catch (err) {
      log.append(`=> build failed: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}\n`);
      throw err;
    } finally {
      await endStage(false).catch(() => {});
      release();
    }
  }

  /** Calls the catalog, translating its errors. */
  private async catalog<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateImageError(err, "image build");
    }
  }

  // ---- jobs (the build API) -------------------------------------------------------------

  /**
   * Starts building (or pulling) `source` for the caller and returns the job
   * at once. Invalid instructions throw here. `imageIds` are the image ids
   * the spec names (core/image-source.ts imageIdsIn): the caller must hold a
   * grant on each. The result is granted to the caller's workspace.
   */
  start(scope: Scope, source: ImageSource, imageIds: string[]): BuildJob {
    this.check(source);
    for (const id of imageIds) {
      if (!this.deps.grants.has(scope.workspaceId, id)) throw new NotFoundError(`image ${id} does not exist`);
    }
    this.forgetOldJobs();
    const log = new BuildLog();
    const job: BuildJob = {
      workspaceId: scope.workspaceId,
      buildId: localId("bd"),
      state: "running",
      imageId: null,
      error: null,
      createdAt: new Date().toISOString(),
      finishedAt: null,
      log,
      done: Promise.resolve(),
    };
    job.done = this.resolveChecked(source, this.closer.signal, { onLog: log.append }).then(
      (img) => {
        this.deps.grants.grant(scope.workspaceId, img.imageId);
        job.state = "succeeded";
        job.imageId = img.imageId;
      },
      (err: unknown) => {
        job.state = "failed";
        const e = err instanceof SbxServerError ? err : new UnavailableError(err instanceof Error ? err.message : String(err));
        job.error = { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) };
      },
    ).finally(() => {
      job.finishedAt = new Date().toISOString();
      log.end();
    });
    this.jobs.set(job.buildId, job);
    return job;
  }

  job(scope: Scope, buildId: string): BuildJob {
    const job = this.jobs.get(buildId);
    if (!job || job.workspaceId !== scope.workspaceId) throw new NotFoundError(`build ${buildId} does not exist (builds are kept for an hour after they finish, by the server that ran them)`);
    return job;
  }

  async waitJob(scope: Scope, buildId: string, timeoutMs: number, signal?: AbortSignal): Promise<BuildJob> {
    const job = this.job(scope, buildId);
    if (job.state !== "running") return job;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      job.done,
      new Promise<void>((r) => (timer = setTimeout(r, timeoutMs))),
      ...(signal ? [once(signal, "abort").then(() => undefined)] : []),
    ]).finally(() => clearTimeout(timer));
    return job;
  }

  followLog(scope: Scope, buildId: string, offset: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    return this.job(scope, buildId).log.follow(offset, signal);
  }

  private forgetOldJobs(): void {
    const cutoff = Date.now() - BUILD_LIMITS.jobRetentionMs;
    for (const [id, j] of this.jobs) if (j.finishedAt && Date.parse(j.finishedAt) < cutoff) this.jobs.delete(id);
  }

  // ---- the catalog (the image API) -------------------------------------------------------

  /** Images that must stay: used by a sandbox that is not finished, or by a running build. */
  inUse(): Set<string> {
    const out = new Set<string>(this.building.keys());
    for (const id of this.deps.sandboxImages()) out.add(id);
    return out;
  }

  /** Images the workspace holds a grant on. */
  private visible(scope: Scope): (imageId: string) => boolean {
    const mine = new Set(this.deps.grants.list(scope.workspaceId));
    return (id) => mine.has(id);
  }

  async list(scope: Scope): Promise<(ImageInfo & { inUse: boolean })[]> {
    const used = this.inUse();
    const visible = this.visible(scope);
    return (await this.catalog(() => this.deps.images.list())).filter((i) => visible(i.imageId)).map((i) => ({ ...i, inUse: used.has(i.imageId) }));
  }

  async inspect(scope: Scope, imageId: string): Promise<ImageInfo & { inUse: boolean }> {
    if (!this.visible(scope)(imageId)) throw new NotFoundError(`image ${imageId} does not exist`);
    const info = await this.catalog(() => this.deps.images.inspect(imageId));
    return { ...info, inUse: this.inUse().has(imageId) };
  }

  /**
   * Removes the workspace's image: refused while a running sandbox or build
   * uses it; the workspace's grant goes, and the image (with what only it
   * used) leaves the disk unless another workspace still holds a grant.
   */
  async remove(scope: Scope, imageId: string): Promise<PruneResult> {
    if (!this.visible(scope)(imageId)) throw new NotFoundError(`image ${imageId} does not exist`);
    if (this.inUse().has(imageId)) throw new FailedPreconditionError(`image ${imageId} is used by a running sandbox or build; terminate those first`);
    this.deps.grants.revoke(scope.workspaceId, imageId);
    if (this.deps.grants.all().includes(imageId)) return { removedImages: [], freedBytes: 0 };
    return this.catalog(() => this.deps.images.remove(imageId, () => this.inUse()));
  }

  /**
   * Drops the workspace's grants on its images that nothing uses (and, unless
   * `all`, that are not results of cached builds), then removes from disk
   * every image no workspace holds, no sandbox or build uses and (unless
   * `all`) no cached build keeps, and the blobs and layers nothing uses.
   */
  async prune(scope: Scope, all: boolean): Promise<PruneResult> {
    const used = this.inUse();
    const infos = await this.catalog(() => this.deps.images.list());
    const visible = this.visible(scope);
    for (const i of infos) {
      if (!visible(i.imageId) || used.has(i.imageId) || (i.buildCached && !all)) continue;
      this.deps.grants.revoke(scope.workspaceId, i.imageId);
    }
    return this.catalog(() => this.deps.images.prune(() => new Set([...this.inUse(), ...this.deps.grants.all()]), { all }));
  }

  /** Aborts running builds (their sandboxes are destroyed). */
  close(): void {
    this.closer.abort(new UnavailableError("the server is shutting down"));
  }
}

