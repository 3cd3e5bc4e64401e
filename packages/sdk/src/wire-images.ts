// The image part of the wire format (see wire.ts): how a client names an
// image, and the image-management shapes. Part of the one schema source.
import { Type, type Static } from "@sinclair/typebox";
import { SecretRef } from "./wire-common.js";

export const ImageSpec = Type.Union([
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
  Type.Object(
    { kind: Type.Literal("id"), imageId: Type.String({ pattern: "^sha256:[a-f0-9]{64}$" }) },
    { additionalProperties: false },
  ),
]);
export type ImageSpec = Static<typeof ImageSpec>;
