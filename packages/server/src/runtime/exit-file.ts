// The agent's exit file, "<code> <reason>\n" (agent/PROTOCOL.md). The
// sandbox can write it too, so anything malformed is treated as absent.
import type { ExitStatus } from "../core/ports.js";

const EXIT_RE = /^(\d{1,3}) (exited|signaled|timeout|failed)\n?$/;

export function parseExit(text: string): ExitStatus | null {
  const m = EXIT_RE.exec(text);
  if (!m) return null;
  const code = Number(m[1]);
  return code > 255 ? null : { code, reason: m[2] as ExitStatus["reason"] };
}
