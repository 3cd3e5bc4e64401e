// 4. Throughput: N bytes (1 GiB) of stdout read through the SDK, and N bytes
// written to stdin (`wc -c` checks the count), versus a bare pipe
// `head -c N /dev/zero | cat > /dev/null`. Figures are times per GiB, so
// p95/max are the slow tail; the ratio is a rate ratio (baseline ms ÷ sbx ms).
//
// sbx keeps a process's output on the sandbox's disk (so a reader can resume
// from an offset, after a reconnect or a server restart), and the kernel
// writes that copy back to the host's disk in the 30 s after the transfer.
// Back to back, a transfer shares the two cores with the previous one's
// writeback. So each stdout transfer of the target figure starts with the
// host's writeback flushed (not timed), like each section does; the same
// transfers back to back are a row of their own.
//
// stdout is read the way the SDK offers for bulk output: a BYOB reader with
// one 1 MiB buffer, filled straight from the socket. The same transfers
// read as the stream's own chunks (`for await`) are a row of their own.
import { barePipe } from "../baselines/pipe.js";
import { run } from "../proc.js";
import { limit, type Ctx } from "../context.js";
import type { Row, SectionResult } from "../report.js";
import { readStdout, SANDBOX_TIMEOUT_MS, writeStdin, type ReadStyle, type Transfer } from "../sbx-ops.js";
import { summarize, timeLoop, type Summary } from "../stats.js";

export const THROUGHPUT_TARGET = 0.3;
const GIB = 1 << 30;

export async function throughput(ctx: Ctx): Promise<SectionResult> {
  const { cfg, server, app } = ctx;
  const t = cfg.throughput;
  const S = `4. throughput (${t.bytes >= GIB ? `${t.bytes / GIB} GiB` : `${t.bytes >> 20} MiB`}, time per GiB)`;
  const notes: string[] = [];

  const perGiB = (x: Transfer) => (x.ms * GIB) / x.bytes;
  const transfers: Record<string, Transfer[]> = { stdout: [], stdin: [] };
  const backToBack: Transfer[] = [];
  const chunked: Transfer[] = [];
  // Each direction in a sandbox of its own: the GiBs of stdout are written
  // back to the stdout sandbox's disk for a while after they were read, and
  // terminating it drops what is left, so the stdin figure is stdin's alone.
  for (const dir of ["stdout", "stdin"] as const) {
    if (dir === "stdin") await run(["sync"], { timeoutMs: 120_000 }); // what the stdout sandbox's destroy wrote
    const sb = await server.client.sandboxes.create(app, undefined, { timeoutMs: SANDBOX_TIMEOUT_MS });
    try {
      ctx.log(`throughput: sbx ${dir} × ${t.iterations}`);
      const transfer = async (into: Transfer[], style: ReadStyle = "byob") => {
        const x = dir === "stdout" ? await readStdout(sb, t.bytes, limit(ctx, t.timeLimitMs), style) : await writeStdin(sb, t.bytes, limit(ctx, t.timeLimitMs));
        if (x.truncated) notes.push(`throughput: an ${dir} transfer was cut at ${(x.bytes / (1 << 20)).toFixed(0)} MiB by the time limit; its rate is scaled.`);
        into.push(x);
        return perGiB(x);
      };
      await timeLoop({ count: t.iterations, timeLimitMs: limit(ctx, t.timeLimitMs) }, async () => {
        // stdin writes nothing to a disk: only stdout's transfers leave writeback behind.
        if (dir === "stdout") await run(["sync"], { timeoutMs: 120_000 });
        return transfer(transfers[dir]!);
      });
      if (dir === "stdout") {
        ctx.log(`throughput: sbx stdout back to back × ${t.iterations}`);
        await timeLoop({ count: t.iterations, timeLimitMs: limit(ctx, t.timeLimitMs) }, () => transfer(backToBack));
        ctx.log(`throughput: sbx stdout as the stream's chunks × ${t.iterations}`);
        await timeLoop({ count: t.iterations, timeLimitMs: limit(ctx, t.timeLimitMs) }, async () => {
          await run(["sync"], { timeoutMs: 120_000 });
          return transfer(chunked, "chunks");
        });
      }
    } finally {
      await sb.terminate();
    }
  }
  ctx.log(`throughput: bare pipe × ${t.pipeIterations}`);
  const pipeMs = await timeLoop({ count: t.pipeIterations, timeLimitMs: limit(ctx, t.timeLimitMs), warmup: cfg.warmup }, async () => ((await barePipe(t.bytes)) * GIB) / t.bytes);
  const pipe = summarize(pipeMs);

  const mibps = (s: Summary) => (s.n ? `${(1024 / (s.p50 / 1000)).toFixed(0)} MiB/s` : "");
  const rows: Row[] = [];
  const data: Record<string, unknown> = { bytes: t.bytes, barePipeMsPerGiB: pipe };
  for (const dir of ["stdout", "stdin"] as const) {
    const s = summarize(transfers[dir]!.map(perGiB));
    const r = pipe.n && s.n ? pipe.p50 / s.p50 : NaN;
    rows.push({
      section: S,
      figure: `sbx ${dir}${dir === "stdout" ? ", BYOB reader" : ""} (${mibps(s)})`,
      unit: "ms/GiB",
      summary: s,
      ratio: r,
      baseline: "pipe rate",
      target: `≥ ${THROUGHPUT_TARGET}×`,
      met: r >= THROUGHPUT_TARGET,
    });
    data[dir] = { msPerGiB: s, rateRatioToPipe: r, transfers: transfers[dir] };
    if (dir === "stdout" && backToBack.length) {
      const b = summarize(backToBack.map(perGiB));
      const rb = pipe.n ? pipe.p50 / b.p50 : NaN;
      rows.push({ section: S, figure: `  back to back, no flush (${mibps(b)})`, unit: "ms/GiB", summary: b, ratio: rb, baseline: "pipe rate" });
      data.stdoutBackToBack = { msPerGiB: b, rateRatioToPipe: rb, transfers: backToBack };
    }
    if (dir === "stdout" && chunked.length) {
      const c = summarize(chunked.map(perGiB));
      const rc = pipe.n ? pipe.p50 / c.p50 : NaN;
      rows.push({ section: S, figure: `  as chunks (for await), flushed (${mibps(c)})`, unit: "ms/GiB", summary: c, ratio: rc, baseline: "pipe rate" });
      data.stdoutChunks = { msPerGiB: c, rateRatioToPipe: rc, transfers: chunked };
    }
  }
  rows.push({ section: S, figure: `bare pipe (${mibps(pipe)})`, unit: "ms/GiB", summary: pipe });
  return { name: "throughput", rows, data, notes };
}
