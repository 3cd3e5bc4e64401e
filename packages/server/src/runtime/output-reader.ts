// Reads process output from the run directory the agent writes
// (<dataDir>/sandboxes/<id>/run/procs/<execId>/{stdout,stderr,exit}). The
// files outlive both the agent and the server, so a stream can be read from
// any offset, during the process's life or after it, by a later server.
import { open, readFile, stat } from "node:fs/promises";
import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import type { ExitStatus, OutputReader, StreamName } from "../core/ports.js";

const CHUNK = 256 * 1024;
/** Fallback poll when inotify misses a change (e.g. the dir did not exist yet). */
const POLL_MS = 50;
const EXIT_RE = /^(\d{1,3}) (exited|signaled|timeout|failed)\n?$/;

export function procDir(dataDir: string, sandboxId: string, execId: string): string {
  return join(dataDir, "sandboxes", sandboxId, "run", "procs", execId);
}

/** Parses an exit file; anything malformed (the sandbox wrote it, after all) is null. */
export function parseExitFile(text: string): ExitStatus | null {
  const m = EXIT_RE.exec(text);
  if (!m) return null;
  const code = Number(m[1]);
  if (code > 255) return null;
  return { code, reason: m[2] as ExitStatus["reason"] };
}

export class FileOutputReader implements OutputReader {
  constructor(private readonly dataDir: string) {}

  async exitStatus(sandboxId: string, execId: string): Promise<ExitStatus | null> {
    try {
      const text = await readFile(join(procDir(this.dataDir, sandboxId, execId), "exit"), { encoding: "utf8", flag: "r" });
      return parseExitFile(text.slice(0, 64));
    } catch {
      return null;
    }
  }

  async *follow(
    sandboxId: string,
    execId: string,
    stream: StreamName,
    offset: number,
    isDone: () => boolean,
    signal: AbortSignal,
  ): AsyncGenerator<Uint8Array> {
    const dir = procDir(this.dataDir, sandboxId, execId);
    const path = join(dir, stream);
    let pos = offset;
    let wake: (() => void) | null = null;
    let watcher: FSWatcher | null = null;
    const onAbort = () => wake?.();
    signal.addEventListener("abort", onAbort);
    try {
      for (;;) {
        if (signal.aborted) return;
        const size = await fileSize(path);
        if (size > pos) {
          const fh = await open(path, "r");
          try {
            while (pos < size && !signal.aborted) {
              const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - pos));
              const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
              if (bytesRead === 0) break;
              pos += bytesRead;
              yield buf.subarray(0, bytesRead);
            }
          } finally {
            await fh.close();
          }
          continue;
        }
        // Nothing new. Done when the process has ended and its last bytes were read:
        // the agent writes the exit file only after reaping, so every write is already in.
        if (isDone() || (await exists(join(dir, "exit")))) {
          if ((await fileSize(path)) > pos) continue;
          return;
        }
        if (!watcher) {
          try {
            watcher = watch(dir, () => wake?.());
          } catch {
            watcher = null; // the dir does not exist yet: poll
          }
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, POLL_MS);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      watcher?.close();
    }
  }
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
