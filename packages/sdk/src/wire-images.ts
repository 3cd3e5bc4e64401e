// The image part of the wire format (see wire.ts): how a client names an
// image, and the image-management shapes (builds and their logs, the image
// list, removal). Part of the one schema source.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { EnvMap, SecretRef } from "./wire-common.js";

const ImageIdPattern = "^sha256:[a-f0-9]{64}$";

/**
 * How a client names an image. `dockerfile` is `base` plus one layer built
 * from Dockerfile instructions; it nests (a chain of dockerfileCommands()).
 */
export const ImageSpec = Type.Recursive(
  (This) =>
    Type.Union([
      Type.Object(
        {
          kind: Type.Literal("registry"),
          ref: Type.String({ minLength: 1, maxLength: 512 }),
          secret: Type.Optional(SecretRef),
        },
        { additionalProperties: false },
      ),
      Type.Object(
        { kind: Type.Literal("debianSlim"), pythonVersion: Type.Optional(Type.String({ maxLength: 16 })) },
        { additionalProperties: false },
      ),
      Type.Object({ kind: Type.Literal("id"), imageId: Type.String({ pattern: ImageIdPattern }) }, { additionalProperties: false }),
      Type.Object(
        {
          kind: Type.Literal("dockerfile"),
          base: This,
          commands: Type.Array(Type.String({ maxLength: 64 * 1024 }), { maxItems: 256 }),
          /** Set in the image and seen by every RUN (like ENV). */
          env: Type.Optional(EnvMap),
          /** Seen by RUN steps only; their key names (not values) are part of the build cache key. */
          secrets: Type.Optional(Type.Array(SecretRef, { maxItems: 16 })),
          /** Build even when the build cache has this recipe. */
          forceBuild: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ]),
  { $id: "ImageSpec" },
);

/** The TypeScript shape of ImageSpec (declared by hand: it is recursive). */
export type ImageSpec =
  | { kind: "registry"; ref: string; secret?: SecretRef }
  | { kind: "debianSlim"; pythonVersion?: string }
  | { kind: "id"; imageId: string }
  | {
      kind: "dockerfile";
      base: ImageSpec;
      commands: string[];
      env?: Record<string, string>;
      secrets?: SecretRef[];
      forceBuild?: boolean;
    };

// ---- builds --------------------------------------------------------------------

export const ImageBuildRequest = Type.Object({ image: ImageSpec }, { additionalProperties: false });
export type ImageBuildRequest = { image: ImageSpec };

export const ImageBuildState = Type.Union([Type.Literal("running"), Type.Literal("succeeded"), Type.Literal("failed")]);
export type ImageBuildState = Static<typeof ImageBuildState>;

/**
 * A build (or pull) of an image. A failed build's error has code "invalid"
 * with details { reason: "build_failed", instruction, exitCode, outputTail }
 * when a RUN step failed, or the code of whatever else went wrong.
 */
export const ImageBuild = Type.Object({
  buildId: Type.String({ pattern: "^bd-[a-z0-9]{1,40}$" }),
  state: ImageBuildState,
  imageId: Type.Union([Type.String({ pattern: ImageIdPattern }), Type.Null()]),
  error: Type.Union([
    Type.Object({ code: Type.String(), message: Type.String(), details: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }),
    Type.Null(),
  ]),
  createdAt: Type.String(),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
});
export type ImageBuild = Static<typeof ImageBuild>;

export const ImageBuildParams = Type.Object({ buildId: Type.String({ maxLength: 64 }) });

// ---- the image store ---------------------------------------------------------------

export const ImageConfigWire = Type.Object({
  env: Type.Array(Type.String()),
  workdir: Type.Optional(Type.String()),
  user: Type.Optional(Type.String()),
  entrypoint: Type.Optional(Type.Array(Type.String())),
  cmd: Type.Optional(Type.Array(Type.String())),
});

export const ImageLayerInfo = Type.Object({
  digest: Type.String(),
  diffId: Type.String(),
  /** Compressed blob in the content store. */
  blobBytes: Type.Integer(),
  /** Blob plus unpacked directory. */
  diskBytes: Type.Integer(),
  /** How many other images use this layer. */
  sharedWith: Type.Integer(),
});

export const ImageInfo = Type.Object({
  imageId: Type.String({ pattern: ImageIdPattern }),
  ref: Type.Union([Type.String(), Type.Null()]),
  source: Type.Union([Type.Literal("registry"), Type.Literal("debianSlim"), Type.Literal("build")]),
  parentId: Type.Union([Type.String(), Type.Null()]),
  created: Type.String(),
  config: ImageConfigWire,
  layers: Type.Array(ImageLayerInfo),
  /** Its layers' disk usage, each layer once. */
  diskBytes: Type.Integer(),
  /** What removing only this image would free. */
  uniqueBytes: Type.Integer(),
  /** The result of a cached build (kept by prune unless `all`). */
  buildCached: Type.Boolean(),
  /** Used by a running sandbox or build (cannot be removed). */
  inUse: Type.Boolean(),
});
export type ImageInfo = Static<typeof ImageInfo>;

export const ImageList = Type.Object({ images: Type.Array(ImageInfo) });
export type ImageList = Static<typeof ImageList>;

export const ImageParams = Type.Object({ imageId: Type.String({ maxLength: 80 }) });

export const ImagePruneRequest = Type.Object({ all: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
export type ImagePruneRequest = Static<typeof ImagePruneRequest>;

export const ImageRemoveResult = Type.Object({
  removedImages: Type.Array(Type.String()),
  /** Bytes of blobs and layer dirs deleted. */
  freedBytes: Type.Integer(),
});
export type ImageRemoveResult = Static<typeof ImageRemoveResult>;

/** Named schemas for the OpenAPI document's components (spread into wire.ts's SCHEMAS). */
export const IMAGE_SCHEMAS: Record<string, TSchema> = {
  ImageBuildRequest,
  ImageBuild,
  ImageInfo,
  ImageList,
  ImagePruneRequest,
  ImageRemoveResult,
};
