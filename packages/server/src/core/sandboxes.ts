// Sandboxes and their processes: creation, the lifecycle timers, exec, the
// streams and stdin, and re-adoption after a server restart. Every change is
// written to the Store before anyone is told about it, so a restarted server
// sees what its predecessor saw.
import { EventEmitter, once } from "node:events";
import { LIMITS, type ExecRequest, type SandboxCreateRequest } from "sbx/wire";
import {
  FailedPreconditionError,
  InternalError,
  NotFoundError,
  AlreadyExistsError,
  ResourceExhaustedError,
  SbxServerError,
  UnavailableError,
} from "./errors.js";
import { newId } from "./ids.js";
import { assertTransition } from "./lifecycle.js";
import type {
  Backend,
  EventTypeName,
  EventRecord,
  ExecRecord,
  ExitStatus,
  FinishReasonName,
  ImageService,
  ImageSource,
  OutputReader,
  ReadBuffers,
  ProbeSpec,
  Scope,
  RuntimeSandbox,
  SandboxRecord,
  SandboxStateName,
  Store,
  StreamName,
} from "./ports.js";
import type { SecretService } from "./secrets.js";
import type { VolumeService } from "./volumes.js";
import type { Admission, Reservation } from "./admission.js";
import { DEFAULT_PROBE_INTERVAL_MS, startProbe } from "./probes.js";
import type { PoolShape, WarmPools } from "./pools.js";
import { imageIdsIn, storedImageSpec, toImageSource } from "./image-source.js";
import { checkTags, enforce, validateCreate, validateExec } from "./validate.js";

/** Defaults a sandbox gets when the request says nothing. */
export const SANDBOX_DEFAULTS = {
  memoryLimitMiB: 2048,
  pidsLimit: 1024,
  /** What a sandbox reserves against the host's capacity when it does not say. */
  cpuRequest: 0.125,
  memoryRequestMiB: 128,
} as const;

/** Return codes of the ways a sandbox can end other than its entrypoint exiting. */
const RETURNCODE: Record<Exclude<FinishReasonName, "exited" | "failed">, number> = {
  terminated: 137,
  timeout: 124,
  "idle-timeout": 137,
  oom: 137,
};

export const ENTRY_EXEC_ID = "entry";

interface LiveSandbox {
  handle: RuntimeSandbox;
  timers: NodeJS.Timeout[];
  /** Set before sbx kills the sandbox, so the exit watcher records why. */
  ending: { reason: FinishReasonName; code: number } | null;
  /** Idle tracking: processes started by exec that still run, and the last activity. */
  activeExecs: Set<string>;
  lastActivity: number;
  /** Execs of sbx's own (probe attempts, workdir setup) waiting for their exit, by exec id. */
  internalWaiters: Map<string, (code: number) => void>;
  internalSeq: number;
  stopProbe: (() => void) | null;
  /**
   * A pooled sandbox started before it had an owner: its env and workdir are
   * given to every process it runs instead of being the agent's own.
   */
  execEnv: Record<string, string>;
  workdir: string | undefined;
}

export interface SandboxServiceDeps {
  store: Store;
  backend: Backend;
  images: ImageService;
  output: OutputReader;
  secrets: SecretService;
  volumes: VolumeService;
  admission: Admission;
  pools: WarmPools;
  log: (msg: string) => void;
}

const now = (): string => new Date().toISOString();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** The `changes` event of a process: emitted when its end is recorded. */
const execKey = (sandboxId: string, execId: string): string => `exec:${sandboxId}:${execId}`;

