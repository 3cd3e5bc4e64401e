// Volumes inside a sandbox: each volume's host dir gets an idmapped bind at
// <sandbox dir>/volumes/<n> (writable unless read-only), mapped to the
// sandbox's uid range, and that bind is what the OCI spec mounts at the
// container path. Teardown needs nothing special: unmountAll(sandbox dir)
// takes these along with the rootfs.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { RuntimeMount } from "../core/ports.js";
import { runTool, UID_RANGE, type SandboxPaths } from "./rootfs.js";

export async function mountVolumes(
  p: SandboxPaths,
  mounts: RuntimeMount[],
  uidBase: number,
  idmapBin: string,
): Promise<{ source: string; destination: string; readOnly: boolean }[]> {
  if (mounts.length === 0) return [];
  const args = [String(uidBase), String(UID_RANGE)];
  const out = mounts.map((m, i) => {
    const source = join(p.dir, "volumes", String(i));
    mkdirSync(source, { recursive: true, mode: 0o711 });
    if (!m.readOnly) args.push("--rw");
    args.push(m.hostPath, source);
    return { source, destination: m.containerPath, readOnly: m.readOnly };
  });
  await runTool(idmapBin, args);
  return out;
}
