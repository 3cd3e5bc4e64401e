// Warm pools: per app and sandbox shape (image, resources, network mode),
// sandboxes already started and idle, so a create of that shape only has to
// claim one. What is per sandbox (name, tags, env, workdir, timeout, probe)
// is applied at claim; a sandbox with an entrypoint or volumes is never
// pooled (both are fixed when the sandbox starts).
//
// A pooled sandbox is in the runtime but not in the store: nobody can reach
// it until it is claimed, it is handed out once and never returned, and a
// restarted server's orphan cleanup removes what a dead one left in a pool.
// Pools fill in the background, one sandbox at a time, and a pool nobody
// claimed from for `idleMs` drains to nothing.
import { newId } from "./ids.js";
import type { Backend, ImageService, ImageSource, ResolvedImage, RuntimeSandbox, RuntimeSpec } from "./ports.js";

/** Everything of a RuntimeSpec that a pool fixes in advance. */
export interface PoolShape {
  appId: string;
  source: ImageSource;
  memoryLimitBytes: number;
  pidsLimit: number;
  cpu?: number;
  cpuLimit?: number;
  memoryReservationBytes?: number;
  blockNetwork: boolean;
}

export interface PooledSandbox {
  sandboxId: string;
  handle: RuntimeSandbox;
  image: ResolvedImage;
}

interface Pool {
  shape: PoolShape;
  ready: PooledSandbox[];
  filling: boolean;
  lastClaim: number;
  refillTimer: NodeJS.Timeout | null;
}

const REFILL_DELAY_MS = 300;

export interface WarmPoolOptions {
  backend: Backend;
  images: ImageService;
  /** How many to keep warm for an app (server default, or the app's own setting). */
  sizeFor(appId: string): number;
  log(msg: string): void;
  /** A pool unclaimed for this long drains (default 10 minutes). */
  idleMs?: number;
}

export function poolKey(shape: PoolShape): string {
  return JSON.stringify([
    shape.appId,
    shape.source,
    shape.memoryLimitBytes,
    shape.pidsLimit,
    shape.cpu ?? null,
    shape.cpuLimit ?? null,
    shape.memoryReservationBytes ?? null,
    shape.blockNetwork,
  ]);
}

export class WarmPools {
  private readonly pools = new Map<string, Pool>();
  private closed = false;
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly opts: WarmPoolOptions) {
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /** A ready sandbox of that shape, removed from its pool for good; null if none is ready. */
  take(shape: PoolShape): PooledSandbox | null {
    const pool = this.pools.get(poolKey(shape));
    if (!pool) return null;
    pool.lastClaim = Date.now();
    return pool.ready.shift() ?? null;
  }

  /** Says a create of this shape happened: the pool (re)fills to its size in the background. */
  demand(shape: PoolShape): void {
    if (this.closed || this.opts.sizeFor(shape.appId) <= 0) return;
    const key = poolKey(shape);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = { shape, ready: [], filling: false, lastClaim: Date.now(), refillTimer: null };
      this.pools.set(key, pool);
    }
    pool.lastClaim = Date.now();
    // Refill a moment later: on a small host a refill (mkfs, runc) right away
    // competes with the first commands of the sandbox just handed out.
    if (!pool.refillTimer) {
      pool.refillTimer = setTimeout(() => {
        pool!.refillTimer = null;
        void this.fill(pool!);
      }, REFILL_DELAY_MS);
      pool.refillTimer.unref();
    }
  }

  private async fill(pool: Pool): Promise<void> {
    if (pool.filling) return;
    pool.filling = true;
    try {
      while (!this.closed && pool.ready.length < this.opts.sizeFor(pool.shape.appId)) {
        const image = await this.opts.images.resolve(pool.shape.source);
        const spec: RuntimeSpec = {
          sandboxId: newId("sb"),
          image,
          env: {},
          memoryLimitBytes: pool.shape.memoryLimitBytes,
          pidsLimit: pool.shape.pidsLimit,
          ...(pool.shape.cpu !== undefined ? { cpu: pool.shape.cpu } : {}),
          ...(pool.shape.cpuLimit !== undefined ? { cpuLimit: pool.shape.cpuLimit } : {}),
          ...(pool.shape.memoryReservationBytes !== undefined ? { memoryReservationBytes: pool.shape.memoryReservationBytes } : {}),
          blockNetwork: pool.shape.blockNetwork,
        };
        const handle = await this.opts.backend.create(spec);
        await warmUp(handle);
        if (this.closed) {
          await discard(handle);
          return;
        }
        pool.ready.push({ sandboxId: spec.sandboxId, handle, image });
      }
    } catch (err) {
      this.opts.log(`warm pool for app ${pool.shape.appId}: filling failed: ${String(err)}`);
    } finally {
      pool.filling = false;
    }
  }

  /** Drains pools nobody claimed from lately, and pools of apps whose size went down. */
  private sweep(): void {
    const idleMs = this.opts.idleMs ?? 10 * 60_000;
    for (const [key, pool] of this.pools) {
      const size = Date.now() - pool.lastClaim > idleMs ? 0 : this.opts.sizeFor(pool.shape.appId);
      while (pool.ready.length > size) void discard(pool.ready.pop()!.handle);
      if (size === 0 && !pool.filling) this.pools.delete(key);
    }
  }

  stats(): { pools: number; ready: number } {
    let ready = 0;
    for (const p of this.pools.values()) ready += p.ready.length;
    return { pools: this.pools.size, ready };
  }

  /** Destroys every pooled sandbox (they belong to no one). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const p of this.pools.values()) if (p.refillTimer) clearTimeout(p.refillTimer);
    const all = [...this.pools.values()].flatMap((p) => p.ready.splice(0));
    this.pools.clear();
    await Promise.allSettled(all.map((p) => discard(p.handle)));
  }
}

/** The exec id of a pooled sandbox's warm-up; a user's exec ids start with "ex-". */
export const WARM_UP_EXEC_ID = "sbx-warm-up";
const WARM_UP_TIMEOUT_MS = 5000;

/**
 * Runs `true` once in a fresh pooled sandbox, before anyone can claim it. A
 * sandbox's first command costs ~1 ms more than later ones here (the agent's
 * first clone, the loader's first lookups in the new rootfs), and that ms
 * belongs to the pool's background work, not to the claimer's first
 * command. Best effort: an image without `true` just skips it.
 */
async function warmUp(handle: RuntimeSandbox): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  // Unsubscribed once done: a listener is also told of (and remembers) every
  // later exec of the sandbox, the claimer's included.
  let unsubscribe: (() => void) | undefined;
  const exited = new Promise<void>((resolve) => {
    unsubscribe = handle.onExecExit((id) => id === WARM_UP_EXEC_ID && resolve());
    timer = setTimeout(resolve, WARM_UP_TIMEOUT_MS);
  });
  try {
    await handle.exec({ execId: WARM_UP_EXEC_ID, argv: ["true"], env: {}, timeoutMs: WARM_UP_TIMEOUT_MS, stdoutIgnore: true, stderrIgnore: true });
    await exited;
  } catch {
    // not warmed: the claimer's first command pays, as without a pool
  } finally {
    clearTimeout(timer);
    unsubscribe?.();
  }
}

async function discard(handle: RuntimeSandbox): Promise<void> {
  await handle.kill().catch(() => undefined);
  await handle.destroy().catch(() => undefined);
}
