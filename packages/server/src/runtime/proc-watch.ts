// Whether a sandbox's PID 1 is still the process it started as, cheaply
// enough to ask ten times a second for every sandbox. Its /proc/<pid>/stat
// is opened once and re-read in place (one pread, where reading the file by
// path cost ~0.1 ms here): a zombie reads as dead (this host's init reaps
// orphans 1–2 s late), and once the process is reaped the open file fails
// instead of describing a later process that got the same pid.
import { closeSync, openSync, readFileSync, readSync } from "node:fs";

const scratch = Buffer.alloc(1024);

/** The state letter and start time (clock ticks since boot) in /proc/<pid>/stat's text. */
export function parseProcStat(text: string): { state: string; startTime: string } | null {
  // comm may contain spaces and parentheses: the fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const startTime = rest[19]; // field 22 overall
  return rest[0] && startTime ? { state: rest[0], startTime } : null;
}

/** The start time in /proc/<pid>/stat's text; null for a zombie (dead to us) or text that does not parse. */
function liveStartTime(text: string): string | null {
  const st = parseProcStat(text);
  return st && st.state !== "Z" && st.state !== "X" ? st.startTime : null;
}

/**
 * A process's start time, to tell it from a later process with the same
 * pid; null if it is gone or a zombie. Reads the file by path: for one look,
 * where ProcessWatch is for many.
 */
export function procStartTime(pid: number): string | null {
  try {
    return liveStartTime(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

export class ProcessWatch {
  private fd: number | null = null;

  /** `startTime`: the process's start time when it was started (null: unknown, never alive). */
  constructor(
    readonly pid: number,
    private readonly startTime: string | null,
  ) {}

  alive(): boolean {
    if (!(this.pid > 0) || this.startTime === null) return false;
    try {
      this.fd ??= openSync(`/proc/${this.pid}/stat`, "r");
      const n = readSync(this.fd, scratch, 0, scratch.length, 0);
      if (liveStartTime(scratch.toString("latin1", 0, n)) === this.startTime) return true;
    } catch {
      // ESRCH once reaped; ENOENT if it was never there
    }
    this.close();
    return false;
  }

  close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = null;
  }
}
