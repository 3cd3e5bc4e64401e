// The SDK's error classes. Every error the SDK throws (other than the caller's
// own abort reason) is an SbxError. Server errors are translated exactly once,
// in http.ts, through ERROR_CLASSES below.
import type { ErrorCode } from "./wire.js";

/** Codes an SbxError can carry: the server's codes plus client-side ones. */
export type SbxErrorCode = ErrorCode | "client_closed" | "unimplemented";

export interface SbxErrorOptions {
  /** HTTP status of the reply that caused the error; 0 when there was none. */
  status?: number;
  details?: Record<string, unknown>;
  cause?: unknown;
}

export class SbxError extends Error {
  readonly code: SbxErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(message: string, code: SbxErrorCode = "internal", options: SbxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options.status ?? 0;
    this.details = options.details;
    this.name = new.target.name;
  }
}

export class NotFoundError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "not_found", options);
  }
}

export class AlreadyExistsError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "already_exists", options);
  }
}

export class InvalidError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "invalid", options);
  }
}

export class ConflictError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "conflict", options);
  }
}

export class TimeoutError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "timeout", options);
  }
}

/** The sandbox reached its lifetime timeout (returncode 124) before the operation. */
export class SandboxTimeoutError extends TimeoutError {}

export class AuthError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "unauthenticated", options);
  }
}

export class ResourceExhaustedError extends SbxError {
  constructor(message: string, options?: SbxErrorOptions) {
    super(message, "resource_exhausted", options);
  }
}

/** The client was closed, or the Sandbox object was detached (or terminated). */
export class ClientClosedError extends SbxError {
  constructor(message = "the client is closed", options?: SbxErrorOptions) {
    super(message, "client_closed", options);
  }
}

type ErrorClass = new (message: string, options?: SbxErrorOptions) => SbxError;

/**
 * The one table of server error code → SDK class. Codes without a class of
 * their own (unavailable, internal) become a plain SbxError carrying the code.
 */
export const ERROR_CLASSES: Record<ErrorCode, ErrorClass | null> = {
  invalid: InvalidError,
  unauthenticated: AuthError,
  not_found: NotFoundError,
  already_exists: AlreadyExistsError,
  conflict: ConflictError,
  timeout: TimeoutError,
  resource_exhausted: ResourceExhaustedError,
  unavailable: null,
  internal: null,
};

/** Fallback when a reply has no parseable error body: status → code. */
const STATUS_CODES: Record<number, ErrorCode> = {
  400: "invalid",
  401: "unauthenticated",
  403: "unauthenticated",
  404: "not_found",
  408: "timeout",
  409: "conflict",
  413: "invalid",
  422: "invalid",
  429: "resource_exhausted",
  502: "unavailable",
  503: "unavailable",
  504: "unavailable",
};

/** Builds the SDK error for a server error code (or, lacking one, an HTTP status). */
export function errorFromWire(
  code: string | undefined,
  message: string,
  status: number,
  details?: Record<string, unknown>,
): SbxError {
  const known: ErrorCode =
    code !== undefined && Object.prototype.hasOwnProperty.call(ERROR_CLASSES, code)
      ? (code as ErrorCode)
      : (STATUS_CODES[status] ?? "internal");
  const cls = ERROR_CLASSES[known];
  const options: SbxErrorOptions = { status, details };
  return cls ? new cls(message, options) : new SbxError(message, known, options);
}
