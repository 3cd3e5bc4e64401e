// Typed errors of the image subsystem. Every message names the image reference
// (or source) it is about, so it can be shown to an SDK user as is.

/** Base class; `code` is a stable machine-readable identifier. */
export class ImageError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The reference string (or another part of an ImageSource) is invalid. */
export class ImageRefError extends ImageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("invalid_image_ref", message, options);
  }
}

/** The registry has no such repository/tag/digest, or no such local image id. */
export class ImageNotFoundError extends ImageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("image_not_found", message, options);
  }
}

/** The registry refused access: credentials missing or rejected (401/403 after auth). */
export class RegistryAuthError extends ImageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("registry_auth", message, options);
  }
}

/** Any other registry / transport / protocol failure. */
export class RegistryError extends ImageError {
  /** A network error or a 5xx: trying again may help. */
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; code?: string; retryable?: boolean }) {
    super(options?.code ?? "registry_error", message, options);
    this.retryable = options?.retryable ?? false;
  }
}

/** The image's config cannot be honoured (e.g. its USER is not in its /etc/passwd). */
export class ImageConfigError extends ImageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("image_config", message, options);
  }
}

/** Content did not match its digest (or declared size). */
export class DigestMismatchError extends RegistryError {
  constructor(message: string) {
    super(message, { code: "digest_mismatch" });
  }
}

/** A layer could not be unpacked (bad archive, unsafe member, tar failed). */
export class LayerUnpackError extends ImageError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("layer_unpack", message, options);
  }
}

/** The Debian base image could not be built, or the requested variant does not exist. */
export class BaseImageError extends ImageError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? "base_image", message, options);
  }
}

/** The image is used by a running sandbox or build and cannot be removed. */
export class ImageInUseError extends ImageError {
  constructor(message: string) {
    super("image_in_use", message);
  }
}
