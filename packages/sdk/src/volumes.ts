// Volumes: directories stored on the server that sandboxes mount at create
// (`volumes: { "/path": volume }`). Their data outlives the sandboxes.
import { InvalidError, NotFoundError } from "./errors.js";
import type { HttpClient } from "./http.js";
import type { CallOptions } from "./process.js";
import {
  LIMITS,
  NAME_PATTERN,
  type Volume as WireVolume,
  type VolumeList,
  type VolumeLookupRequest,
  type VolumeMount,
} from "./wire.js";

const NAME = new RegExp(NAME_PATTERN);

export interface VolumeMountOptions {
  /** Mount read-only: writes inside the sandbox fail (EROFS). */
  readOnly?: boolean;
  /** Mount only this directory of the volume (relative, no `..`). */
  subPath?: string;
}

export class Volume {
  readonly volumeId: string;
  /** null for an ephemeral volume. */
  readonly name: string | null;
  readonly ephemeral: boolean;
  readonly createdAt: string;
  readonly readOnly: boolean;
  readonly subPath: string | undefined;

  /** @internal Use volumes.fromName() or volumes.ephemeral(). */
  constructor(wire: WireVolume, mount: VolumeMountOptions = {}) {
    this.volumeId = wire.volumeId;
    this.name = wire.name;
    this.ephemeral = wire.ephemeral;
    this.createdAt = wire.createdAt;
    this.readOnly = mount.readOnly ?? false;
    this.subPath = mount.subPath;
  }

  /** The same volume with other mount options (read-only, a sub-directory); this one is unchanged. */
  withMountOptions(options: VolumeMountOptions = {}): Volume {
    if (options.readOnly !== undefined && typeof options.readOnly !== "boolean") throw new InvalidError("readOnly must be a boolean");
    if (options.subPath !== undefined) checkSubPath(options.subPath);
    const wire: WireVolume = { volumeId: this.volumeId, name: this.name, ephemeral: this.ephemeral, createdAt: this.createdAt };
    return new Volume(wire, {
      readOnly: options.readOnly ?? this.readOnly,
      subPath: options.subPath ?? this.subPath,
    });
  }

  /** @internal The mount as sent with a create request. */
  toMount(): VolumeMount {
    return {
      volumeId: this.volumeId,
      ...(this.readOnly ? { readOnly: true } : {}),
      ...(this.subPath !== undefined ? { subPath: this.subPath } : {}),
    };
  }
}

/** Cheap client-side check; the server is the authority. */
export function checkSubPath(subPath: unknown): void {
  if (
    typeof subPath !== "string" ||
    subPath === "" ||
    subPath.startsWith("/") ||
    subPath.split("/").some((part) => part === "..") ||
    subPath.length > 1024
  ) {
    throw new InvalidError(`subPath must be a relative path inside the volume, without "..", of at most 1024 characters (got ${JSON.stringify(subPath)})`);
  }
}

function checkName(name: unknown): asserts name is string {
  if (typeof name !== "string" || !NAME.test(name) || name.length > LIMITS.maxNameLength) {
    throw new InvalidError(`volume name must match ${NAME_PATTERN} and have at most ${LIMITS.maxNameLength} characters (got ${JSON.stringify(name)})`);
  }
}

/**
 * The `volumes` create parameter, with volumes (or promises of them) resolved
 * into mounts. Mount paths must be absolute and distinct.
 */
export async function resolveVolumes(
  volumes: Record<string, Volume | Promise<Volume>> | undefined,
): Promise<Record<string, VolumeMount> | undefined> {
  if (volumes === undefined) return undefined;
  if (volumes === null || typeof volumes !== "object" || Array.isArray(volumes)) {
    throw new InvalidError('volumes must be an object of mount path → Volume, e.g. { "/data": volume }');
  }
  const entries = Object.entries(volumes);
  for (const [path] of entries) {
    if (!path.startsWith("/")) throw new InvalidError(`volume mount path must be absolute (got ${JSON.stringify(path)})`);
  }
  const resolved = await Promise.all(entries.map(([, v]) => v));
  const out: Record<string, VolumeMount> = {};
  entries.forEach(([path], i) => {
    const volume = resolved[i];
    if (!(volume instanceof Volume)) throw new InvalidError(`volumes[${JSON.stringify(path)}] is not a Volume (make one with volumes.fromName() or volumes.ephemeral())`);
    out[path] = volume.toMount();
  });
  return out;
}

export interface VolumeFromNameParams extends CallOptions {
  /** Create the volume when there is none of that name (else NotFoundError). */
  createIfMissing?: boolean;
}

export interface VolumeDeleteParams extends CallOptions {
  /** Succeed when there is no such volume (else NotFoundError). */
  allowMissing?: boolean;
}

export class VolumeService {
  readonly #http: HttpClient;

  /** @internal */
  constructor(http: HttpClient) {
    this.#http = http;
  }

  /** Looks a volume up by name; NotFoundError when missing unless `createIfMissing`. */
  async fromName(name: string, params: VolumeFromNameParams = {}): Promise<Volume> {
    checkName(name);
    const body: VolumeLookupRequest = { name, createIfMissing: params.createIfMissing ?? false };
    const wire = await this.#http.json<WireVolume>({ method: "POST", path: "/v1/volumes/lookup", body, signal: params.signal });
    return new Volume(wire);
  }

  /**
   * A new volume without a name, deleted by the server once the last sandbox
   * using it has finished (or by volumes.delete(volume)).
   */
  async ephemeral(opts: CallOptions = {}): Promise<Volume> {
    const wire = await this.#http.json<WireVolume>({ method: "POST", path: "/v1/volumes/ephemeral", body: {}, signal: opts.signal });
    return new Volume(wire);
  }

  /** The volumes on the server, named and ephemeral. */
  async list(opts: CallOptions = {}): Promise<Volume[]> {
    const list = await this.#http.json<VolumeList>({ method: "GET", path: "/v1/volumes", signal: opts.signal });
    return list.volumes.map((v) => new Volume(v));
  }

  /**
   * Deletes a volume and its data, by name or as a Volume object (the way to
   * delete an ephemeral one). ConflictError while a running sandbox mounts it;
   * NotFoundError when there is none, unless `allowMissing`.
   */
  async delete(volume: string | Volume, params: VolumeDeleteParams = {}): Promise<void> {
    let path: string;
    if (volume instanceof Volume) path = `/v1/volumes/${encodeURIComponent(volume.volumeId)}`;
    else {
      checkName(volume);
      path = `/v1/volumes/by-name/${encodeURIComponent(volume)}`;
    }
    try {
      await this.#http.json({ method: "DELETE", path, signal: params.signal });
    } catch (err) {
      if (!(params.allowMissing && err instanceof NotFoundError)) throw err;
    }
  }
}
