// Image reference parsing, normalized the way Docker does it
// (github.com/distribution/reference: ParseNormalizedNamed + TagNameOnly),
// and the mapping from a registry name to the URL we actually talk to.
// Pure functions only.

import { ImageRefError } from "./errors.js";

export const DEFAULT_REGISTRY = "docker.io";
export const DOCKER_HUB_ENDPOINT = "https://registry-1.docker.io";

export interface ImageRef {
  /** Registry host as written in the reference ("docker.io", "host:5000", "localhost"). */
  registry: string;
  /** Repository path inside the registry ("library/python"). */
  repository: string;
  /** Tag; "latest" when neither tag nor digest was given. Absent for pure digest refs. */
  tag?: string;
  /** "sha256:<64 hex>" when the reference pins a digest (it then wins over the tag). */
  digest?: string;
}

const alnum = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alnum}(?:${separator}${alnum})*`;
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const domainAndPort = `(?:${domainName}|${ipv6})(?::[0-9]+)?`;
const tagPattern = "[\\w][\\w.-]{0,127}";
const digestPattern = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";

const domainRe = new RegExp(`^${domainAndPort}$`);
const pathRe = new RegExp(`^${pathComponent}(?:/${pathComponent})*$`);
const tagRe = new RegExp(`^${tagPattern}$`);
const digestRe = new RegExp(`^${digestPattern}$`);
const sha256Re = /^sha256:[a-f0-9]{64}$/;
const NAME_TOTAL_LENGTH_MAX = 255;

function fail(ref: string, what: string): never {
  throw new ImageRefError(`invalid image reference ${JSON.stringify(ref)}: ${what}`);
}

/** Splits "name" into registry and repository as Docker's splitDockerDomain does. */
function splitDomain(name: string): { registry: string; repository: string } {
  const i = name.indexOf("/");
  let registry: string;
  let repository: string;
  const first = i === -1 ? "" : name.slice(0, i);
  if (i === -1 || (!/[.:]/.test(first) && first !== "localhost" && first.toLowerCase() === first)) {
    registry = DEFAULT_REGISTRY;
    repository = name;
  } else {
    registry = first;
    repository = name.slice(i + 1);
  }
  if (registry === "index.docker.io") registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !repository.includes("/")) repository = `library/${repository}`;
  return { registry, repository };
}

/**
 * Parses and normalizes an image reference:
 * "python:3.13-slim" → docker.io / library/python / tag 3.13-slim;
 * "user/img" → docker.io/user/img:latest; "host:5000/a/b@sha256:…"; "localhost/x".
 * Throws ImageRefError naming the reference and the problem.
 */
export function parseImageRef(ref: string): ImageRef {
  if (typeof ref !== "string" || ref.length === 0) fail(String(ref), "empty reference");
  if (ref !== ref.trim()) fail(ref, "leading or trailing whitespace");
  if (/^[a-f0-9]{64}$/.test(ref)) fail(ref, "cannot specify a 64-byte hexadecimal string as a repository name");

  // Split off "@digest" first, then ":tag" (a ':' after the last '/').
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestRe.test(digest)) fail(ref, `malformed digest ${JSON.stringify(digest)}`);
    if (!digest.startsWith("sha256:")) fail(ref, `unsupported digest algorithm ${JSON.stringify(digest.split(":")[0])} (only sha256)`);
    if (!sha256Re.test(digest)) fail(ref, "sha256 digest must be 64 lowercase hex characters");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.indexOf(":", lastSlash + 1);
  if (colon !== -1) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagRe.test(tag)) fail(ref, `invalid tag ${JSON.stringify(tag)} (allowed: [A-Za-z0-9_.-], at most 128 characters, not starting with '.' or '-')`);
  }
  if (rest.length === 0) fail(ref, "missing repository name");

  const { registry, repository } = splitDomain(rest);
  if (repository.toLowerCase() !== repository) fail(ref, "repository name must be lowercase");
  if (!domainRe.test(registry)) fail(ref, `invalid registry host ${JSON.stringify(registry)}`);
  if (!pathRe.test(repository)) {
    fail(ref, `invalid repository name ${JSON.stringify(repository)} (components are lowercase letters and digits separated by '.', '_', '__' or '-')`);
  }
  if (registry.length + 1 + repository.length > NAME_TOTAL_LENGTH_MAX) {
    fail(ref, `repository name must not be longer than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  if (tag === undefined && digest === undefined) tag = "latest";
  const out: ImageRef = { registry, repository };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** Canonical string: "docker.io/library/python:3.13-slim", "host:5000/a/b@sha256:…". */
