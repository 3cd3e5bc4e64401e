// The operations measured through the SDK, each checked for its result.
import type { App, Sandbox, SbxClient } from "sbx";
import { pool } from "./stats.js";

/** Sandboxes made by the benchmark outlive no run: long enough for the density section, no longer. */
export const SANDBOX_TIMEOUT_MS = 30 * 60 * 1000;

export interface StartResult {
  sandbox: Sandbox;
  /** From the create call to `echo hi`'s exit code, ms. */
  totalMs: number;
  /** The create call alone, ms. */
  createMs: number;
}

/** create(app) + exec `echo hi`, reading stdout and waiting for the exit code. */
export async function createAndEcho(client: SbxClient, app: App, signal?: AbortSignal): Promise<StartResult> {
  const t0 = performance.now();
  const sandbox = await client.sandboxes.create(app, undefined, { timeoutMs: SANDBOX_TIMEOUT_MS, signal });
  const createMs = performance.now() - t0;
  try {
    const p = await sandbox.exec(["echo", "hi"], { signal });
    const out = await p.stdout.readText();
    const code = await p.wait({ signal });
    const totalMs = performance.now() - t0;
    if (code !== 0 || out !== "hi\n") throw new Error(`echo hi in ${sandbox.sandboxId}: exit ${code}, stdout ${JSON.stringify(out)}`);
    return { sandbox, totalMs, createMs };
  } catch (e) {
    await sandbox.terminate().catch(() => undefined);
    throw e;
  }
}

/** exec `argv` and wait for its exit code (expected 0); ms from the call to the code. */
export async function execRoundTrip(sb: Sandbox, argv: string[]): Promise<number> {
  const t0 = performance.now();
  const p = await sb.exec(argv, { stdout: "ignore", stderr: "ignore" });
  const code = await p.wait();
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}`);
  return ms;
}

export interface Transfer {
  bytes: number;
  ms: number;
  /** The time limit cut the transfer short. */
  truncated: boolean;
}

/**
 * How stdout is read: `byob` reads into one 1 MiB buffer of the reader's
 * (a BYOB reader: the SDK's path for bulk output, straight from its socket
 * into that buffer); `chunks` takes the chunks the stream hands out (`for await`).
 */
export type ReadStyle = "byob" | "chunks";

/** Reads `bytes` of stdout (`head -c N /dev/zero`) in binary mode; counts them. */
export async function readStdout(sb: Sandbox, bytes: number, timeLimitMs: number, style: ReadStyle = "byob"): Promise<Transfer> {
  const t0 = performance.now();
  const deadline = t0 + timeLimitMs;
  const p = await sb.exec(["head", "-c", String(bytes), "/dev/zero"], { mode: "binary", stderr: "ignore" });
  let n = 0;
  let truncated = false;
  if (style === "byob") {
    const reader = p.stdout.getReader({ mode: "byob" });
    let buf = new Uint8Array(1 << 20);
    for (;;) {
      const { done, value } = await reader.read(buf);
      if (done || !value) break;
      n += value.byteLength;
      // The read hands the buffer back in its result (a BYOB read transfers it).
      buf = new Uint8Array(value.buffer);
      if (performance.now() > deadline) {
        truncated = true;
        await reader.cancel();
        break;
      }
    }
  } else {
    for await (const chunk of p.stdout) {
      n += chunk.length;
      if (performance.now() > deadline) {
        truncated = true;
        break;
      }
    }
  }
  if (!truncated) {
    const code = await p.wait();
    if (code !== 0 || n !== bytes) throw new Error(`head -c ${bytes}: exit ${code}, ${n} bytes read`);
  }
  return { bytes: n, ms: performance.now() - t0, truncated };
}

/** Writes `bytes` zero bytes to `wc -c`'s stdin in `chunk`-sized writes, closes it, checks the count. */
export async function writeStdin(sb: Sandbox, bytes: number, timeLimitMs: number, chunk = 16 << 20): Promise<Transfer> {
  const buf = new Uint8Array(Math.min(chunk, bytes));
  const t0 = performance.now();
  const deadline = t0 + timeLimitMs;
  const p = await sb.exec(["wc", "-c"]);
  let sent = 0;
  let truncated = false;
  while (sent < bytes) {
    if (performance.now() > deadline) {
      truncated = true;
      break;
    }
    const piece = buf.subarray(0, Math.min(buf.length, bytes - sent));
    await p.stdin.writeBytes(piece);
    sent += piece.length;
  }
  await p.stdin.close();
  const out = await p.stdout.readText();
  const code = await p.wait();
  const ms = performance.now() - t0;
  if (code !== 0 || Number(out.trim()) !== sent) throw new Error(`wc -c after ${sent} bytes: exit ${code}, said ${JSON.stringify(out)}`);
  return { bytes: sent, ms, truncated };
}

/** Terminates sandboxes, 16 at a time; returns how many failed. */
export async function terminateAll(sbs: Sandbox[]): Promise<number> {
  let failed = 0;
  await pool(sbs.length, 16, async (i) => {
    await sbs[i]!.terminate().catch(() => failed++);
  });
  return failed;
}
