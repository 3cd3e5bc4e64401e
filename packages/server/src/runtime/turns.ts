// How many sandbox creates, and how many destroys, run at once. A create
// is a burst of processes (sbx-idmap, runc and its init, sbx-netwire) and
// ~0.1-0.25 s of CPU; a hundred at once on two cores made every one of them
// finish at the end together, and left the server's own thread a sliver of
// the cores: during such a burst a GET took up to 1.2 s and an exec in
// another sandbox up to 2.2 s. Creates past the width wait here, first come
// first served, and a waiting create whose caller gives up leaves the line
// without having run. The burst's wall time did not change with the width
// (2, 4, 8 or none: 18-20 s on two cores): the CPU is the bound, and one
// create per core keeps it busy. Destroys (runc delete, unmounts, the
// disk's removal, the network's teardown) take turns in a line of their
// own, so that a mass terminate does not starve the server either, nor
// hold creates back.
import { availableParallelism } from "node:os";

/** One per core, and at least two (one can wait on a process while the other computes). */
export function defaultTurns(): number {
  return Math.max(2, availableParallelism());
}

/** A line: at most `width` of its tasks run at once, the others wait in order. */
export class Turns {
  #running = 0;
  readonly #waiting: { start: () => void }[] = [];

  constructor(readonly width: number) {
    if (!Number.isInteger(width) || width < 1) throw new RangeError(`turns must be a whole number ≥ 1 (got ${width})`);
  }

  /** Tasks running now, and waiting. */
  get load(): { running: number; waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length };
  }

  /**
   * Runs `fn` once fewer than `width` others run, telling it how long it
   * waited (ms); rejects with the signal's reason if it aborts while waiting.
   */
  async run<T>(fn: (waitedMs: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const queued = performance.now();
    await this.#enter(signal);
    try {
      return await fn(performance.now() - queued);
    } finally {
      this.#leave();
    }
  }

  #enter(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.#running < this.width) {
      this.#running++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiting.indexOf(entry);
        if (i >= 0) this.#waiting.splice(i, 1);
        reject(signal!.reason);
      };
      const entry = {
        start: () => {
          signal?.removeEventListener("abort", onAbort);
          this.#running++;
          resolve();
        },
      };
      this.#waiting.push(entry);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #leave(): void {
    this.#running--;
    this.#waiting.shift()?.start();
  }
}
