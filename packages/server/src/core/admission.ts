// Admission: what running sandboxes reserve (cpu cores, memory) against the
// host's configured capacity. A create that does not fit waits, FIFO, in a
// bounded queue (the sandbox stays Created); past the queue's bound it fails
// with ResourceExhaustedError. Reservations are requests, not limits: the
// cgroup limits are set separately.
import { ResourceExhaustedError } from "./errors.js";

export interface Capacity {
  cpu: number;
  memoryBytes: number;
  /** Creates that may wait for capacity at once. */
  queueLimit: number;
}

export interface Reservation {
  cpu: number;
  memoryBytes: number;
}

interface Waiter {
  sandboxId: string;
  need: Reservation;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class Admission {
  private readonly reserved = new Map<string, Reservation>();
  private readonly queue: Waiter[] = [];
  private used: Reservation = { cpu: 0, memoryBytes: 0 };

  constructor(private readonly capacity: Capacity) {}

  /** Resolves once the sandbox's reservation is held; rejects if it can never fit or the queue is full. */
  admit(sandboxId: string, need: Reservation, signal?: AbortSignal): Promise<void> {
    if (need.cpu > this.capacity.cpu || need.memoryBytes > this.capacity.memoryBytes) {
      return Promise.reject(
        new ResourceExhaustedError(
          `the sandbox asks for ${need.cpu} cores and ${mib(need.memoryBytes)} MiB, more than this host offers ` +
            `(${this.capacity.cpu} cores, ${mib(this.capacity.memoryBytes)} MiB)`,
        ),
      );
    }
    if (this.queue.length === 0 && this.fits(need)) {
      this.hold(sandboxId, need);
      return Promise.resolve();
    }
    if (this.queue.length >= this.capacity.queueLimit) {
      return Promise.reject(
        new ResourceExhaustedError(
          `the host is at capacity and ${this.queue.length} sandbox(es) already wait for it; retry later or terminate some`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { sandboxId, need, resolve, reject };
      this.queue.push(waiter);
      signal?.addEventListener(
        "abort",
        () => {
          const i = this.queue.indexOf(waiter);
          if (i >= 0) {
            this.queue.splice(i, 1);
            reject(new ResourceExhaustedError("the create was cancelled while waiting for capacity"));
            this.drain();
          }
        },
        { once: true },
      );
    });
  }

  /** Takes a reservation without waiting (sandboxes adopted after a restart). */
  restore(sandboxId: string, need: Reservation): void {
    this.hold(sandboxId, need);
  }

  release(sandboxId: string): void {
    const r = this.reserved.get(sandboxId);
    if (!r) return;
    this.reserved.delete(sandboxId);
    this.used = { cpu: this.used.cpu - r.cpu, memoryBytes: this.used.memoryBytes - r.memoryBytes };
    this.drain();
  }

  /** Drops a waiter (the sandbox was terminated while queued). */
  cancel(sandboxId: string): void {
    const i = this.queue.findIndex((w) => w.sandboxId === sandboxId);
    if (i < 0) return;
    const [w] = this.queue.splice(i, 1);
    w!.reject(new ResourceExhaustedError("the sandbox was terminated while waiting for capacity"));
    this.drain();
  }

  stats(): { used: Reservation; capacity: Capacity; queued: number } {
    return { used: { ...this.used }, capacity: this.capacity, queued: this.queue.length };
  }

  private fits(need: Reservation): boolean {
    // A small epsilon: sums of fractional cores drift.
    return (
      this.used.cpu + need.cpu <= this.capacity.cpu + 1e-9 &&
      this.used.memoryBytes + need.memoryBytes <= this.capacity.memoryBytes
    );
  }

  private hold(sandboxId: string, need: Reservation): void {
    this.reserved.set(sandboxId, need);
    this.used = { cpu: this.used.cpu + need.cpu, memoryBytes: this.used.memoryBytes + need.memoryBytes };
  }

  private drain(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.need)) {
      const w = this.queue.shift()!;
      this.hold(w.sandboxId, w.need);
      w.resolve();
    }
  }
}

const mib = (bytes: number): number => Math.round(bytes / 1024 / 1024);
