// The interfaces core depends on. Implementations live in runtime/, images/
// and store/; compose.ts wires them. Nothing here knows about runc, SQLite or
// HTTP.

/** An image's runtime config, as recorded in its OCI config blob. */
export interface ImageConfig {
  env: string[]; // "KEY=VALUE"
  workdir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
}

/** A materialized image: unpacked layer directories, lowest first. */
export interface ResolvedImage {
  imageId: string; // "sha256:<hex>" of the manifest (or of our own base image)
  layers: string[]; // absolute host paths of read-only unpacked layer dirs, base first
  config: ImageConfig;
  /** config.user resolved against the image's /etc/passwd and /etc/group; absent: root. */
  user?: ImageUser;
}

/** Who processes of a sandbox run as (the image's USER). */
export interface ImageUser {
  uid: number;
  gid: number;
  /** From /etc/passwd; becomes $HOME. */
  home?: string;
}

/** Where an image comes from, as the SDK describes it. */
export type ImageSource =
  | { kind: "registry"; ref: string; auth?: { username: string; password: string } }
  | { kind: "debianSlim"; pythonVersion?: string }
  | { kind: "id"; imageId: string }
  | DockerfileSource;

/** `base` plus one layer built from Dockerfile instructions (core/builds.ts). */
export interface DockerfileSource {
  kind: "dockerfile";
  base: ImageSource;
  commands: string[];
  /** Set in the image (like ENV) and seen by every RUN. */
  env: Record<string, string>;
  /** Seen by RUN only, never stored in the image; their names are part of the cache key. */
  secretEnv: Record<string, string>;
  forceBuild: boolean;
  /** Part of the build cache key: the workspace asking ("" = none). */
  cacheScope: string;
}

export interface ResolveOptions {
  /** Progress and build output, as text, while it happens. */
  onLog?: (text: string) => void;
}

export interface ImageService {
  /** Pulls / builds what is missing (once, shared) and returns the layer dirs. */
  resolve(source: ImageSource, signal?: AbortSignal, opts?: ResolveOptions): Promise<ResolvedImage>;
}

/** One image the server holds, with its disk usage. */
export interface ImageInfo {
  imageId: string;
  ref: string | null;
  source: "registry" | "debianSlim" | "build";
  parentId: string | null;
  created: string;
  config: ImageConfig;
  layers: { digest: string; diffId: string; blobBytes: number; diskBytes: number; sharedWith: number }[];
  /** Blob + unpacked bytes of its layers, each layer counted once. */
  diskBytes: number;
  /** What removing only this image would free (layers no other image uses). */
  uniqueBytes: number;
  /** The results of cached builds are kept by prune. */
  buildCached: boolean;
}

export interface PruneResult {
  removedImages: string[];
  freedBytes: number;
}

/**
 * The image store behind ImageService, as core's build orchestration
 * (core/builds.ts) and the image API use it. images/ implements it.
 */
export interface ImageCatalog extends ImageService {
  /**
   * Makes the child of `parentId` with `config`: with `upperDir` (a stopped
   * sandbox's overlay upper dir, owned by host uids uidBase..uidBase+65535)
   * captured as one more layer, without it a config-only image. Records it.
   */
  commit(
    req: { parentId: string; config: ImageConfig; history: string; upper?: { dir: string; uidBase: number } },
    signal?: AbortSignal,
  ): Promise<ResolvedImage>;
  /** A layer holding `srcPath` of image `fromId` (merged view) at `destPath`, on top of `parentId`. */
  commitCopy(
    req: { parentId: string; fromId: string; srcPath: string; destPath: string; config: ImageConfig; history: string; chown?: ImageUser },
    signal?: AbortSignal,
  ): Promise<ResolvedImage>;
  /** The image id a build cache key maps to, if the image is still complete. */
  cacheGet(key: string): Promise<string | null>;
  cachePut(key: string, imageId: string): Promise<void>;
  /** USER of `layers` (lowest first; may end with a build's upper dir) → ids. */
  resolveUser(layers: string[], user: string, what: string): Promise<ImageUser>;
  list(): Promise<ImageInfo[]>;
  inspect(imageId: string): Promise<ImageInfo>;
  /**
   * Removes an image (and build cache entries naming it) unless it is in
   * `inUse()`, then the blobs and layers no remaining image uses. `inUse` is
   * asked once no pull, build or sandbox start is between resolving and using
   * an image.
   */
  remove(imageId: string, inUse: () => ReadonlySet<string>): Promise<PruneResult>;
  /** Removes images neither in `inUse()` nor kept by the build cache (with `all`: the cache too), then garbage. */
  prune(inUse: () => ReadonlySet<string>, opts: { all: boolean }): Promise<PruneResult>;
}

