// Images: lazy descriptions of a root filesystem, resolved by the server when
// a sandbox is created.
import { InvalidError } from "./errors.js";
import { Secret } from "./secrets.js";
import type { ImageSpec } from "./wire.js";

type ImageSource =
  | { kind: "registry"; ref: string; secret: Secret | Promise<Secret> | undefined }
  | { kind: "debianSlim"; pythonVersion: string | undefined }
  | { kind: "id"; imageId: string };

const IMAGE_ID = /^sha256:[a-f0-9]{64}$/;

export class Image {
  /** The content id (sha256:…) once known: after a sandbox using the image started. */
  imageId: string | undefined;
  readonly #source: ImageSource;

  /** @internal Use the images service. */
  constructor(source: ImageSource) {
    this.#source = source;
    this.imageId = source.kind === "id" ? source.imageId : undefined;
  }

  /** @internal The wire form, with its secret resolved. */
  async toWire(): Promise<ImageSpec> {
    const s = this.#source;
    switch (s.kind) {
      case "registry": {
        if (s.secret === undefined) return { kind: "registry", ref: s.ref };
        const secret = await s.secret;
        if (!(secret instanceof Secret)) throw new InvalidError("the registry secret is not a Secret (make one with secrets.fromObject())");
        return { kind: "registry", ref: s.ref, secret: secret.toWire() };
      }
      case "debianSlim":
        return s.pythonVersion === undefined ? { kind: "debianSlim" } : { kind: "debianSlim", pythonVersion: s.pythonVersion };
      case "id":
        return { kind: "id", imageId: s.imageId };
    }
  }
}

export interface DebianSlimParams {
  pythonVersion?: string;
}

export class ImageService {
  /**
   * An image from an OCI registry, e.g. "python:3.13-slim". Lazy: nothing is
   * pulled until a sandbox uses it. `secret` holds REGISTRY_USERNAME and
   * REGISTRY_PASSWORD for a private registry.
   */
  fromRegistry(ref: string, secret?: Secret | Promise<Secret>): Image {
    if (typeof ref !== "string" || ref.trim() === "") throw new InvalidError(`image reference must be a non-empty string (got ${JSON.stringify(ref)})`);
    return new Image({ kind: "registry", ref, secret });
  }

  /** A Debian slim image with Python (the default image of a sandbox). */
  debianSlim(params: DebianSlimParams = {}): Image {
    if (params.pythonVersion !== undefined && !/^3\.\d+$/.test(params.pythonVersion)) {
      throw new InvalidError(`pythonVersion must look like "3.12" (got ${JSON.stringify(params.pythonVersion)})`);
    }
    return new Image({ kind: "debianSlim", pythonVersion: params.pythonVersion });
  }

  /** An image the server already has, by content id (sha256:…). */
  fromId(imageId: string): Image {
    if (typeof imageId !== "string" || !IMAGE_ID.test(imageId)) {
      throw new InvalidError(`image id must look like sha256:<64 hex digits> (got ${JSON.stringify(imageId)})`);
    }
    return new Image({ kind: "id", imageId });
  }
}