export function formatImageRef(r: ImageRef): string {
  let s = `${r.registry}/${r.repository}`;
  if (r.tag !== undefined) s += `:${r.tag}`;
  if (r.digest !== undefined) s += `@${r.digest}`;
  return s;
}

/** The manifest reference to request: the digest if pinned, else the tag. */
export function manifestReference(r: ImageRef): string {
  return r.digest ?? r.tag ?? "latest";
}

/** Host name without port or IPv6 brackets: "127.0.0.1:5000" → "127.0.0.1", "[::1]:5000" → "::1". */
export function hostName(registry: string): string {
  if (registry.startsWith("[")) {
    const end = registry.indexOf("]");
    return end === -1 ? registry : registry.slice(1, end);
  }
  const i = registry.lastIndexOf(":");
  return i === -1 ? registry : registry.slice(0, i);
}

/** True for localhost, 127.0.0.0/8 and ::1. */
export function isLoopbackHost(registry: string): boolean {
  const h = hostName(registry).toLowerCase();
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export interface RegistryEndpoint {
  /** Base URL without trailing slash; requests go to `${baseUrl}/v2/...`. */
  baseUrl: string;
  /** Host used, for messages ("registry-1.docker.io", "127.0.0.1:5000"). */
  host: string;
  isMirror: boolean;
}

/**
 * Where to fetch `registry` from. A mirror configured for the registry name wins
 * (its URL scheme is used as given, http or https). docker.io otherwise goes to
 * registry-1.docker.io. Other hosts use https; loopback hosts and hosts listed in
 * insecureRegistries use plain http.
 */
export function registryEndpoint(
  registry: string,
  mirrors: Record<string, string> = {},
  insecureRegistries: string[] = [],
): RegistryEndpoint {
  const mirror = mirrors[registry] ?? (registry === DEFAULT_REGISTRY ? mirrors["index.docker.io"] ?? mirrors["registry-1.docker.io"] : undefined);
  if (mirror !== undefined) {
    let u: URL;
    try {
      u = new URL(mirror);
    } catch {
      throw new ImageRefError(`invalid mirror URL ${JSON.stringify(mirror)} configured for ${registry}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new ImageRefError(`invalid mirror URL ${JSON.stringify(mirror)} configured for ${registry}: must be http or https`);
    }
    const base = `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
    return { baseUrl: base, host: u.host, isMirror: true };
  }
  if (registry === DEFAULT_REGISTRY) {
    return { baseUrl: DOCKER_HUB_ENDPOINT, host: new URL(DOCKER_HUB_ENDPOINT).host, isMirror: false };
  }
  const insecure = isLoopbackHost(registry) || insecureRegistries.some((r) => r === registry || r === hostName(registry));
  return { baseUrl: `${insecure ? "http" : "https"}://${registry}`, host: registry, isMirror: false };
}

/** True when `url` may be fetched given the endpoint policy (used for redirects and token realms). */
export function isAllowedUrl(url: URL, insecureRegistries: string[] = [], mirrorBaseUrls: string[] = []): boolean {
  if (url.protocol === "https:") return true;
  if (url.protocol !== "http:") return false;
  if (isLoopbackHost(url.host)) return true;
  if (insecureRegistries.some((r) => r === url.host || r === url.hostname)) return true;
  return mirrorBaseUrls.some((m) => {
    try {
      const mu = new URL(m);
      return mu.protocol === "http:" && mu.host === url.host;
    } catch {
      return false;
    }
  });
}
