// Stored records → the wire shapes of wire.ts. The one place that decides
// what of a record a client sees.
import type { App, Exec, Sandbox, SandboxEvent, SecretInfo, Volume, Workspace } from "sbx/wire";
import type { AppRecord, EventRecord, ExecRecord, SandboxRecord, VolumeRecord, WorkspaceRecord } from "../core/index.js";

export function presentApp(a: AppRecord): App {
  return { appId: a.appId, name: a.name, createdAt: a.createdAt };
}

export function presentSandbox(s: SandboxRecord): Sandbox {
  return {
    sandboxId: s.sandboxId,
    appId: s.appId,
    name: s.name,
    state: s.state,
    returncode: s.returncode,
    finishReason: s.finishReason,
    imageId: s.imageId,
    tags: s.tags,
    createdAt: s.createdAt,
    hasReadinessProbe: s.spec.readinessProbe !== undefined,
    ready: s.readyAt !== null,
  };
}

export function presentEvent(e: EventRecord): SandboxEvent {
  return { type: e.type, at: e.at, reason: e.reason, returncode: e.returncode };
}

export function presentExec(e: ExecRecord): Exec {
  return { execId: e.execId, sandboxId: e.sandboxId, returncode: e.returncode, reason: e.reason };
}

export function presentVolume(v: VolumeRecord): Volume {
  return { volumeId: v.volumeId, name: v.name, ephemeral: v.ephemeral, createdAt: v.createdAt };
}

export function presentSecret(s: SecretInfo): SecretInfo {
  return { name: s.name, keys: s.keys, createdAt: s.createdAt };
}

export function presentWorkspace(w: WorkspaceRecord): Workspace {
  return { workspaceId: w.workspaceId, name: w.name, createdAt: w.createdAt };
}
