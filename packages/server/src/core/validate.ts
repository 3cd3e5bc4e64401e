// Validation of what users send, as a list of named checks that all run
// before any side effect. The HTTP schema has already checked types and
// shapes; these are the rules a schema cannot say. Nothing user-supplied may
// become a runtime option, so paths and strings are checked strictly.
import { LIMITS, type ExecRequest, type SandboxCreateRequest } from "sbx/wire";
import { InvalidArgumentError } from "./errors.js";

export type Check = { field: string; problem: string | null };

const NAME_RE = /^[A-Za-z0-9._-]+$/;

/** Directories a workdir may not be in: they are the kernel's or sbx's own. */
const FORBIDDEN_WORKDIR_ROOTS = ["/proc", "/sys", "/dev", "/.sbx"];

export function checkWorkdir(workdir: string | undefined): string | null {
  if (workdir === undefined) return null;
  if (workdir.includes("\0")) return "must not contain NUL bytes";
  if (!workdir.startsWith("/")) return `must be an absolute path (got "${workdir}")`;
  const parts = workdir.split("/");
  if (parts.some((p) => p === ".." || p === ".")) return `must be a normalized path without "." or ".." (got "${workdir}")`;
  for (const root of FORBIDDEN_WORKDIR_ROOTS) {
    if (workdir === root || workdir.startsWith(root + "/")) return `must not be under ${root} (got "${workdir}")`;
  }
  return null;
}

export function checkArgv(argv: string[] | undefined): string | null {
  if (argv === undefined) return null;
  if (argv.length === 0) return "must have at least one element";
  let bytes = 0;
  for (const a of argv) {
    if (a.includes("\0")) return "elements must not contain NUL bytes";
    bytes += Buffer.byteLength(a) + 1;
  }
  if (bytes > LIMITS.maxArgvBytes) return `is ${bytes} bytes; at most ${LIMITS.maxArgvBytes} bytes in total`;
  if (argv[0] === "") return "argv[0] must not be empty";
  return null;
}

export function checkEnv(env: Record<string, string> | undefined): string | null {
  if (env === undefined) return null;
  const keys = Object.keys(env);
  if (keys.length > LIMITS.maxEnvEntries) return `has ${keys.length} entries; at most ${LIMITS.maxEnvEntries}`;
  let bytes = 0;
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) return `key "${k}" must match [A-Za-z_][A-Za-z0-9_]*`;
    if (v.includes("\0")) return `value of ${k} must not contain NUL bytes`;
    bytes += k.length + Buffer.byteLength(v) + 2;
  }
  if (bytes > LIMITS.maxEnvBytes) return `is ${bytes} bytes; at most ${LIMITS.maxEnvBytes}`;
  return null;
}

export function checkSandboxTimeout(ms: number | undefined): string | null {
  if (ms === undefined) return null;
  if (!Number.isInteger(ms) || ms <= 0) return `must be a positive number of milliseconds (got ${ms})`;
  if (ms % 1000 !== 0) return `must be a multiple of 1000 (got ${ms})`;
  if (ms > LIMITS.maxTimeoutMs) return `must be at most ${LIMITS.maxTimeoutMs} (24 hours) (got ${ms})`;
  return null;
}

export function checkExecTimeout(ms: number | undefined): string | null {
  if (ms === undefined) return null;
  if (!Number.isInteger(ms) || ms <= 0) return `must be a positive number of milliseconds (got ${ms})`;
  if (ms > LIMITS.maxTimeoutMs) return `must be at most ${LIMITS.maxTimeoutMs} (24 hours) (got ${ms})`;
  return null;
}

export function checkName(name: string | undefined): string | null {
  if (name === undefined) return null;
  if (name.length === 0 || name.length > LIMITS.maxNameLength) return `must be 1 to ${LIMITS.maxNameLength} characters (got ${name.length})`;
  if (!NAME_RE.test(name)) return `may contain only letters, digits, ".", "_" and "-" (got "${name}")`;
  return null;
}

function checkPositive(value: number | undefined, max: number, unit: string): string | null {
  if (value === undefined) return null;
  if (!(value > 0) || !Number.isFinite(value)) return `must be a positive number of ${unit} (got ${value})`;
  if (value > max) return `must be at most ${max} ${unit} (got ${value})`;
  return null;
}

export function checkTags(tags: Record<string, string> | undefined): string | null {
  if (tags === undefined) return null;
  if (Object.keys(tags).length > LIMITS.maxTags) return `at most ${LIMITS.maxTags} tags`;
  return null;
}

const CIDR_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;