/** What the runtime needs to start one sandbox. Already validated. */
export interface RuntimeSpec {
  sandboxId: string;
  image: ResolvedImage;
  /** argv of the entrypoint, run by the agent as exec id "entry"; none = stay alive. */
  command?: string[];
  env: Record<string, string>;
  workdir?: string;
  memoryLimitBytes: number;
  pidsLimit: number;
  cpuLimit?: number; // cores
  /** Relative CPU weight: cores requested (cgroup cpu shares = cores × 1024). */
  cpu?: number;
  /** Soft memory limit (reservation). */
  memoryReservationBytes?: number;
  blockNetwork: boolean;
  /** Host directories bound into the sandbox (volumes), in order. */
  mounts?: RuntimeMount[];
}

export interface RuntimeMount {
  /** Host directory; its files are stored with uid 0-based ownership and idmapped per sandbox. */
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

/** Where volume data lives on the host. */
export interface VolumeStorage {
  create(volumeId: string): Promise<void>;
  /** Removes the volume's data. Idempotent. */
  remove(volumeId: string): Promise<void>;
  /** The host directory to mount: the volume's root or a sub path of it (created if missing). */
  mountSource(volumeId: string, subPath: string | undefined): Promise<string>;
}

export interface ExecRequest {
  execId: string;
  argv: string[];
  env: Record<string, string>;
  workdir?: string;
  timeoutMs: number; // 0 = none
  stdoutIgnore: boolean;
  stderrIgnore: boolean;
  /** Run as this uid:gid instead of the image's USER (builds: a USER instruction). */
  user?: { uid: number; gid: number };
}

export interface ExitStatus {
  code: number;
  reason: "exited" | "signaled" | "timeout" | "failed";
}

export type StreamName = "stdout" | "stderr";

/** A running sandbox as the runtime sees it. */
export interface RuntimeSandbox {
  readonly sandboxId: string;
  exec(req: ExecRequest): Promise<void>;
  /** Returns the new accepted stdin total; may be < offset + data.length (retry the rest). */
  writeStdin(execId: string, offset: number, data: Uint8Array): Promise<number>;
  closeStdin(execId: string): Promise<void>;
  signal(execId: string, signal: number): Promise<void>;
  /** Host path of the append-only output file of a process. */
  outputPath(execId: string, stream: StreamName): string;
  /** The recorded exit status of a process, or null while it runs. */
  execStatus(execId: string): Promise<ExitStatus | null>;
  /** Called once per process exit (from agent events; also replayed from files on adopt). Returns the unsubscribe. */
  onExecExit(listener: (execId: string, status: ExitStatus) => void): () => void;
  /** Resolves when the sandbox's PID 1 is gone: the entrypoint's code, or 137 when killed. */
  waitExit(): Promise<{ code: number; oom: boolean }>;
  /** SIGKILL everything in the sandbox. Resolves once it is dead. */
  kill(): Promise<void>;
  /** Removes mounts, cgroup, netns, runtime state. Keeps the run dir (outputs). Idempotent. */
  destroy(): Promise<void>;
  /**
   * For image builds: the overlay upper dir holding what the sandbox wrote,
   * and the host uid its root maps to. Read it only after kill(), before destroy().
   */
  layerCapture?(): { upperDir: string; uidBase: number };
}

export interface Backend {
  readonly name: string;
  create(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeSandbox>;
  /** Reattaches to a sandbox started by an earlier server process; null if it is gone. */
  adopt(sandboxId: string): Promise<RuntimeSandbox | null>;
  /** adopt() for many at once (a restart); a sandbox that cannot be adopted maps to null. */
  adoptAll(sandboxIds: readonly string[]): Promise<Map<string, RuntimeSandbox | null>>;
  /** Cleans up what a dead sandbox left behind (mounts, netns, runtime state). */
  cleanup(sandboxId: string): Promise<void>;
  /**
   * Removes every sandbox the runtime holds that is not in `knownRunning`
   * (left by a server that died mid-create); returns their ids.
   */
  cleanupOrphans?(knownRunning: Iterable<string>): Promise<string[]>;
  /** Stops background work (spare resources being prepared); sandboxes keep running. */
  close?(): Promise<void>;
}

// ---- persistence -------------------------------------------------------------

export type SandboxStateName = "created" | "scheduled" | "started" | "finished";
export type FinishReasonName = "exited" | "terminated" | "timeout" | "idle-timeout" | "oom" | "failed";
export type EventTypeName = "Created" | "Scheduled" | "Started" | "Ready" | "Finished";

/** Who is calling: every object a caller sees or touches belongs to its workspace. */
export interface Scope {
  workspaceId: string;
  /** May manage workspaces and tokens. */
  admin: boolean;
}

export interface WorkspaceRecord {
  workspaceId: string;
  name: string;
  createdAt: string;
}

export interface TokenRecord {
  id: string;
  hash: string;
  name: string;
  workspaceId: string;
  admin: boolean;
  createdAt: string;
}

export interface AppRecord {
  appId: string;
  workspaceId: string;
  /** Sandboxes kept warm per shape for this app; null: the server's default. */
  warmPoolSize?: number | null;
  name: string;
  createdAt: string;
}

/** What is stored of a sandbox. `spec` never holds secret values. */
export interface SandboxRecord {
  sandboxId: string;
  appId: string;
  name: string | null;
  state: SandboxStateName;
  spec: StoredSandboxSpec;
  imageId: string | null;
  returncode: number | null;
  finishReason: FinishReasonName | null;
  tags: Record<string, string>;
  createdAt: string;
  /** Epoch ms at which the sandbox's timeout fires. */
  deadlineAt: number;
  finishedAt: string | null;
  /** When the readiness probe first succeeded. */
  readyAt: string | null;
  /**
   * Pooled sandboxes only: the env every process gets (the agent started
   * before the sandbox had an owner), sealed with the secrets key.
   */
  sealedEnv: Buffer | null;
}

export interface StoredSandboxSpec {
  image: unknown;
  command?: string[];
  timeoutMs: number;
  workdir?: string;
  blockNetwork: boolean;
  memoryLimitBytes: number;
  pidsLimit: number;
  cpuLimit?: number;
  envKeys: string[];
  idleTimeoutMs?: number;
  readinessProbe?: ProbeSpec;
  volumes?: { path: string; volumeId: string; readOnly: boolean; subPath?: string }[];
  cpu?: number;
  memoryReservationBytes?: number;
  /** Claimed from a warm pool. */
  pooled?: boolean;
}

export type ProbeSpec =
  | { kind: "tcp"; port: number; intervalMs: number }
  | { kind: "exec"; argv: string[]; intervalMs: number };

export interface SecretRecord {
  workspaceId: string;
  name: string;
  keys: string[];
  /** AES-256-GCM: iv (12) | tag (16) | ciphertext of the JSON env. */
  sealed: Buffer;
  createdAt: string;
}

export interface VolumeRecord {
  volumeId: string;
  workspaceId: string;
  name: string | null;
  ephemeral: boolean;
  createdAt: string;
}

export interface EventRecord {
  sandboxId: string;
  type: EventTypeName;
  at: string;
  reason: string | null;
  returncode: number | null;
}

export interface ExecRecord {
  execId: string;
  sandboxId: string;
  argv: string[];
  createdAt: string;
  returncode: number | null;
  reason: string | null;
  finishedAt: string | null;
}

export interface Store {
  /** Runs fn in one transaction; fn must be synchronous. */
  transaction<T>(fn: () => T): T;

