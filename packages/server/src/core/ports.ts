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
}

/** Where an image comes from, as the SDK describes it. */
export type ImageSource =
  | { kind: "registry"; ref: string; auth?: { username: string; password: string } }
  | { kind: "debianSlim"; pythonVersion?: string }
  | { kind: "id"; imageId: string };

export interface ImageService {
  /** Pulls / builds what is missing (once, shared) and returns the layer dirs. */
  resolve(source: ImageSource, signal?: AbortSignal): Promise<ResolvedImage>;
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
  blockNetwork: boolean;
}

export interface ExecRequest {
  execId: string;
  argv: string[];
  env: Record<string, string>;
  workdir?: string;
  timeoutMs: number; // 0 = none
  stdoutIgnore: boolean;
  stderrIgnore: boolean;
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
  /** Called once per process exit (from agent events; also replayed from files on adopt). */
  onExecExit(listener: (execId: string, status: ExitStatus) => void): void;
  /** Resolves when the sandbox's PID 1 is gone: the entrypoint's code, or 137 when killed. */
  waitExit(): Promise<{ code: number; oom: boolean }>;
  /** SIGKILL everything in the sandbox. Resolves once it is dead. */
  kill(): Promise<void>;
  /** Removes mounts, cgroup, netns, runtime state. Keeps the run dir (outputs). Idempotent. */
  destroy(): Promise<void>;
}

export interface Backend {
  readonly name: string;
  create(spec: RuntimeSpec, signal?: AbortSignal): Promise<RuntimeSandbox>;
  /** Reattaches to a sandbox started by an earlier server process; null if it is gone. */
  adopt(sandboxId: string): Promise<RuntimeSandbox | null>;
  /** Cleans up what a dead sandbox left behind (mounts, netns, runtime state). */
  cleanup(sandboxId: string): Promise<void>;
}

// ---- persistence -------------------------------------------------------------

export type SandboxStateName = "created" | "scheduled" | "started" | "finished";
export type FinishReasonName = "exited" | "terminated" | "timeout" | "idle-timeout" | "oom" | "failed";
export type EventTypeName = "Created" | "Scheduled" | "Started" | "Ready" | "Finished";

export interface AppRecord {
  appId: string;
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
  insertToken(t: { id: string; hash: string; name: string; createdAt: string }): void;
  findTokenByHash(hash: string): { id: string; name: string } | null;

  findAppByName(name: string): AppRecord | null;
  findApp(appId: string): AppRecord | null;
  insertApp(app: AppRecord): void;

  insertSandbox(sb: SandboxRecord): void;
  getSandbox(sandboxId: string): SandboxRecord | null;
  /** Sandboxes whose state is not finished. */
  listActiveSandboxes(filter?: { appId?: string; afterId?: string; limit?: number }): SandboxRecord[];
  findActiveByName(appId: string, name: string): SandboxRecord | null;
  updateSandbox(
    sandboxId: string,
    patch: Partial<Pick<SandboxRecord, "state" | "imageId" | "returncode" | "finishReason" | "finishedAt" | "tags">>,
  ): void;

  insertEvent(e: EventRecord): void;
  listEvents(sandboxId: string): EventRecord[];

  insertExec(e: ExecRecord): void;
  getExec(sandboxId: string, execId: string): ExecRecord | null;
  listRunningExecs(sandboxId: string): ExecRecord[];
  finishExec(sandboxId: string, execId: string, returncode: number, reason: string, finishedAt: string): void;

  close(): void;
}

/** Reads what processes wrote, from the durable run directory, live or finished. */
export interface OutputReader {
  /** Yields bytes from `offset` until `isDone()` is true and every byte was yielded. */
  follow(
    sandboxId: string,
    execId: string,
    stream: StreamName,
    offset: number,
    isDone: () => boolean,
    signal: AbortSignal,
  ): AsyncGenerator<Uint8Array>;
  /** The exit status the agent recorded for a process, if any. */
  exitStatus(sandboxId: string, execId: string): Promise<ExitStatus | null>;
}
