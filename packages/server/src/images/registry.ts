// OCI distribution client, pull only. Fetches a manifest (resolving an index /
// manifest list to the host platform), its config and layer blobs into the
// content store, verifying every digest and declared size. Auth: on 401 with
// a Bearer challenge a token is fetched from the realm (anonymous, or with
// basic credentials) and the request retried; a Basic challenge is answered
// with the credentials. Redirects are followed by hand (at most 5) so the
// Authorization header never leaves the registry's origin and plain http is
// only ever used where allowed (loopback, insecureRegistries, an http mirror).

import { Readable } from "node:stream";
import type { ReadableStream as NodeReadableStream } from "node:stream/web";
import { ContentStore, SHA256_DIGEST_RE, sha256Digest } from "./content-store.js";
import { DigestMismatchError, ImageNotFoundError, RegistryAuthError, RegistryError } from "./errors.js";
import { isAllowedUrl, manifestReference, registryEndpoint, type ImageRef, type RegistryEndpoint } from "./reference.js";

export const MAX_MANIFEST_BYTES = 4 << 20;
export const MAX_CONFIG_BYTES = 4 << 20;
const MAX_TOKEN_BYTES = 1 << 20;
const LAYER_CONCURRENCY = 3;
/** Re-requests of one blob after a dropped connection or a 5xx, resuming with a Range request. */
export const BLOB_RETRIES = 5;
const RETRY_BASE_MS = 200;
/** An image with more layers than this is refused (overlayfs stacks at most ~128 lowerdirs here). */
export const MAX_LAYERS = 120;

function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => (clearTimeout(t), reject(signal.reason)), { once: true });
  });

export const MT = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
} as const;

const ACCEPT = [MT.ociIndex, MT.ociManifest, MT.dockerList, MT.dockerManifest].join(", ");

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  urls?: string[];
}

/** The parts of an OCI/Docker image config we use. */
export interface OciImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
  };
  rootfs?: { type?: string; diff_ids?: string[] };
}

export interface PulledImage {
  manifestDigest: string;
  configDigest: string;
  config: OciImageConfig;
  layers: Descriptor[];
  diffIds: string[];
  /** Host actually contacted (mirror or registry). */
  host: string;
}

export interface Credentials {
  username: string;
  password: string;
}

export interface RegistryClientOptions {
  mirrors?: Record<string, string>;
  insecureRegistries?: string[];
  log?: (msg: string) => void;
}

interface Session {
  display: string; // the reference as the user wrote it
  ref: ImageRef;
  ep: RegistryEndpoint;
  creds?: Credentials;
  authHeader?: string;
  signal?: AbortSignal;
}

function hostArch(): string {
  switch (process.arch) {
    case "x64":
      return "amd64";
    case "arm64":
      return "arm64";
    case "arm":
      return "arm";
    default:
      return process.arch;
  }
}

/** Parses `Bearer realm="…",service="…",scope="…"` / `Basic realm="…"`. */
export function parseChallenge(header: string | null): { scheme: string; params: Record<string, string> } | null {
  if (!header) return null;
  const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(header);
  if (!m) return null;
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3]!;
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

