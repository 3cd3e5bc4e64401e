// Dockerfile instructions of `image.dockerfileCommands([...])`, parsed and
// checked before any build starts. Pure: no I/O.
//
// Supported: RUN (shell and exec form), ENV, ARG, WORKDIR, USER, SHELL, CMD,
// ENTRYPOINT, COPY --from=<image> (an image reference or id, taken literally:
// no $VAR in it, so the images a recipe reads are known before it runs). Everything else
// is refused with the instruction and the reason: there is no build context
// (so no COPY/ADD of local files, no ADD of URLs), FROM is the image the
// commands are added to, and the rest (EXPOSE, LABEL, VOLUME, HEALTHCHECK,
// ONBUILD, STOPSIGNAL, MAINTAINER) would be silently meaningless here.
import { InvalidArgumentError } from "./errors.js";

export type Instruction =
  | { op: "RUN"; text: string; exec?: string[]; shell?: string }
  | { op: "ENV"; text: string; pairs: [string, string][] }
  | { op: "ARG"; text: string; name: string; value?: string }
  | { op: "WORKDIR"; text: string; path: string }
  | { op: "USER"; text: string; user: string }
  | { op: "SHELL"; text: string; argv: string[] }
  | { op: "CMD" | "ENTRYPOINT"; text: string; exec?: string[]; shell?: string }
  | { op: "COPY"; text: string; from: string; sources: string[]; dest: string };

/** Most instructions per dockerfileCommands() call, and bytes per instruction. */
export const MAX_INSTRUCTIONS = 256;
export const MAX_INSTRUCTION_BYTES = 64 * 1024;

const REFUSED: Record<string, string> = {
  ADD: "ADD is not supported: there is no build context and no URL fetching; use RUN (curl, wget, pip…) or COPY --from=<image>",
  FROM: "FROM is not supported: the base is the image dockerfileCommands() is called on",
  EXPOSE: "EXPOSE is not supported: ports are given when the sandbox is created (encryptedPorts, unencryptedPorts)",
  VOLUME: "VOLUME is not supported: mount volumes when the sandbox is created (volumes)",
  HEALTHCHECK: "HEALTHCHECK is not supported: give a readinessProbe when the sandbox is created",
  LABEL: "LABEL is not supported",
  ONBUILD: "ONBUILD is not supported",
  STOPSIGNAL: "STOPSIGNAL is not supported: sandboxes are terminated with SIGKILL",
  MAINTAINER: "MAINTAINER is not supported",
};

function fail(text: string, reason: string): never {
  throw new InvalidArgumentError(`dockerfileCommands: ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)}: ${reason}`, {
    details: { instruction: text, reason },
  });
}

/** Splits the commands into logical lines: backslash-newline continues a line; blank and # lines are dropped. */
function logicalLines(commands: string[]): string[] {
  const out: string[] = [];
  for (const c of commands) {
    if (typeof c !== "string") throw new InvalidArgumentError("dockerfileCommands: every command must be a string");
    let cur = "";
    for (const raw of c.split(/\r?\n/)) {
      const line = cur === "" ? raw.trimStart() : raw;
      if (cur === "" && (line.trim() === "" || line.startsWith("#"))) continue;
      if (/\\\s*$/.test(line)) {
        cur += line.replace(/\\\s*$/, "") + " ";
        continue;
      }
      out.push((cur + line).trim());
      cur = "";
    }
    if (cur.trim() !== "") out.push(cur.trim());
  }
  return out;
}

/** A JSON array of strings (exec form), or undefined when `rest` is not one. */
function execForm(rest: string, text: string): string[] | undefined {
  if (!rest.startsWith("[")) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(rest);
  } catch {
    return undefined; // Docker treats a malformed array as shell form
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) fail(text, "the exec form must be a JSON array of strings");
  if (v.length === 0) fail(text, "the exec form needs at least one element");
  return v as string[];
}