  tokenCount(): number;
  insertToken(t: TokenRecord): void;
  getToken(id: string): TokenRecord | null;

  insertWorkspace(w: WorkspaceRecord): void;
  getWorkspace(workspaceId: string): WorkspaceRecord | null;
  findWorkspaceByName(name: string): WorkspaceRecord | null;
  listWorkspaces(): WorkspaceRecord[];

  findAppByName(workspaceId: string, name: string): AppRecord | null;
  findApp(appId: string): AppRecord | null;
  insertApp(app: AppRecord): void;
  setAppWarmPoolSize(appId: string, size: number | null): void;

  insertSandbox(sb: SandboxRecord): void;
  getSandbox(sandboxId: string): SandboxRecord | null;
  /** The workspace a sandbox belongs to (through its app), or null if there is no such sandbox. */
  sandboxWorkspaceId(sandboxId: string): string | null;
  /** Sandboxes whose state is not finished. */
  listActiveSandboxes(filter?: { workspaceId?: string; appId?: string; afterId?: string; limit?: number }): SandboxRecord[];
  findActiveByName(appId: string, name: string): SandboxRecord | null;
  updateSandbox(
    sandboxId: string,
    patch: Partial<Pick<SandboxRecord, "state" | "imageId" | "returncode" | "finishReason" | "finishedAt" | "tags" | "readyAt">>,
  ): void;

