// Volume data on the host: <dataDir>/volumes/<volumeId>/data. Files are
// stored with uid 0-based ownership; each sandbox mounts its volumes through
// an idmapped bind (sbx-idmap --rw), so every sandbox's root owns them, whatever
// its host uid range. The volumes dir is root-only: a setuid file a sandbox
// writes into a volume is never reachable by another host user.
import { mkdir, rm, lstat } from "node:fs/promises";
import { join } from "node:path";
import type { VolumeStorage } from "../core/ports.js";

export class LocalVolumeStorage implements VolumeStorage {
  private readonly root: string;

  constructor(dataDir: string) {
    this.root = join(dataDir, "volumes");
  }

  private dataPath(volumeId: string): string {
    if (!/^vo-[a-z0-9]{1,40}$/.test(volumeId)) throw new Error(`bad volume id ${volumeId}`);
    return join(this.root, volumeId, "data");
  }

  async create(volumeId: string): Promise<void> {
    // 0711: the sandbox's uid range must traverse to its idmapped source.
    await mkdir(this.root, { recursive: true, mode: 0o711 });
    await mkdir(join(this.root, volumeId), { mode: 0o711 });
    await mkdir(this.dataPath(volumeId), { mode: 0o755 });
  }

  async remove(volumeId: string): Promise<void> {
    await rm(join(this.root, volumeId), { recursive: true, force: true });
  }

  async mountSource(volumeId: string, subPath: string | undefined): Promise<string> {
    const base = this.dataPath(volumeId);
    if (!subPath) return base;
    // subPath was validated (relative, no "..") but the volume is the sandbox's to
    // write: refuse a path through one of its symlinks.
    let path = base;
    for (const part of subPath.split("/").filter(Boolean)) {
      path = join(path, part);
      try {
        const st = await lstat(path);
        if (!st.isDirectory()) throw new Error(`subPath ${subPath}: ${part} is not a directory`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        await mkdir(path, { mode: 0o755 });
      }
    }
    return path;
  }
}