function checkCidrs(cidrs: string[]): string | null {
  for (const c of cidrs) {
    const m = CIDR_RE.exec(c);
    if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) {
      return `entry "${c}" is not an IPv4 CIDR like 10.0.0.0/8`;
    }
  }
  return null;
}

/** Throws InvalidArgumentError naming the first field that is wrong. */
export function enforce(checks: Check[]): void {
  for (const c of checks) {
    if (c.problem !== null) throw new InvalidArgumentError(`${c.field} ${c.problem}`, { details: { field: c.field } });
  }
}

export function validateCreate(req: SandboxCreateRequest): void {
  enforce([
    { field: "command", problem: checkArgv(req.command) },
    { field: "timeoutMs", problem: checkSandboxTimeout(req.timeoutMs) },
    { field: "idleTimeoutMs", problem: checkSandboxTimeout(req.idleTimeoutMs) },
    { field: "workdir", problem: checkWorkdir(req.workdir) },
    { field: "env", problem: checkEnv(req.env) },
    { field: "name", problem: checkName(req.name) },
    { field: "tags", problem: checkTags(req.tags) },
    { field: "cpu", problem: checkPositive(req.cpu, 64, "cores") },
    { field: "cpuLimit", problem: checkPositive(req.cpuLimit, 64, "cores") },
    { field: "memoryMiB", problem: checkPositive(req.memoryMiB, 65536, "MiB") },
    { field: "memoryLimitMiB", problem: checkPositive(req.memoryLimitMiB, 65536, "MiB") },
  ]);
  if (req.memoryMiB !== undefined && req.memoryLimitMiB !== undefined && req.memoryLimitMiB < req.memoryMiB) {
    throw new InvalidArgumentError(
      `memoryLimitMiB (${req.memoryLimitMiB}) must be at least memoryMiB (${req.memoryMiB})`,
      { details: { field: "memoryLimitMiB" } },
    );
  }
  const networkFields = (["encryptedPorts", "unencryptedPorts", "h2Ports", "outboundCidrAllowlist", "inboundCidrAllowlist"] as const)
    .filter((f) => req[f] !== undefined && req[f]!.length > 0);
  if (req.blockNetwork && networkFields.length > 0) {
    throw new InvalidArgumentError(`${networkFields[0]} cannot be combined with blockNetwork: a sandbox without a network has no ports or allowlists`, {
      details: { field: networkFields[0] },
    });
  }
  for (const f of networkFields) {
    const problem = f.endsWith("CidrAllowlist") ? checkCidrs(req[f] as string[]) : null;
    if (problem) throw new InvalidArgumentError(`${f} ${problem}`, { details: { field: f } });
    throw new InvalidArgumentError(`${f} is not supported by this server yet (tunnels and allowlists come later)`, {
      details: { field: f },
    });
  }
  if (req.pty) throw new InvalidArgumentError("pty is not supported by this server yet", { details: { field: "pty" } });
  if (req.readinessProbe?.kind === "exec") {
    enforce([{ field: "readinessProbe.argv", problem: checkArgv(req.readinessProbe.argv) }]);
  }
  const seen = new Set<string>();
  for (const [path, mount] of Object.entries(req.volumes ?? {})) {
    const problem = checkWorkdir(path) ?? (path === "/" ? "must not be / itself" : null);
    if (problem) throw new InvalidArgumentError(`volumes["${path}"]: the mount path ${problem}`, { details: { field: "volumes" } });
    if (seen.has(path)) throw new InvalidArgumentError(`volumes: ${path} is given twice`, { details: { field: "volumes" } });
    seen.add(path);
    const sub = mount.subPath;
    if (sub !== undefined && (sub.startsWith("/") || sub.split("/").some((x) => x === ".." || x === ".") || sub.includes("\0"))) {
      throw new InvalidArgumentError(`volumes["${path}"].subPath must be a relative path without "." or ".." (got "${sub}")`, {
        details: { field: "volumes" },
      });
    }
  }
  if (req.cpu !== undefined && req.cpuLimit !== undefined && req.cpuLimit < req.cpu) {
    throw new InvalidArgumentError(`cpuLimit (${req.cpuLimit}) must be at least cpu (${req.cpu})`, {
      details: { field: "cpuLimit" },
    });
  }
}

export function validateExec(req: ExecRequest): void {
  enforce([
    { field: "argv", problem: checkArgv(req.argv) },
    { field: "workdir", problem: checkWorkdir(req.workdir) },
    { field: "env", problem: checkEnv(req.env) },
    { field: "timeoutMs", problem: checkExecTimeout(req.timeoutMs) },
  ]);
}