async function readBounded(res: Response, max: number, what: string): Promise<Buffer> {
  const cl = res.headers.get("content-length");
  if (cl !== null && Number(cl) > max) {
    await res.body?.cancel().catch(() => {});
    throw new RegistryError(`${what} is too large (${cl} bytes, limit ${max})`);
  }
  if (!res.body) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of Readable.fromWeb(res.body as unknown as NodeReadableStream<Uint8Array>)) {
    n += (chunk as Buffer).length;
    if (n > max) {
      await res.body.cancel().catch(() => {});
      throw new RegistryError(`${what} is too large (more than ${max} bytes)`);
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

function errText(e: unknown): string {
  if (e instanceof Error) {
    const c = (e as { cause?: unknown }).cause;
    if (c instanceof Error) return `${e.message}: ${(c as NodeJS.ErrnoException).code ?? c.message}`;
    return e.message;
  }
  return String(e);
}

export class RegistryClient {
  private readonly mirrors: Record<string, string>;
  private readonly insecure: string[];
  private readonly log: (msg: string) => void;

  constructor(opts: RegistryClientOptions = {}) {
    this.mirrors = opts.mirrors ?? {};
    this.insecure = opts.insecureRegistries ?? [];
    this.log = opts.log ?? (() => {});
  }

  endpointFor(ref: ImageRef): RegistryEndpoint {
    return registryEndpoint(ref.registry, this.mirrors, this.insecure);
  }

  /** Pulls manifest, config and layer blobs of `ref` into `store`. `onLog` hears progress lines. */
  async pull(
    ref: ImageRef,
    display: string,
    store: ContentStore,
    creds?: Credentials,
    signal?: AbortSignal,
    onLog?: (line: string) => void,
  ): Promise<PulledImage> {
    const ep = this.endpointFor(ref);
    const progress = onLog ?? (() => {});
    const s: Session = { display, ref, ep, creds, signal };
    const reference = manifestReference(ref);
    let { body, mediaType, digest } = await this.getManifest(s, reference, ref.digest);
    let manifestDigest = digest;
    let doc = JSON.parse(body.toString("utf8")) as Record<string, unknown>;

    if (mediaType === MT.ociIndex || mediaType === MT.dockerList || (!("config" in doc) && Array.isArray(doc.manifests))) {
      await store.ingestBuffer(body, digest, `${display}: index`);
      const list = (Array.isArray(doc.manifests) ? doc.manifests : []) as Descriptor[];
      const arch = hostArch();
      const cands = list.filter((d) => d.platform?.os === "linux" && d.platform?.architecture === arch);
      const pick = cands.find((d) => !d.platform?.variant || (arch === "arm64" && d.platform.variant === "v8")) ?? cands[0];
      if (!pick) {
        const avail = list.map((d) => `${d.platform?.os ?? "?"}/${d.platform?.architecture ?? "?"}${d.platform?.variant ? "/" + d.platform.variant : ""}`);
        throw new RegistryError(`${display}: no linux/${arch} image in the index from ${ep.host} (available: ${avail.join(", ") || "none"})`);
      }
      if (typeof pick.digest !== "string" || !SHA256_DIGEST_RE.test(pick.digest)) {
        throw new RegistryError(`${display}: index from ${ep.host} has an invalid manifest digest ${JSON.stringify(pick.digest)}`);
      }
      ({ body, mediaType, digest } = await this.getManifest(s, pick.digest, pick.digest));
      manifestDigest = digest;
      doc = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
      if (mediaType === MT.ociIndex || mediaType === MT.dockerList || !("config" in doc)) {
        throw new RegistryError(`${display}: nested image index in ${pick.digest} is not supported`);
      }
    }
    if (mediaType !== MT.ociManifest && mediaType !== MT.dockerManifest && doc.schemaVersion !== 2) {
      throw new RegistryError(`${display}: unsupported manifest type ${JSON.stringify(mediaType)} from ${ep.host} (schema1 images are not supported)`);
    }
    const cfgDesc = doc.config as Descriptor | undefined;
    const layers = (doc.layers ?? []) as Descriptor[];
    if (!cfgDesc || !Array.isArray(layers)) throw new RegistryError(`${display}: manifest ${manifestDigest} has no config or layers`);
    if (layers.length > MAX_LAYERS) throw new RegistryError(`${display}: image has ${layers.length} layers, more than the ${MAX_LAYERS} sbx supports`);
    for (const d of [cfgDesc, ...layers]) {
      if (typeof d.digest !== "string" || !SHA256_DIGEST_RE.test(d.digest) || typeof d.size !== "number" || d.size < 0) {
        throw new RegistryError(`${display}: manifest ${manifestDigest} has an invalid descriptor ${JSON.stringify(d).slice(0, 200)}`);
      }
    }
    if (cfgDesc.size > MAX_CONFIG_BYTES) throw new RegistryError(`${display}: image config is too large (${cfgDesc.size} bytes)`);
    await store.ingestBuffer(body, manifestDigest, `${display}: manifest`);

    // Config.
    let cfgBytes: Buffer;
    if (await store.has(cfgDesc.digest)) {
      cfgBytes = await store.read(cfgDesc.digest);
    } else {
      const res = await this.getBlob(s, cfgDesc.digest);
      cfgBytes = await readBounded(res, MAX_CONFIG_BYTES, `${display}: image config`);
      if (cfgBytes.length !== cfgDesc.size) {
        throw new DigestMismatchError(`${display}: config blob ${cfgDesc.digest} from ${ep.host}: size ${cfgBytes.length}, manifest says ${cfgDesc.size}`);
      }
      const got = sha256Digest(cfgBytes);
      if (got !== cfgDesc.digest) {
        throw new DigestMismatchError(`${display}: config blob from ${ep.host} has digest ${got}, expected ${cfgDesc.digest}`);
      }
      await store.ingestBuffer(cfgBytes, cfgDesc.digest, `${display}: config`);
    }
    let config: OciImageConfig;
    try {
      config = JSON.parse(cfgBytes.toString("utf8")) as OciImageConfig;
    } catch (e) {
      throw new RegistryError(`${display}: image config ${cfgDesc.digest} is not valid JSON`, { cause: e });
    }
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== layers.length || !diffIds.every((d) => typeof d === "string" && SHA256_DIGEST_RE.test(d))) {
      throw new RegistryError(`${display}: image config lists ${diffIds.length} diff ids for ${layers.length} layers (or non-sha256 diff ids)`);
    }

    // Layers, a few at a time. A blob already in the store (from any image)
    // is not downloaded again.
    progress(`pulling ${display} from ${ep.host}: ${layers.length} layer${layers.length === 1 ? "" : "s"}\n`);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < layers.length) {
        const d = layers[next++]!;
        if (await store.has(d.digest)) {
          progress(`  layer ${++done}/${layers.length} ${d.digest.slice(7, 19)} already present\n`);
          continue;
        }
        const t0 = Date.now();
        await store.ingest(d.digest, d.size, async () => this.blobBytes(s, d), `${display}: layer ${d.digest} from ${ep.host}`);
        this.log(`pulled ${display} layer ${d.digest.slice(0, 19)} (${d.size} bytes) in ${Date.now() - t0} ms`);
        progress(`  layer ${++done}/${layers.length} ${d.digest.slice(7, 19)} ${humanBytes(d.size)} in ${Date.now() - t0} ms\n`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(LAYER_CONCURRENCY, layers.length) }, worker));
    return { manifestDigest, configDigest: cfgDesc.digest, config, layers, diffIds, host: ep.host };
  }

  private async getManifest(s: Session, reference: string, expectDigest?: string): Promise<{ body: Buffer; mediaType: string; digest: string }> {
    const res = await this.request(s, `/v2/${s.ref.repository}/manifests/${reference}`, ACCEPT);
    if (res.status === 404) {
      await res.body?.cancel().catch(() => {});
      throw new ImageNotFoundError(`image ${s.display} not found: registry ${s.ep.host} has no manifest ${s.ref.repository}:${reference}`);
    }
    await this.checkStatus(s, res, `manifest ${reference}`);
    const body = await readBounded(res, MAX_MANIFEST_BYTES, `${s.display}: manifest`);
    const digest = sha256Digest(body);
    if (expectDigest !== undefined && digest !== expectDigest) {
      throw new DigestMismatchError(`${s.display}: manifest from ${s.ep.host} has digest ${digest}, expected ${expectDigest}`);
    }
    const header = res.headers.get("docker-content-digest");
    if (header && header.startsWith("sha256:") && header !== digest) {
      throw new DigestMismatchError(`${s.display}: manifest from ${s.ep.host} has digest ${digest}, but the registry says ${header}`);
    }
    let mediaType = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    try {
      const mt = (JSON.parse(body.toString("utf8")) as { mediaType?: unknown }).mediaType;
      if (typeof mt === "string" && mt) mediaType = mt;
    } catch (e) {
      throw new RegistryError(`${s.display}: manifest from ${s.ep.host} is not valid JSON`, { cause: e });
    }
    return { body, mediaType, digest };
  }

  /**
   * The bytes of a blob. A connection that drops mid-body (or a 5xx / network
   * error before it) is retried up to BLOB_RETRIES times with backoff, asking
   * for the rest only (`Range: bytes=N-`); a registry that answers 200 to a
   * Range request has the first N bytes skipped. The content store verifies
   * size and digest of the whole.
   */
  private async *blobBytes(s: Session, d: Descriptor): AsyncGenerator<Uint8Array> {
    let offset = 0;
    let failures = 0;
    for (;;) {
      let res: Response;
      try {
        res = await this.getBlob(s, d.digest, offset);
      } catch (e) {
        if (s.signal?.aborted || !(e instanceof RegistryError) || e instanceof RegistryAuthError || !e.retryable || failures >= BLOB_RETRIES) throw e;
        failures++;
        this.log(`${s.display}: blob ${d.digest.slice(0, 19)}: ${e.message}; retry ${failures}/${BLOB_RETRIES} from byte ${offset}`);
        await sleep(RETRY_BASE_MS * 2 ** (failures - 1), s.signal);
        continue;
      }
      let skip = 0;
      if (offset > 0) {
        if (res.status === 206) {
          const m = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
          if (!m || Number(m[1]) !== offset) {
            await res.body?.cancel().catch(() => {});
            throw new RegistryError(`${s.display}: registry ${s.ep.host} resumed blob ${d.digest} at the wrong offset (${res.headers.get("content-range")})`);
          }
        } else {
          skip = offset; // a full body: drop what we already have
        }
      }
      if (!res.body) throw new RegistryError(`${s.display}: empty response for blob ${d.digest}`);
      try {
        for await (const chunk of Readable.fromWeb(res.body as unknown as NodeReadableStream<Uint8Array>)) {
          let c = chunk as Buffer;
          if (skip > 0) {
            const n = Math.min(skip, c.length);
            skip -= n;
            c = c.subarray(n);
            if (c.length === 0) continue;
          }
          offset += c.length;
          failures = 0;
          yield c;
        }
        return;
      } catch (e) {
        if (s.signal?.aborted || failures >= BLOB_RETRIES) {
          throw new RegistryError(`${s.display}: downloading blob ${d.digest} from ${s.ep.host} failed at byte ${offset}: ${errText(e)}`, { cause: e });
        }
        failures++;
        this.log(`${s.display}: blob ${d.digest.slice(0, 19)} dropped at byte ${offset} (${errText(e)}); resuming (${failures}/${BLOB_RETRIES})`);
        await sleep(RETRY_BASE_MS * 2 ** (failures - 1), s.signal);
      }
    }
  }

  private async getBlob(s: Session, digest: string, offset = 0): Promise<Response> {
    const res = await this.request(s, `/v2/${s.ref.repository}/blobs/${digest}`, "*/*", offset > 0 ? { Range: `bytes=${offset}-` } : {});
    if (res.status === 404) {
      await res.body?.cancel().catch(() => {});
      throw new RegistryError(`${s.display}: registry ${s.ep.host} has no blob ${digest}`);
    }
    await this.checkStatus(s, res, `blob ${digest}`);
    return res;
  }

  private async checkStatus(s: Session, res: Response, what: string): Promise<void> {
    if (res.ok) return;
    let detail = "";
    try {
      detail = (await readBounded(res, 16384, "error body")).toString("utf8").trim().slice(0, 300);
    } catch {
      /* ignore */
    }
    if (res.status === 401 || res.status === 403) {
      throw new RegistryAuthError(
        s.creds
          ? `${s.display}: registry ${s.ep.host} rejected the credentials for user ${JSON.stringify(s.creds.username)} (${res.status} on ${what})`
          : `${s.display}: registry ${s.ep.host} denied anonymous access (${res.status} on ${what}): the repository does not exist or credentials are missing`,
      );
    }
    throw new RegistryError(`${s.display}: registry ${s.ep.host} answered ${res.status} for ${what}${detail ? `: ${detail}` : ""}`, {
      retryable: res.status >= 500 || res.status === 429,
    });
  }

  /** GET with auth challenge handling (one re-auth per request). */
  private async request(s: Session, pathAndQuery: string, accept: string, extra: Record<string, string> = {}): Promise<Response> {
    const url = `${s.ep.baseUrl}${pathAndQuery}`;
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { Accept: accept, ...extra };
      if (s.authHeader) headers.Authorization = s.authHeader;
      const res = await this.fetchFollow(s, url, headers);
      if (res.status !== 401 || attempt > 0) return res;
      const ch = parseChallenge(res.headers.get("www-authenticate"));
      await res.body?.cancel().catch(() => {});
      if (!ch) throw new RegistryAuthError(`${s.display}: registry ${s.ep.host} requires authentication but sent no usable challenge`);
      if (ch.scheme === "bearer") {
        s.authHeader = `Bearer ${await this.fetchToken(s, ch.params)}`;
      } else if (ch.scheme === "basic") {
        if (!s.creds) throw new RegistryAuthError(`${s.display}: registry ${s.ep.host} requires credentials (basic auth) and none were given`);
        if (s.authHeader?.startsWith("Basic ")) return res; // already sent and refused
        s.authHeader = `Basic ${Buffer.from(`${s.creds.username}:${s.creds.password}`).toString("base64")}`;
      } else {
        throw new RegistryAuthError(`${s.display}: registry ${s.ep.host} uses unsupported auth scheme ${JSON.stringify(ch.scheme)}`);
      }
    }
  }

  private async fetchToken(s: Session, params: Record<string, string>): Promise<string> {
    const realm = params.realm;
    let u: URL;
    try {
      u = new URL(realm ?? "");
    } catch {
      throw new RegistryAuthError(`${s.display}: registry ${s.ep.host} sent a bearer challenge with an invalid realm ${JSON.stringify(realm)}`);
    }
    if (!isAllowedUrl(u, this.insecure, Object.values(this.mirrors))) {
      throw new RegistryAuthError(`${s.display}: refusing token realm ${u.origin} over plain http`);
    }
    if (params.service) u.searchParams.set("service", params.service);
    u.searchParams.set("scope", params.scope ?? `repository:${s.ref.repository}:pull`);
    const headers: Record<string, string> = { Accept: "application/json" };
    if (s.creds) headers.Authorization = `Basic ${Buffer.from(`${s.creds.username}:${s.creds.password}`).toString("base64")}`;
    const res = await this.fetchFollow(s, u.toString(), headers);
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel().catch(() => {});
      throw new RegistryAuthError(
        s.creds
          ? `${s.display}: token service ${u.host} rejected the credentials for user ${JSON.stringify(s.creds.username)}`
          : `${s.display}: token service ${u.host} refused anonymous access; credentials are missing`,
      );
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw new RegistryError(`${s.display}: token service ${u.host} answered ${res.status}`);
    }
    const body = await readBounded(res, MAX_TOKEN_BYTES, `${s.display}: token response`);
    let tok: unknown;
    try {
      const j = JSON.parse(body.toString("utf8")) as { token?: unknown; access_token?: unknown };
      tok = j.token ?? j.access_token;
    } catch {
      /* fallthrough */
    }
    if (typeof tok !== "string" || !tok) throw new RegistryError(`${s.display}: token service ${u.host} returned no token`);
    return tok;
  }

  /** fetch with manual redirects; drops Authorization on cross-origin hops. */
  private async fetchFollow(s: Session, url: string, headers: Record<string, string>): Promise<Response> {
    let current = new URL(url);
    const origin = current.origin;
    for (let hop = 0; hop <= 5; hop++) {
      const h = { ...headers };
      if (current.origin !== origin) delete h.Authorization;
      let res: Response;
      try {
        res = await fetch(current, { headers: h, redirect: "manual", signal: s.signal });
      } catch (e) {
        if (s.signal?.aborted) throw e;
        throw new RegistryError(`${s.display}: cannot reach registry ${current.host}: ${errText(e)}`, { cause: e, retryable: true });
      }
      if (res.status < 300 || res.status >= 400 || res.status === 304) return res;
      const loc = res.headers.get("location");
      await res.body?.cancel().catch(() => {});
      if (!loc) throw new RegistryError(`${s.display}: registry ${current.host} sent redirect ${res.status} without a Location`);
      const nextUrl = new URL(loc, current);
      const fromHttpOk = current.protocol === "http:" && nextUrl.host === current.host;
      if (!fromHttpOk && !isAllowedUrl(nextUrl, this.insecure, Object.values(this.mirrors))) {
        throw new RegistryError(`${s.display}: registry ${current.host} redirected to a disallowed URL ${nextUrl.origin}`);
      }
      current = nextUrl;
    }
    throw new RegistryError(`${s.display}: too many redirects from ${new URL(url).host}`);
  }
}