/** Splits "K=V K2='v 2'" into words, keeping quotes' contents and backslash escapes. */
function words(s: string, text: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === "\\" && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (c === '"' || c === "'") {
      const end = s.indexOf(c, i + 1);
      if (end === -1) fail(text, `unterminated ${c} quote`);
      let body = s.slice(i + 1, end);
      if (c === '"') body = body.replace(/\\(["\\$])/g, "$1");
      cur += body;
      inWord = true;
      i = end;
    } else if (/\s/.test(c)) {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function parseEnv(rest: string, text: string): [string, string][] {
  const first = /^(\S+)/.exec(rest)?.[1] ?? "";
  if (!first.includes("=")) {
    // Legacy form: ENV KEY value with spaces
    const m = /^(\S+)\s+(.*)$/s.exec(rest);
    if (!m) fail(text, "expected ENV KEY=VALUE [KEY=VALUE…]");
    if (!ENV_NAME.test(m[1]!)) fail(text, `${JSON.stringify(m[1])} is not a valid variable name`);
    return [[m[1]!, words(m[2]!, text).join(" ")]];
  }
  return words(rest, text).map((w) => {
    const eq = w.indexOf("=");
    if (eq <= 0) fail(text, `${JSON.stringify(w)} is not KEY=VALUE`);
    const k = w.slice(0, eq);
    if (!ENV_NAME.test(k)) fail(text, `${JSON.stringify(k)} is not a valid variable name`);
    return [k, w.slice(eq + 1)];
  });
}

function parseOne(text: string): Instruction {
  const m = /^([A-Za-z]+)(?:\s+(.*))?$/s.exec(text);
  if (!m) fail(text, "expected an instruction such as RUN, ENV or WORKDIR");
  const op = m[1]!.toUpperCase();
  const rest = (m[2] ?? "").trim();
  if (REFUSED[op]) fail(text, REFUSED[op]);
  if (Buffer.byteLength(text) > MAX_INSTRUCTION_BYTES) fail(text, `longer than ${MAX_INSTRUCTION_BYTES} bytes`);
  const needArgs = () => {
    if (rest === "") fail(text, `${op} needs arguments`);
  };
  switch (op) {
    case "RUN": {
      needArgs();
      if (/^--[a-z]/.test(rest)) fail(text, `RUN ${rest.split(/\s/)[0]} is not supported`);
      const exec = execForm(rest, text);
      return exec ? { op, text, exec } : { op, text, shell: rest };
    }
    case "CMD":
    case "ENTRYPOINT": {
      needArgs();
      const exec = execForm(rest, text);
      return exec ? { op, text, exec } : { op, text, shell: rest };
    }
    case "ENV":
      needArgs();
      return { op, text, pairs: parseEnv(rest, text) };
    case "ARG": {
      needArgs();
      const [w, ...more] = words(rest, text);
      if (more.length > 0) fail(text, "one ARG per instruction");
      const eq = w!.indexOf("=");
      const name = eq === -1 ? w! : w!.slice(0, eq);
      if (!ENV_NAME.test(name)) fail(text, `${JSON.stringify(name)} is not a valid variable name`);
      return eq === -1 ? { op, text, name } : { op, text, name, value: w!.slice(eq + 1) };
    }
    case "WORKDIR":
      needArgs();
      return { op, text, path: words(rest, text).join(" ") };
    case "USER": {
      needArgs();
      const w = words(rest, text);
      if (w.length !== 1 || !/^[^\s:]+(?::[^\s:]+)?$/.test(w[0]!)) fail(text, "expected USER <user>[:<group>]");
      return { op, text, user: w[0]! };
    }
    case "SHELL": {
      const exec = execForm(rest, text);
      if (!exec) fail(text, 'SHELL needs the JSON form, e.g. SHELL ["/bin/bash", "-c"]');
      return { op, text, argv: exec };
    }
    case "COPY": {
      const w = words(rest, text);
      const flags = w.filter((x) => x.startsWith("--"));
      const args = w.filter((x) => !x.startsWith("--"));
      const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
      const other = flags.find((f) => !f.startsWith("--from="));
      if (other) fail(text, `COPY ${other.split("=")[0]} is not supported`);
      if (from === undefined || from === "") {
        fail(text, "COPY without --from is not supported: there is no build context to copy from; use COPY --from=<image> <src> <dest>, or RUN to fetch files");
      }
      if (args.length < 2) fail(text, "expected COPY --from=<image> <src>… <dest>");
      const dest = args[args.length - 1]!;
      const sources = args.slice(0, -1);
      if (sources.length > 1 && !dest.endsWith("/")) fail(text, "with several sources the destination must end with /");
      for (const s of sources) if (s.includes("*") || s.includes("?")) fail(text, "wildcards in COPY sources are not supported");
      return { op, text, from, sources, dest };
    }
    default:
      fail(text, `unknown instruction ${op}`);
  }
}

/** Parses every command; throws InvalidArgumentError naming the first bad instruction. */
export function parseDockerfile(commands: string[]): Instruction[] {
  if (!Array.isArray(commands)) throw new InvalidArgumentError("dockerfileCommands: commands must be an array of strings");
  const lines = logicalLines(commands);
  if (lines.length > MAX_INSTRUCTIONS) {
    throw new InvalidArgumentError(`dockerfileCommands: ${lines.length} instructions, at most ${MAX_INSTRUCTIONS} per call`);
  }
  return lines.map(parseOne);
}

/**
 * Substitutes $NAME, ${NAME}, ${NAME:-default} and ${NAME:+alt} from `env`
 * (Docker's rules for ENV, ARG, WORKDIR, USER and COPY); \$ is a literal $.
 */
export function substitute(s: string, env: Record<string, string>): string {
  return s.replace(/\\\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (all, braced, mod, word, bare) => {
    if (all === "\\$") return "$";
    const name = (braced ?? bare) as string;
    const v = Object.hasOwn(env, name) ? env[name] : undefined;
    if (mod === "-") return v !== undefined && v !== "" ? v : (word as string);
    if (mod === "+") return v !== undefined && v !== "" ? (word as string) : "";
    return v ?? "";
  });
}
