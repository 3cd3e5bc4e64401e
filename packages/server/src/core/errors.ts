// The server's error classes: a small fixed set with stable codes (the codes
// of wire.ts). api/ translates them to HTTP exactly once; everything else
// throws them with a message that tells the caller what to change.
import type { ErrorCode } from "sbx/wire";

export class SbxServerError extends Error {
  readonly code: ErrorCode;
  readonly details?: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, opts?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    if (opts?.details) this.details = opts.details;
  }
}

type Opts = { cause?: unknown; details?: Record<string, unknown> };
export class InvalidArgumentError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("invalid", message, opts); }
}
export class UnauthenticatedError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("unauthenticated", message, opts); }
}
export class NotFoundError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("not_found", message, opts); }
}
export class AlreadyExistsError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("already_exists", message, opts); }
}
/** The call is valid but the object's state does not allow it (containerd's FailedPrecondition). */
export class FailedPreconditionError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("conflict", message, opts); }
}
export class DeadlineExceededError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("timeout", message, opts); }
}
export class ResourceExhaustedError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("resource_exhausted", message, opts); }
}
export class UnavailableError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("unavailable", message, opts); }
}
export class InternalError extends SbxServerError {
  constructor(message: string, opts?: Opts) { super("internal", message, opts); }
}
