// What create costs, with and without the writable disk image (disk.ts):
// N sandboxes created one after another through the local backend, each
// destroyed before the next. Not part of the suite (no assertions); numbers
// quoted in SECURITY.md come from here.
//
//   node --import tsx test/reliability/create-cost.bench.ts [N]
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createLocalBackend, type LocalSandbox } from "../../packages/server/src/runtime/index.js";
import type { RuntimeSpec } from "../../packages/server/src/core/ports.js";
import { ensureBaseRootfsTar } from "../../packages/server/src/images/index.js";

const AGENT_DIR = join(import.meta.dirname, "../../agent/build");
// The Debian base rootfs the server builds its default image from (cached host-wide; built if missing).
const BASE_TAR = process.env.SBX_BASE_TAR ?? (await ensureBaseRootfsTar());
const N = Number(process.argv[2] ?? 10);

const tmp = mkdtempSync("/var/tmp/sbx-bench-");
chmodSync(tmp, 0o711);
const layer = join(tmp, "layer");
mkdirSync(layer);
execFileSync("tar", ["-xf", BASE_TAR, "-C", layer, "--numeric-owner"]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

for (const disk of [false, true]) {
  const dataDir = join(tmp, `data-${disk}`);
  const backend = createLocalBackend({ dataDir, agentDir: AGENT_DIR, ...(disk ? {} : { disk: false }), log: () => undefined });
  const totals: number[] = [];
  const destroys: number[] = [];
  const diskMs: number[] = [];
  for (let i = 0; i < N + 1; i++) {
    const spec: RuntimeSpec = {
      sandboxId: `bench-${disk ? "d" : "n"}-${i}-${process.pid}`,
      image: { imageId: "sha256:bench", layers: [layer], config: { env: [] } },
      env: {},
      memoryLimitBytes: 512 << 20,
      pidsLimit: 256,
      blockNetwork: false,
    };
    const t0 = performance.now();
    const sb = (await backend.create(spec)) as LocalSandbox;
    const t1 = performance.now();
    await sb.destroy();
    const t2 = performance.now();
    if (i === 0) continue; // warm-up (host network, page cache)
    totals.push(t1 - t0);
    destroys.push(t2 - t1);
    diskMs.push(sb.timings?.diskMs ?? 0);
    if (process.env.VERBOSE) console.log(JSON.stringify(sb.timings, (_k, v: unknown) => (typeof v === "number" ? Math.round(v) : v)));
  }
  console.log(
    `disk ${disk ? "on " : "off"}: create median ${median(totals).toFixed(0)} ms (min ${Math.min(...totals).toFixed(0)}, max ${Math.max(...totals).toFixed(0)}), ` +
      `disk step median ${median(diskMs).toFixed(0)} ms (parallel with idmap), destroy median ${median(destroys).toFixed(0)} ms, n=${N}`,
  );
}
if (existsSync(tmp)) rmSync(tmp, { recursive: true, force: true });