export class SandboxService {
  private readonly live = new Map<string, LiveSandbox>();
  private readonly changes = new EventEmitter();
  /**
   * Host cleanups in progress, by sandbox: a second finish() waits for the
   * first one's, and close() for all, so no mount outlives the server by accident.
   */
  private readonly cleanups = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly deps: SandboxServiceDeps) {
    this.changes.setMaxListeners(0);
  }

  // ---- create ---------------------------------------------------------------

  async create(scope: Scope, req: SandboxCreateRequest, signal?: AbortSignal): Promise<SandboxRecord> {
    const { store } = this.deps;
    validateCreate(req);
    const app = store.findApp(req.appId);
    if (!app || app.workspaceId !== scope.workspaceId) throw new NotFoundError(`app ${req.appId} does not exist`);
    for (const imageId of imageIdsIn(req.image)) {
      // Images are shared on disk, not across workspaces: one never learns another's ids.
      if (!store.hasImageGrant(scope.workspaceId, imageId)) throw new NotFoundError(`image ${imageId} does not exist`);
    }
    const secretEnv = this.deps.secrets.resolveEnv(scope, req.secrets);
    const volumes = Object.entries(req.volumes ?? {}).map(([path, m]) => {
      this.deps.volumes.get(scope, m.volumeId);
      return { path, volumeId: m.volumeId, readOnly: m.readOnly ?? false, ...(m.subPath ? { subPath: m.subPath } : {}) };
    });
    const probe = probeSpec(req.readinessProbe);
    const reservation: Reservation = {
      cpu: req.cpu ?? SANDBOX_DEFAULTS.cpuRequest,
      memoryBytes: (req.memoryMiB ?? SANDBOX_DEFAULTS.memoryRequestMiB) * 1024 * 1024,
    };
    const timeoutMs = req.timeoutMs ?? LIMITS.defaultTimeoutMs;
    const memoryLimitMiB = req.memoryLimitMiB ?? Math.max(req.memoryMiB ?? 0, SANDBOX_DEFAULTS.memoryLimitMiB);
    const shape = poolShape(req, memoryLimitMiB);
    const claimed = shape ? this.deps.pools.take(shape) : null;
    const execEnv = { ...(req.env ?? {}), ...secretEnv };
    const createdAt = Date.now();
    const record: SandboxRecord = {
      sandboxId: claimed?.sandboxId ?? newId("sb"),
      appId: req.appId,
      name: req.name ?? null,
      state: "created",
      spec: {
        image: storedImageSpec(req.image),
        ...(req.command ? { command: req.command } : {}),
        timeoutMs,
        ...(req.workdir ? { workdir: req.workdir } : {}),
        blockNetwork: req.blockNetwork ?? false,
        memoryLimitBytes: memoryLimitMiB * 1024 * 1024,
        pidsLimit: SANDBOX_DEFAULTS.pidsLimit,
        ...(req.cpuLimit !== undefined ? { cpuLimit: req.cpuLimit } : {}),
        envKeys: [...Object.keys(req.env ?? {}), ...Object.keys(secretEnv)],
        ...(req.idleTimeoutMs !== undefined ? { idleTimeoutMs: req.idleTimeoutMs } : {}),
        ...(probe ? { readinessProbe: probe } : {}),
        ...(volumes.length > 0 ? { volumes } : {}),
        ...(req.cpu !== undefined ? { cpu: req.cpu } : {}),
        ...(req.memoryMiB !== undefined ? { memoryReservationBytes: req.memoryMiB * 1024 * 1024 } : {}),
        ...(claimed ? { pooled: true } : {}),
      },
      // Kept (sealed) for a server restart to give a claimed sandbox's commands their env again.
      sealedEnv: claimed && Object.keys(execEnv).length > 0 ? this.deps.secrets.sealEnv(execEnv) : null,
      imageId: null,
      returncode: null,
      finishReason: null,
      tags: req.tags ?? {},
      createdAt: new Date(createdAt).toISOString(),
      deadlineAt: createdAt + timeoutMs,
      finishedAt: null,
      readyAt: null,
    };
    try {
      this.insertCreated(record);
    } catch (err) {
      if (claimed) void this.discard(claimed.handle);
      throw err;
    }
    if (shape) this.deps.pools.demand(shape);

    try {
      await this.deps.admission.admit(record.sandboxId, reservation, signal);
    } catch (err) {
      if (claimed) void this.discard(claimed.handle);
      await this.finish(record.sandboxId, "failed", 1, err instanceof Error ? err.message : String(err));
      throw err;
    }
    if (this.mustGet(record.sandboxId).state === "finished") {
      this.deps.admission.release(record.sandboxId);
      if (claimed) void this.discard(claimed.handle);
      return this.mustGet(record.sandboxId);
    }
    if (claimed) {
      // One commit for everything a claim records: a warm start is a few
      // ms, and on a small host each commit is a noticeable part of it.
      store.transaction(() => {
        this.moveTo(record.sandboxId, "scheduled", "Scheduled", "admitted (warm pool)");
        store.updateSandbox(record.sandboxId, { imageId: claimed.image.imageId });
        store.grantImage(scope.workspaceId, claimed.image.imageId);
        this.moveTo(record.sandboxId, "started", "Started", null);
      });
      const live = this.attach(record.sandboxId, claimed.handle, record.deadlineAt, { execEnv, workdir: req.workdir });
      // As at a cold start, a workdir the image lacks is created.
      if (req.workdir && (await this.internalExec(live, "setup", ["mkdir", "-p", "--", req.workdir], 10_000).catch(() => -1)) !== 0) {
        await this.end(record.sandboxId, "terminated");
        throw new UnavailableError(`sandbox ${record.sandboxId}: could not create its workdir ${req.workdir}`);
      }
      return this.mustGet(record.sandboxId);
    }

    this.moveTo(record.sandboxId, "scheduled", "Scheduled", "admitted");
    let handle: RuntimeSandbox;
    try {
      const image = await this.deps.images.resolve(
        toImageSource(req.image, (refs) => this.deps.secrets.resolveEnv(scope, refs), scope.workspaceId),
        signal,
      );
      store.updateSandbox(record.sandboxId, { imageId: image.imageId });
      store.grantImage(scope.workspaceId, image.imageId);
      const mounts = await Promise.all(
        volumes.map(async (v) => ({
          hostPath: await this.deps.volumes.mountSource(v.volumeId, v.subPath),
          containerPath: v.path,
          readOnly: v.readOnly,
        })),
      );
      handle = await this.deps.backend.create(
        {
          sandboxId: record.sandboxId,
          image,
          ...(req.command ? { command: req.command } : {}),
          env: { ...(req.env ?? {}), ...secretEnv },
          ...(req.workdir ? { workdir: req.workdir } : {}),
          memoryLimitBytes: record.spec.memoryLimitBytes,
          pidsLimit: record.spec.pidsLimit,
          ...(req.cpuLimit !== undefined ? { cpuLimit: req.cpuLimit } : {}),
          ...(req.cpu !== undefined ? { cpu: req.cpu } : {}),
          ...(record.spec.memoryReservationBytes ? { memoryReservationBytes: record.spec.memoryReservationBytes } : {}),
          blockNetwork: record.spec.blockNetwork,
          ...(mounts.length > 0 ? { mounts } : {}),
        },
        signal,
      );
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      await this.finish(record.sandboxId, "failed", 1, message);
      if (err instanceof SbxServerError) throw err;
      throw new UnavailableError(`sandbox ${record.sandboxId} failed to start: ${message}`, { cause: err });
    }
    if (this.mustGet(record.sandboxId).state === "finished") {
      // Terminated while it was starting: undo the start, keep the recorded end.
      await handle.kill().catch(() => undefined);
      await handle.destroy().catch(() => undefined);
      return this.mustGet(record.sandboxId);
    }
    if (req.command) {
      store.insertExec({
        execId: ENTRY_EXEC_ID,
        sandboxId: record.sandboxId,
        argv: req.command,
        createdAt: now(),
        returncode: null,
        reason: null,
        finishedAt: null,
      });
    }
    this.moveTo(record.sandboxId, "started", "Started", null);
    this.attach(record.sandboxId, handle, record.deadlineAt);
    return this.mustGet(record.sandboxId);
  }

  private insertCreated(record: SandboxRecord): void {
    const { store } = this.deps;
    try {
      store.transaction(() => {
        if (record.name !== null && store.findActiveByName(record.appId, record.name)) {
          throw new AlreadyExistsError(
            `a running sandbox named "${record.name}" already exists in this app; names are free again once it finishes`,
          );
        }
        store.insertSandbox(record);
        store.attachVolumes(record.sandboxId, (record.spec.volumes ?? []).map((v) => v.volumeId));
        store.insertEvent({ sandboxId: record.sandboxId, type: "Created", at: record.createdAt, reason: null, returncode: null });
      });
    } catch (err) {
      if (err instanceof SbxServerError) throw err;
      // The partial unique index is the last word when two creates race.
      if (err instanceof Error && /UNIQUE constraint failed: sandboxes\.app_id, sandboxes\.name/.test(err.message)) {
        throw new AlreadyExistsError(`a running sandbox named "${record.name}" already exists in this app`);
      }
      throw err;
    }
  }

  private moveTo(sandboxId: string, to: SandboxStateName, event: EventTypeName, reason: string | null): void {
    const { store } = this.deps;
    store.transaction(() => {
      const rec = this.mustGet(sandboxId);
      assertTransition(sandboxId, rec.state, to);
      store.updateSandbox(sandboxId, { state: to });
      store.insertEvent({ sandboxId, type: event, at: now(), reason, returncode: null });
    });
    this.changes.emit(`sandbox:${sandboxId}`);
  }

  /** Starts watching a running sandbox: its timeout, its end, its processes. */
  private attach(
    sandboxId: string,
    handle: RuntimeSandbox,
    deadlineAt: number,
    pooled: { execEnv: Record<string, string>; workdir: string | undefined } = { execEnv: {}, workdir: undefined },
  ): LiveSandbox {
    const live: LiveSandbox = {
      handle,
      timers: [],
      ending: null,
      activeExecs: new Set(),
      lastActivity: Date.now(),
      internalWaiters: new Map(),
      internalSeq: 0,
      stopProbe: null,
      execEnv: pooled.execEnv,
      workdir: pooled.workdir,
    };
    this.live.set(sandboxId, live);
    const rec = this.mustGet(sandboxId);
    for (const e of this.deps.store.listRunningExecs(sandboxId)) {
      if (e.execId !== ENTRY_EXEC_ID) live.activeExecs.add(e.execId);
    }
    live.timers.push(
      setTimeout(() => void this.end(sandboxId, "timeout"), Math.max(0, deadlineAt - Date.now())),
    );
    const idleMs = rec.spec.idleTimeoutMs;
    if (idleMs !== undefined) {
      const check = setInterval(() => {
        if (live.activeExecs.size === 0 && Date.now() - live.lastActivity >= idleMs) void this.end(sandboxId, "idle-timeout");
      }, Math.min(1000, Math.max(50, idleMs / 10)));
      live.timers.push(check);
    }
    const probe = rec.spec.readinessProbe;
    if (probe && rec.readyAt === null) {
      live.stopProbe = startProbe(
        probe,
        {
          attempt: (argv, timeoutMs) => this.internalExec(live, "probe", argv, timeoutMs),
          onReady: () => this.markReady(sandboxId),
          log: (msg) => this.deps.log(`sandbox ${sandboxId}: ${msg}`),
        },
        Date.parse(rec.createdAt),
      );
    }
    handle.onExecExit((execId, status) => this.recordExecExit(sandboxId, execId, status));
    handle.waitExit().then(
      ({ code, oom }) => {
        const ending = live.ending;
        if (ending) return this.finish(sandboxId, ending.reason, ending.code);
        if (oom) return this.finish(sandboxId, "oom", RETURNCODE.oom);
        return this.finish(sandboxId, "exited", code);
      },
      (err: unknown) => this.finish(sandboxId, "failed", 1, err instanceof Error ? err.message : String(err)),
    ).catch((err: unknown) => this.deps.log(`sandbox ${sandboxId}: recording its end failed: ${String(err)}`));
    return live;
  }

  private recordExecExit(sandboxId: string, execId: string, status: ExitStatus): void {
    const live = this.live.get(sandboxId);
    const probeWaiter = live?.internalWaiters.get(execId);
    if (probeWaiter) {
      live!.internalWaiters.delete(execId);
      probeWaiter(status.code);
      return;
    }
    if (live?.activeExecs.delete(execId)) live.lastActivity = Date.now();
    this.deps.store.finishExec(sandboxId, execId, status.code, status.reason, now());
    this.changes.emit(execKey(sandboxId, execId));
  }

  /** One probe attempt: an exec the user never sees (not stored, not activity). */
  private internalExec(live: LiveSandbox, kind: "probe" | "setup", argv: string[], timeoutMs: number): Promise<number> {
    const execId = `${kind}-${++live.internalSeq}`;
    return new Promise<number>((resolve, reject) => {
      live.internalWaiters.set(execId, resolve);
      live.handle
        .exec({ execId, argv, env: live.execEnv, timeoutMs, stdoutIgnore: true, stderrIgnore: true })
        .catch((err: unknown) => {
          live.internalWaiters.delete(execId);
          reject(err instanceof Error ? err : new Error(String(err)));
        });
    });
  }

  private markReady(sandboxId: string): void {
    const { store } = this.deps;
    let marked = false;
    store.transaction(() => {
      const rec = store.getSandbox(sandboxId);
      if (!rec || rec.state !== "started" || rec.readyAt !== null) return;
      const at = now();
      store.updateSandbox(sandboxId, { readyAt: at });
      store.insertEvent({ sandboxId, type: "Ready", at, reason: null, returncode: null });
      marked = true;
    });
    if (marked) this.changes.emit(`sandbox:${sandboxId}`);
  }

  /** Gets rid of a pooled sandbox that was claimed but will not be used. */
  private async discard(handle: RuntimeSandbox): Promise<void> {
    await handle.kill().catch(() => undefined);
    await handle.destroy().catch((err: unknown) => this.deps.log(`discarding ${handle.sandboxId}: ${String(err)}`));
  }

  /** Kills a running sandbox for `reason`; the exit watcher then records it. */
  private async end(sandboxId: string, reason: Exclude<FinishReasonName, "exited" | "failed">): Promise<void> {
    const live = this.live.get(sandboxId);
    if (!live) return;
    live.ending ??= { reason, code: RETURNCODE[reason] };
    try {
      await live.handle.kill();
    } catch (err) {
      this.deps.log(`sandbox ${sandboxId}: kill failed: ${String(err)}`);
    }
    // The watcher normally finishes it; make sure even if the runtime lost track.
    await this.finish(sandboxId, live.ending.reason, live.ending.code);
  }

  /** Records the end of a sandbox once and cleans up after it; later calls wait for that cleanup. */
  private async finish(sandboxId: string, reason: FinishReasonName, code: number, detail?: string): Promise<void> {
    const { store, output } = this.deps;
    const running = store.listRunningExecs(sandboxId);
    const statuses = await Promise.all(running.map((e) => output.exitStatus(sandboxId, e.execId).catch(() => null)));
    let finished = false;
    store.transaction(() => {
      const rec = store.getSandbox(sandboxId);
      if (!rec || rec.state === "finished") return;
      const at = now();
      store.updateSandbox(sandboxId, { state: "finished", returncode: code, finishReason: reason, finishedAt: at });
      store.insertEvent({ sandboxId, type: "Finished", at, reason: detail ? `${reason}: ${detail}` : reason, returncode: code });
      running.forEach((e, i) => {
        const s = statuses[i];
        store.finishExec(sandboxId, e.execId, s?.code ?? 137, s?.reason ?? "sandbox-finished", at);
      });
      finished = true;
    });
    if (!finished) {
      // Finished by another path (its exit watcher, say, while terminate
      // was killing it): return only once that path's cleanup is done, so
      // a caller that sees "finished" finds the host cleaned up.
      await this.cleanups.get(sandboxId);
      return;
    }
    const live = this.live.get(sandboxId);
    this.live.delete(sandboxId);
    for (const t of live?.timers ?? []) clearTimeout(t);
    live?.stopProbe?.();
    for (const waiter of live?.internalWaiters.values() ?? []) waiter(-1);
    this.deps.admission.release(sandboxId);
    this.deps.admission.cancel(sandboxId);
    this.changes.emit(`sandbox:${sandboxId}`);
    for (const e of running) this.changes.emit(execKey(sandboxId, e.execId));
    const cleanup = (live ? live.handle.destroy() : this.deps.backend.cleanup(sandboxId)).catch((err: unknown) =>
      this.deps.log(`sandbox ${sandboxId}: cleanup failed: ${String(err)}`),
    );
    this.cleanups.set(sandboxId, cleanup);
    await cleanup;
    this.cleanups.delete(sandboxId);
    await this.deps.volumes
      .releaseSandbox(sandboxId)
      .catch((err: unknown) => this.deps.log(`sandbox ${sandboxId}: releasing its volumes failed: ${String(err)}`));
  }

  // ---- queries and control --------------------------------------------------

  get(scope: Scope, sandboxId: string): SandboxRecord {
    this.authorize(scope, sandboxId);
    return this.mustGet(sandboxId);
  }

  /** Another workspace's sandbox is answered as a missing one is. */
  private authorize(scope: Scope, sandboxId: string): void {
    // One indexed join, not the whole record: every call on a sandbox starts here.
    if (this.deps.store.sandboxWorkspaceId(sandboxId) !== scope.workspaceId) {
      throw new NotFoundError(`sandbox ${sandboxId} does not exist`);
    }
  }

  private mustGet(sandboxId: string): SandboxRecord {
    const rec = this.deps.store.getSandbox(sandboxId);
    if (!rec) throw new NotFoundError(`sandbox ${sandboxId} does not exist`);
    return rec;
  }

  listRunning(
    scope: Scope,
    filter: { appId?: string; tags?: Record<string, string>; afterId?: string; limit: number },
  ): SandboxRecord[] {
    const out: SandboxRecord[] = [];
    let afterId = filter.afterId;
    // Tag filtering happens here, so keep reading pages until one is full.
    for (;;) {
      const page = this.deps.store.listActiveSandboxes({
        workspaceId: scope.workspaceId,
        ...(filter.appId !== undefined ? { appId: filter.appId } : {}),
        ...(afterId !== undefined ? { afterId } : {}),
        limit: filter.limit,
      });
      for (const rec of page) {
        if (hasTags(rec.tags, filter.tags ?? {})) out.push(rec);
        if (out.length === filter.limit) return out;
      }
      if (page.length < filter.limit) return out;
      afterId = page[page.length - 1]!.sandboxId;
    }
  }

  events(scope: Scope, sandboxId: string) {
    this.authorize(scope, sandboxId);
    this.mustGet(sandboxId);
    return this.deps.store.listEvents(sandboxId);
  }

  /** Resolves with the record once finished, or when `timeoutMs` passes. */
  async waitFinished(scope: Scope, sandboxId: string, timeoutMs: number, signal?: AbortSignal): Promise<SandboxRecord> {
    this.authorize(scope, sandboxId);
    return this.waitFor(`sandbox:${sandboxId}`, () => {
      const rec = this.mustGet(sandboxId);
      return rec.state === "finished" ? rec : null;
    }, timeoutMs, signal).then((r) => r ?? this.mustGet(sandboxId));
  }

  async terminate(scope: Scope, sandboxId: string): Promise<SandboxRecord> {
    this.authorize(scope, sandboxId);
    const rec = this.mustGet(sandboxId);
    if (rec.state === "finished") return rec;
    if (this.live.has(sandboxId)) {
      await this.end(sandboxId, "terminated");
    } else {
      // Still being created: record the end; create() notices and undoes its work.
      await this.finish(sandboxId, "terminated", RETURNCODE.terminated);
    }
    return this.mustGet(sandboxId);
  }

  /** Resolves once the readiness probe succeeded, or after timeoutMs with ready still false. */
  async waitReady(scope: Scope, sandboxId: string, timeoutMs: number, signal?: AbortSignal): Promise<SandboxRecord> {
    this.authorize(scope, sandboxId);
    const rec = this.mustGet(sandboxId);
    if (!rec.spec.readinessProbe) {
      throw new FailedPreconditionError(
        `sandbox ${sandboxId} has no readiness probe; pass readinessProbe (Probe.withTcp or Probe.withExec) to sandboxes.create`,
      );
    }
    const done = await this.waitFor(`sandbox:${sandboxId}`, () => {
      const r = this.mustGet(sandboxId);
      return r.readyAt !== null || r.state === "finished" ? r : null;
    }, timeoutMs, signal);
    const r = done ?? this.mustGet(sandboxId);
    if (r.readyAt === null && r.state === "finished") {
      throw new FailedPreconditionError(`sandbox ${sandboxId} finished (${r.finishReason}) before it was ready`);
    }
    return r;
  }

  /**
   * Activity that keeps a sandbox from its idle timeout without an exec: the
   * hook tunnels call while a TCP connection through them is open.
   */
  touch(sandboxId: string): void {
    const live = this.live.get(sandboxId);
    if (live) live.lastActivity = Date.now();
  }

  setTags(scope: Scope, sandboxId: string, tags: Record<string, string>): SandboxRecord {
    this.authorize(scope, sandboxId);
    enforce([{ field: "tags", problem: checkTags(tags) }]);
    this.mustGet(sandboxId);
    this.deps.store.updateSandbox(sandboxId, { tags });
    return this.mustGet(sandboxId);
  }

  /** The running sandbox with that name in the app named appName. */
  getByName(scope: Scope, appName: string, name: string): SandboxRecord {
    const app = this.deps.store.findAppByName(scope.workspaceId, appName);
    if (!app) throw new NotFoundError(`app "${appName}" does not exist`);
    const rec = this.deps.store.findActiveByName(app.appId, name);
    if (!rec) throw new NotFoundError(`no running sandbox named "${name}" in app "${appName}"`);
    return rec;
  }

  /** Every stored event, then new ones as they are recorded; ends after Finished. */
  /** Every stored event, then new ones as they are recorded; ends after Finished. Checks access at once. */
  followEvents(scope: Scope, sandboxId: string, signal: AbortSignal): AsyncGenerator<EventRecord> {
    this.authorize(scope, sandboxId);
    return this.eventsFrom(sandboxId, signal);
  }

  private async *eventsFrom(sandboxId: string, signal: AbortSignal): AsyncGenerator<EventRecord> {
    let sent = 0;
    for (;;) {
      const events = this.deps.store.listEvents(sandboxId);
      for (; sent < events.length; sent++) yield events[sent]!;
      if (events.some((e) => e.type === "Finished") || signal.aborted) return;
      try {
        await once(this.changes, `sandbox:${sandboxId}`, { signal });
      } catch {
        return;
      }
    }
  }

  // ---- processes ------------------------------------------------------------

  private requireLive(sandboxId: string): LiveSandbox {
    const rec = this.mustGet(sandboxId);
    const live = this.live.get(sandboxId);
    if (rec.state !== "started" || !live) {
      const why = rec.state === "finished" ? `has finished (${rec.finishReason})` : `is ${rec.state}, not started`;
      throw new FailedPreconditionError(
        `sandbox ${sandboxId} ${why}; commands run only in a running sandbox: create a new one`,
      );
    }
    return live;
  }

  async exec(scope: Scope, sandboxId: string, req: ExecRequest): Promise<ExecRecord> {
    this.authorize(scope, sandboxId);
    validateExec(req);
    const live = this.requireLive(sandboxId);
    const secretEnv = this.deps.secrets.resolveEnv(scope, req.secrets);
    const record: ExecRecord = {
      execId: newId("ex"),
      sandboxId,
      argv: req.argv,
      createdAt: now(),
      returncode: null,
      reason: null,
      finishedAt: null,
    };
    this.deps.store.insertExec(record);
    live.activeExecs.add(record.execId);
    live.lastActivity = Date.now();
    try {
      const workdir = req.workdir ?? live.workdir;
      await live.handle.exec({
        execId: record.execId,
        argv: req.argv,
        env: { ...live.execEnv, ...(req.env ?? {}), ...secretEnv },
        ...(workdir ? { workdir } : {}),
        timeoutMs: req.timeoutMs ?? 0,
        stdoutIgnore: req.stdout === "ignore",
        stderrIgnore: req.stderr === "ignore",
      });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      live.activeExecs.delete(record.execId);
      this.deps.store.finishExec(sandboxId, record.execId, 1, "failed", now());
      if (this.mustGet(sandboxId).state === "finished") {
        throw new FailedPreconditionError(`sandbox ${sandboxId} finished while the command was being started`);
      }
      // The agent refuses when the sandbox is out of something (its disk, process slots).
      if (/No space left|too many processes|Resource temporarily unavailable/i.test(message)) {
        throw new ResourceExhaustedError(`sandbox ${sandboxId} cannot start the command: ${message}`, { cause: err });
      }
      throw new InternalError(`starting the command in sandbox ${sandboxId} failed: ${message}`, { cause: err });
    }
    return record;
  }

  getExec(scope: Scope, sandboxId: string, execId: string): ExecRecord {
    this.authorize(scope, sandboxId);
    return this.execOf(sandboxId, execId);
  }

  private execOf(sandboxId: string, execId: string): ExecRecord {
    const rec = this.deps.store.getExec(sandboxId, execId);
    if (rec) return rec;
    this.mustGet(sandboxId); // a missing sandbox is reported as such
    throw new NotFoundError(`process ${execId} does not exist in sandbox ${sandboxId}`);
  }

  async waitExec(scope: Scope, sandboxId: string, execId: string, timeoutMs: number, signal?: AbortSignal): Promise<ExecRecord> {
    this.authorize(scope, sandboxId);
    const done = await this.waitFor(execKey(sandboxId, execId), () => {
      const rec = this.execOf(sandboxId, execId);
      return rec.returncode !== null ? rec : null;
    }, timeoutMs, signal);
    return done ?? this.settledExec(sandboxId, execId);
  }

  /** A process's exit code once it has ended, else null; for the trailer of its output streams. */
  async exitCodeOf(scope: Scope, sandboxId: string, execId: string): Promise<number | null> {
    this.authorize(scope, sandboxId);
    return (await this.settledExec(sandboxId, execId)).returncode;
  }

  /** The exec's record, with its exit taken from disk when the agent has not reported it (yet, or ever). */
  private async settledExec(sandboxId: string, execId: string): Promise<ExecRecord> {
    const rec = this.execOf(sandboxId, execId);
    if (rec.returncode !== null) return rec;
    const status = await this.deps.output.exitStatus(sandboxId, execId);
    if (status) this.recordExecExit(sandboxId, execId, status);
    return this.execOf(sandboxId, execId);
  }

  follow(
    scope: Scope,
    sandboxId: string,
    execId: string,
    stream: StreamName,
    offset: number,
    signal: AbortSignal,
    buffers?: ReadBuffers,
  ): AsyncGenerator<Uint8Array> {
    this.authorize(scope, sandboxId);
    this.execOf(sandboxId, execId);
    const isDone = (): boolean => {
      const rec = this.deps.store.getExec(sandboxId, execId);
      return rec === null || rec.returncode !== null;
    };
    const key = execKey(sandboxId, execId);
    const onDone = (wake: () => void) => {
      this.changes.on(key, wake);
      return () => void this.changes.off(key, wake);
    };
    return this.deps.output.follow(sandboxId, execId, stream, offset, isDone, signal, { onDone, ...(buffers ? { buffers } : {}) });
  }

  /** Writes stdin bytes at `offset`; returns the total the process has accepted. */
  async writeStdin(scope: Scope, sandboxId: string, execId: string, offset: number, data: Uint8Array): Promise<number> {
    this.authorize(scope, sandboxId);
    const live = this.requireLive(sandboxId);
    this.requireRunningExec(sandboxId, execId);
    const end = offset + data.length;
    const deadline = Date.now() + 10_000;
    live.lastActivity = Date.now();
    let acked = await this.stdinCall(sandboxId, execId, () => live.handle.writeStdin(execId, offset, data));
    // The agent buffers at most 1 MiB per process; hand it the rest as the process reads.
    while (acked < end && Date.now() < deadline) {
      if (this.deps.store.getExec(sandboxId, execId)?.returncode !== null) break;
      // The agent drains its buffer into the pipe in about a millisecond when
      // the process reads: wait no longer than that before handing more.
      await sleep(1);
      acked = await this.stdinCall(sandboxId, execId, () =>
        live.handle.writeStdin(execId, acked, data.subarray(acked - offset)),
      );
    }
    return acked;
  }

  async closeStdin(scope: Scope, sandboxId: string, execId: string): Promise<void> {
    this.authorize(scope, sandboxId);
    const live = this.requireLive(sandboxId);
    if (this.execOf(sandboxId, execId).returncode !== null) return; // closing is idempotent
    try {
      await this.stdinCall(sandboxId, execId, () => live.handle.closeStdin(execId));
    } catch (err) {
      // The process (or the whole sandbox) ended as we closed: its stdin is closed.
      if (await this.hasEnded(sandboxId, execId)) return;
      throw err;
    }
  }

  private requireRunningExec(sandboxId: string, execId: string): void {
    const rec = this.execOf(sandboxId, execId);
    if (rec.returncode !== null) {
      throw new FailedPreconditionError(`process ${execId} has exited (code ${rec.returncode}); its stdin is closed`);
    }
  }

  /**
   * A stdin request to the agent. Errors it reports are the caller's problem,
   * not the server's; one that comes from the process or sandbox ending under
   * the request (the agent's connection drops as it dies) says so.
   */
  private async stdinCall<T>(sandboxId: string, execId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof SbxServerError) throw err;
      if (await this.hasEnded(sandboxId, execId)) {
        const rec = this.mustGet(sandboxId);
        const what = rec.state === "finished" ? `sandbox ${sandboxId} has finished (${rec.finishReason})` : `process ${execId} has exited`;
        throw new FailedPreconditionError(`${what}; its stdin is closed`, { cause: err });
      }
      throw new FailedPreconditionError(err instanceof Error ? err.message : String(err), { cause: err });
    }
  }

  /** Whether the process or its sandbox has ended, allowing a moment for the news to arrive. */
  private async hasEnded(sandboxId: string, execId: string): Promise<boolean> {
    const ended = () =>
      this.mustGet(sandboxId).state === "finished" || this.deps.store.getExec(sandboxId, execId)?.returncode !== null;
    for (let i = 0; i < 20 && !ended(); i++) {
      if ((await this.deps.output.exitStatus(sandboxId, execId)) !== null) return true;
      await sleep(50);
    }
    return ended();
  }

  // ---- waiting ----------------------------------------------------------------

  private async waitFor<T>(key: string, check: () => T | null, timeoutMs: number, signal?: AbortSignal): Promise<T | null> {
    const first = check();
    if (first !== null) return first;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    const onAbort = () => ac.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        try {
          await once(this.changes, key, { signal: ac.signal });
        } catch {
          return check();
        }
        const r = check();
        if (r !== null) return r;
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  // ---- restarts -----------------------------------------------------------------

  /** Re-adopts the sandboxes an earlier server process left running. */
  async recover(): Promise<{ adopted: number; lost: number }> {
    const { store, backend, output } = this.deps;
    let adopted = 0;
    let lost = 0;
    const adoptedIds: string[] = [];
    const records = store.listActiveSandboxes();
    const handles = await backend.adoptAll(records.filter((r) => r.state === "started").map((r) => r.sandboxId));
    for (const rec of records) {
      if (rec.state !== "started") {
        await this.finish(rec.sandboxId, "failed", 1, "the server stopped before the sandbox started");
        lost++;
        continue;
      }
      const handle = handles.get(rec.sandboxId) ?? null;
      if (!handle) {
        const entry = rec.spec.command ? await output.exitStatus(rec.sandboxId, ENTRY_EXEC_ID) : null;
        if (entry) await this.finish(rec.sandboxId, "exited", entry.code);
        else await this.finish(rec.sandboxId, "failed", 1, "the sandbox was gone when the server restarted");
        lost++;
        continue;
      }
      this.deps.admission.restore(rec.sandboxId, {
        cpu: rec.spec.cpu ?? SANDBOX_DEFAULTS.cpuRequest,
        memoryBytes: rec.spec.memoryReservationBytes ?? SANDBOX_DEFAULTS.memoryRequestMiB * 1024 * 1024,
      });
      this.attach(rec.sandboxId, handle, rec.deadlineAt, {
        execEnv: rec.sealedEnv ? this.deps.secrets.openEnv(rec.sealedEnv) : {},
        workdir: rec.spec.pooled ? rec.spec.workdir : undefined,
      });
      adoptedIds.push(rec.sandboxId);
      for (const e of store.listRunningExecs(rec.sandboxId)) {
        const status = await output.exitStatus(rec.sandboxId, e.execId);
        if (status) this.recordExecExit(rec.sandboxId, e.execId, status);
      }
      adopted++;
    }
    // Before serving: a create still in progress would look like an orphan.
    const orphans = await backend.cleanupOrphans?.(adoptedIds).catch((err: unknown) => {
      this.deps.log(`orphan cleanup: ${String(err)}`);
      return [];
    });
    if (orphans && orphans.length > 0) this.deps.log(`removed ${orphans.length} sandbox(es) a dead server left half made: ${orphans.join(", ")}`);
    return { adopted, lost };
  }

  /**
   * Stops timers and watchers, and waits (at most 30 s) for teardowns in
   * flight; running sandboxes keep running for the next server.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const live of this.live.values()) {
      for (const t of live.timers) clearTimeout(t);
      live.stopProbe?.();
    }
    this.live.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.cleanups.values()]),
      new Promise((r) => (timer = setTimeout(r, 30_000))),
    ]);
    clearTimeout(timer);
  }
}

/**
 * The pool a create can be served from, or null when it cannot: an entrypoint
 * or volumes are fixed at start, and images behind credentials or built with
 * secrets stay out of shared pools.
 */
function poolShape(req: SandboxCreateRequest, memoryLimitMiB: number): PoolShape | null {
  if (req.command || Object.keys(req.volumes ?? {}).length > 0) return null;
  const image = req.image;
  let source: ImageSource;
  if (image.kind === "debianSlim") source = toImageSource(image);
  else if (image.kind === "id") source = toImageSource(image);
  else if (image.kind === "registry" && !image.secret) source = toImageSource(image);
  else return null;
  return {
    appId: req.appId,
    source,
    memoryLimitBytes: memoryLimitMiB * 1024 * 1024,
    pidsLimit: SANDBOX_DEFAULTS.pidsLimit,
    ...(req.cpu !== undefined ? { cpu: req.cpu } : {}),
    ...(req.cpuLimit !== undefined ? { cpuLimit: req.cpuLimit } : {}),
    ...(req.memoryMiB !== undefined ? { memoryReservationBytes: req.memoryMiB * 1024 * 1024 } : {}),
    blockNetwork: req.blockNetwork ?? false,
  };
}

function probeSpec(p: SandboxCreateRequest["readinessProbe"]): ProbeSpec | undefined {
  if (!p) return undefined;
  const intervalMs = p.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  return p.kind === "tcp" ? { kind: "tcp", port: p.port, intervalMs } : { kind: "exec", argv: p.argv, intervalMs };
}

function hasTags(have: Record<string, string>, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => have[k] === v);
}
