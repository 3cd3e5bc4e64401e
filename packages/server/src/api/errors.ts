// The server's one translation of errors to HTTP. Typed errors keep their
// code and message; schema and body-parser errors become `invalid` with the
// field named; anything else is an internal error whose details stay in the
// log (they may hold paths or secrets).
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from "sbx/wire";
import { SbxServerError } from "../core/index.js";

export function errorBody(code: ErrorCode, message: string, details?: Record<string, unknown>): ErrorBody {
  return { error: { code, message, ...(details ? { details } : {}) } };
}

interface ValidationItem {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** "body/timeoutMs must be integer" → "timeoutMs must be integer". */
function describeValidation(context: string, items: ValidationItem[]): { message: string; field: string } {
  const first = items[0] ?? {};
  const path = (first.instancePath ?? "").replace(/^\//, "").replace(/\//g, ".");
  const extra = first.params?.additionalProperty;
  if (typeof extra === "string") {
    const where = path ? `${path}.${extra}` : extra;
    return { message: `${where} is not a known field of the ${context}`, field: where };
  }
  const allowed = first.params?.allowedValues;
  const suffix = Array.isArray(allowed) ? `: ${allowed.join(", ")}` : "";
  const field = path || context;
  return { message: `${field} ${first.message ?? "is invalid"}${suffix}`, field };
}

export function handleError(err: FastifyError | Error, req: FastifyRequest, reply: FastifyReply): void {
  if (err instanceof SbxServerError) {
    void reply.status(ERROR_STATUS[err.code]).send(errorBody(err.code, err.message, err.details));
    return;
  }
  const fe = err as FastifyError & { validation?: ValidationItem[]; validationContext?: string };
  if (fe.validation) {
    const { message, field } = describeValidation(fe.validationContext ?? "request", fe.validation);
    void reply.status(400).send(errorBody("invalid", message, { field }));
    return;
  }
  const status = fe.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const code: ErrorCode = status === 404 ? "not_found" : status === 401 ? "unauthenticated" : "invalid";
    void reply.status(status === 404 || status === 401 ? status : 400).send(errorBody(code, fe.message));
    return;
  }
  req.log.error({ err }, "unhandled error");
  void reply.status(500).send(errorBody("internal", `internal error (request ${req.id}); see the server log`));
}
