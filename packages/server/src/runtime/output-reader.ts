// Reads process output from the run directory the agent writes
// (<dataDir>/sandboxes/<id>/run/procs/<execId>/{stdout,stderr,exit}). The
// files outlive both the agent and the server, so a stream can be read from
// any offset, during the process's life or after it, by a later server.
// The run directory is writable by the sandbox: every file is opened with
// openNoFollowSync, so a planted symlink or FIFO reads as nothing.
import { closeSync, fstatSync, read, readSync, watch, type FSWatcher } from "node:fs";
import { promisify } from "node:util";
import type { ExitStatus, FollowOptions, OutputReader, StreamName } from "../core/ports.js";
import { parseExit } from "./exit-file.js";
import { openNoFollowSync, readFileNoFollow, sandboxPaths } from "./rootfs.js";

const readAt = promisify(read);
/** Bigger reads mean fewer syscalls and HTTP chunks: 1 MiB about doubles a stream's rate. */
const CHUNK = 1024 * 1024;
/** Reads up to this size are synchronous (see follow). */
const SMALL_READ = 64 * 1024;
/** Fallback poll when inotify misses a change (e.g. the dir did not exist yet). */
const POLL_MS = 50;

export class FileOutputReader implements OutputReader {
  /** `pollMs`: the fallback poll's interval (tests set it long, to see that wake-ups alone suffice). */
  constructor(
    private readonly dataDir: string,
    private readonly pollMs = POLL_MS,
  ) {}

  async exitStatus(sandboxId: string, execId: string): Promise<ExitStatus | null> {
    const b = readFileNoFollow(this.runDir(sandboxId), `procs/${execId}/exit`, 64);
    return b ? parseExit(b.toString("utf8")) : null;
  }

  private runDir(sandboxId: string): string {
    return sandboxPaths(this.dataDir, sandboxId).run;
  }

  async *follow(
    sandboxId: string,
    execId: string,
    stream: StreamName,
    offset: number,
    isDone: () => boolean,
    signal: AbortSignal,
    opts: FollowOptions = {},
  ): AsyncGenerator<Uint8Array> {
    const run = this.runDir(sandboxId);
    const rel = `procs/${execId}/${stream}`;
    let fd: number | null = null;
    let pos = offset;
    let wake: (() => void) | null = null;
    // Set by news that came while nobody waited (between a look and the
    // wait), so the wait does not sleep through it.
    let news = false;
    const poke = () => {
      news = true;
      wake?.();
    };
    let watcher: FSWatcher | null = null;
    signal.addEventListener("abort", poke);
    const unsubscribe = opts.onDone?.(poke);
    const size = (): number => {
      fd ??= openNoFollowSync(run, rel);
      return fd === null ? 0 : fstatSync(fd).size;
    };
    try {
      for (;;) {
        if (signal.aborted) return;
        news = false;
        const end = size();
        if (end > pos && fd !== null) {
          while (pos < end && !signal.aborted) {
            const want = Math.min(CHUNK, end - pos);
            // A small read is done at once: through the thread pool it would
            // cost two thread hand-offs (~0.5 ms here) for a few µs of copying
            // from the page cache. Big reads stay off the event loop, in a
            // buffer the consumer may have handed back.
            let buf: Uint8Array;
            let bytesRead: number;
            if (want <= SMALL_READ) {
              buf = Buffer.allocUnsafe(want);
              bytesRead = readSync(fd, buf, 0, want, pos);
            } else {
              buf = opts.buffers?.lend(CHUNK) ?? Buffer.allocUnsafe(CHUNK);
              bytesRead = (await readAt(fd, buf, 0, want, pos)).bytesRead;
            }
            if (bytesRead === 0) break;
            pos += bytesRead;
            yield buf.subarray(0, bytesRead);
          }
          continue;
        }
        // Nothing new. Done when the process has ended and its last bytes were read:
        // the agent reports the end only after reaping, so every write is in.
        if (isDone() || (await this.exitStatus(sandboxId, execId)) !== null) {
          if (size() > pos) continue;
          return;
        }
        if (!watcher) {
          try {
            watcher = watch(`${run}/procs/${execId}`, poke);
            continue; // look once more: a change before the watch began is not reported
          } catch {
            watcher = null; // not there yet: poll
          }
        }
        if (news) continue;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, this.pollMs);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
      }
    } finally {
      signal.removeEventListener("abort", poke);
      unsubscribe?.();
      watcher?.close();
      if (fd !== null) closeSync(fd);
    }
  }
}