  insertEvent(e: EventRecord): void;
  listEvents(sandboxId: string): EventRecord[];

  insertExec(e: ExecRecord): void;
  getExec(sandboxId: string, execId: string): ExecRecord | null;
  listRunningExecs(sandboxId: string): ExecRecord[];
  finishExec(sandboxId: string, execId: string, returncode: number, reason: string, finishedAt: string): void;

  insertSecret(s: SecretRecord): void;
  replaceSecret(s: SecretRecord): void;
  getSecret(workspaceId: string, name: string): SecretRecord | null;
  listSecrets(workspaceId: string): SecretRecord[];
  deleteSecret(workspaceId: string, name: string): boolean;

  insertVolume(v: VolumeRecord): void;
  getVolume(volumeId: string): VolumeRecord | null;
  findVolumeByName(workspaceId: string, name: string): VolumeRecord | null;
  listVolumes(workspaceId: string): VolumeRecord[];
  /** Removes the volume and its mount records (the caller checked none is running). */
  deleteVolume(volumeId: string): void;
  attachVolumes(sandboxId: string, volumeIds: string[]): void;
  /** Sandboxes not finished that mount the volume. */
  activeSandboxesUsingVolume(volumeId: string): string[];
  /** Volumes mounted by the sandbox. */
  volumesOfSandbox(sandboxId: string): string[];

  /** Records that a workspace may use an image (it pulled, built or ran it). */
  grantImage(workspaceId: string, imageId: string): void;
  hasImageGrant(workspaceId: string, imageId: string): boolean;
  imageGrants(workspaceId: string): string[];
  /** Images some workspace may still use (nothing else may be pruned). */
  allGrantedImages(): string[];
  revokeImage(workspaceId: string, imageId: string): void;

  close(): void;
}

/**
 * Where a stream's big reads go: buffers the stream's consumer gives back
 * once it is done with a chunk, so a long stream keeps refilling memory that
 * is already mapped (a fresh 1 MiB buffer costs 256 page faults, which this
 * machine's nested virtualization makes dear).
 */
export interface ReadBuffers {
  /** A buffer of `size` bytes that the reader may fill and yield a view of. */
  lend(size: number): Uint8Array;
}

export interface FollowOptions {
  /** Subscribes a wake-up to the moment the process's end is known; returns the unsubscribe. */
  onDone?: (wake: () => void) => () => void;
  /** Lends the buffers of big reads (default: a fresh buffer per read). */
  buffers?: ReadBuffers;
}

/** Reads what processes wrote, from the durable run directory, live or finished. */
export interface OutputReader {
  /**
   * Yields bytes from `offset` until `isDone()` is true and every byte was
   * yielded. `opts.onDone` lets the stream end as soon as the process's end
   * is known, not only when the agent's exit file shows up. With
   * `opts.buffers`, a chunk may be a view of a lent buffer: the consumer
   * must be done with it before handing the buffer back.
   */
  follow(
    sandboxId: string,
    execId: string,
    stream: StreamName,
    offset: number,
    isDone: () => boolean,
    signal: AbortSignal,
    opts?: FollowOptions,
  ): AsyncGenerator<Uint8Array>;
  /** The exit status the agent recorded for a process, if any. */
  exitStatus(sandboxId: string, execId: string): Promise<ExitStatus | null>;
}
