// Volumes: named (or ephemeral) directories that outlive sandboxes and are
// mounted into them. The data lives wherever the VolumeStorage port puts it;
// here is only which volumes exist and who uses them.
import { FailedPreconditionError, NotFoundError } from "./errors.js";
import { newId } from "./ids.js";
import type { Scope, Store, VolumeRecord, VolumeStorage } from "./ports.js";
import { checkName, enforce } from "./validate.js";

export class VolumeService {
  constructor(
    private readonly store: Store,
    private readonly storage: VolumeStorage,
  ) {}

  async lookup(scope: Scope, name: string, createIfMissing: boolean): Promise<VolumeRecord> {
    enforce([{ field: "name", problem: checkName(name) }]);
    const found = this.store.findVolumeByName(scope.workspaceId, name);
    if (found) return found;
    if (!createIfMissing) {
      throw new NotFoundError(`volume "${name}" does not exist; pass createIfMissing: true to create it`);
    }
    const rec: VolumeRecord = {
      volumeId: newId("vo"),
      workspaceId: scope.workspaceId,
      name,
      ephemeral: false,
      createdAt: new Date().toISOString(),
    };
    await this.storage.create(rec.volumeId);
    try {
      this.store.insertVolume(rec);
    } catch (err) {
      // Lost a race for the name: use the winner's volume.
      await this.storage.remove(rec.volumeId);
      const winner = this.store.findVolumeByName(scope.workspaceId, name);
      if (winner) return winner;
      throw err;
    }
    return rec;
  }

  async createEphemeral(scope: Scope): Promise<VolumeRecord> {
    const rec: VolumeRecord = {
      volumeId: newId("vo"),
      workspaceId: scope.workspaceId,
      name: null,
      ephemeral: true,
      createdAt: new Date().toISOString(),
    };
    await this.storage.create(rec.volumeId);
    this.store.insertVolume(rec);
    return rec;
  }

  list(scope: Scope): VolumeRecord[] {
    return this.store.listVolumes(scope.workspaceId);
  }

  get(scope: Scope, volumeId: string): VolumeRecord {
    const rec = this.store.getVolume(volumeId);
    if (!rec || rec.workspaceId !== scope.workspaceId) throw new NotFoundError(`volume ${volumeId} does not exist`);
    return rec;
  }

  async deleteByName(scope: Scope, name: string): Promise<void> {
    const rec = this.store.findVolumeByName(scope.workspaceId, name);
    if (!rec) throw new NotFoundError(`volume "${name}" does not exist`);
    await this.delete(scope, rec.volumeId);
  }

  async delete(scope: Scope, volumeId: string): Promise<void> {
    const rec = this.get(scope, volumeId);
    const users = this.store.activeSandboxesUsingVolume(volumeId);
    if (users.length > 0) {
      throw new FailedPreconditionError(
        `volume ${rec.name ?? volumeId} is mounted by running sandbox(es) ${users.join(", ")}; terminate them first`,
      );
    }
    this.store.deleteVolume(volumeId);
    await this.storage.remove(volumeId);
  }

  /** Called when a sandbox finished: ephemeral volumes nobody mounts any more go. */
  async releaseSandbox(sandboxId: string): Promise<void> {
    for (const volumeId of this.store.volumesOfSandbox(sandboxId)) {
      const rec = this.store.getVolume(volumeId);
      if (rec?.ephemeral && this.store.activeSandboxesUsingVolume(volumeId).length === 0) {
        this.store.deleteVolume(volumeId);
        await this.storage.remove(volumeId);
      }
    }
  }

  mountSource(volumeId: string, subPath: string | undefined): Promise<string> {
    return this.storage.mountSource(volumeId, subPath);
  }
}
