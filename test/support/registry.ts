// Starts Debian's docker-registry (distribution 2.8) on a free loopback port
// with filesystem storage in a temp dir. Stop it with stop() (by pid).
//
// With `auth`, the registry demands token auth (distribution's `auth: token`):
// a small token server in this process (Node http on loopback) checks HTTP
// basic credentials and issues RS256 JWTs signed with a key made by openssl
// for this registry only; the registry trusts that key's self-signed
// certificate (rootcertbundle) and finds it through the token's x5c header.
// Anonymous and wrong-password token requests get 401.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createSign, randomBytes, X509Certificate } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export interface TestRegistry {
  url: string; // "http://127.0.0.1:<port>"
  host: string; // "127.0.0.1:<port>"
  /** Filesystem storage root (blobs under docker/registry/v2/blobs/sha256/<xx>/<hex>/data). */
  storageDir: string;
  pid: number;
  /** With auth: what the token server was asked, in order. */
  tokenRequests: { user: string | null; scopes: string[]; granted: boolean }[];
  /** Path of the data file of a blob in the registry storage (for tampering in tests). */
  blobDataPath(digest: string): string;
  stop(): Promise<void>;
}
/** Older name, kept for the tests that import it. */
export type Registry = TestRegistry;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString("base64url");

interface TokenServer {
  realm: string;
  certPath: string;
  requests: TestRegistry["tokenRequests"];
  close(): Promise<void>;
}

const SERVICE = "sbx-test-registry";
const ISSUER = "sbx-test-token-issuer";

async function startTokenServer(dir: string, auth: { username: string; password: string }): Promise<TokenServer> {
  const keyPath = path.join(dir, "token.key");
  const certPath = path.join(dir, "token.crt");
  await execFileP("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath,
    "-days", "2", "-subj", "/CN=sbx-test-token-issuer",
  ]);
  const key = await fsp.readFile(keyPath, "utf8");
  const certDer = new X509Certificate(await fsp.readFile(certPath)).raw;
  const requests: TestRegistry["tokenRequests"] = [];
  const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString("base64")}`;

  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    if (u.pathname !== "/token") {
      res.statusCode = 404;
      return res.end();
    }
    const header = req.headers.authorization;
    const user = header?.startsWith("Basic ") ? Buffer.from(header.slice(6), "base64").toString().split(":")[0]! : null;
    const scopes = u.searchParams.getAll("scope");
    const ok = header === expected && u.searchParams.get("service") === SERVICE;
    requests.push({ user, scopes, granted: ok });
    if (!ok) {
      res.statusCode = 401;
      res.setHeader("content-type", "application/json");
      return res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "bad credentials" }] }));
    }
    const access = scopes.flatMap((s) => {
      const [type, name, actions] = s.split(":");
      return type && name && actions ? [{ type, name, actions: actions.split(",") }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const head = { alg: "RS256", typ: "JWT", x5c: [certDer.toString("base64")] };
    const claims = { iss: ISSUER, sub: user, aud: SERVICE, exp: now + 300, nbf: now - 30, iat: now, jti: randomBytes(8).toString("hex"), access };
    const signing = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign("RSA-SHA256").update(signing).sign(key);
    const token = `${signing}.${b64url(sig)}`;
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    certPath,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

export async function startRegistry(opts: { auth?: { username: string; password: string } } = {}): Promise<TestRegistry> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-registry-"));
  const storageDir = path.join(dir, "storage");
  await fsp.mkdir(storageDir);
  let tokens: TokenServer | undefined;
  try {
    if (opts.auth) tokens = await startTokenServer(dir, opts.auth);
  } catch (e) {
    await fsp.rm(dir, { recursive: true, force: true });
    throw e;
  }
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const configPath = path.join(dir, "config.yml");
    await fsp.writeFile(
      configPath,
      [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${storageDir}`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: 127.0.0.1:${port}`,
        ...(tokens
          ? ["auth:", "  token:", `    realm: ${tokens.realm}`, `    service: ${SERVICE}`, `    issuer: ${ISSUER}`, `    rootcertbundle: ${tokens.certPath}`]
          : []),
        "",
      ].join("\n"),
    );
    const child: ChildProcess = spawn("/usr/bin/docker-registry", ["serve", configPath], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (d: string) => (stderr = (stderr + d).slice(-8192)));
    let exited = false;
    const exitedP = new Promise<void>((resolve) => child.once("exit", () => ((exited = true), resolve())));
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 15000;
    let up = false;
    while (!exited && Date.now() < deadline) {
      try {
        const res = await fetch(`${url}/v2/`);
        await res.body?.cancel();
        if (res.status === 200 || res.status === 401) {
          up = true;
          break;
        }
      } catch {
        /* not yet */
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!up) {
      if (!exited) child.kill("SIGKILL");
      await exitedP;
      if (attempt < 2 && /address already in use/.test(stderr)) continue;
      await tokens?.close();
      await fsp.rm(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start: ${stderr.trim()}`);
    }
    const pid = child.pid!;
    return {
      url,
      host: `127.0.0.1:${port}`,
      storageDir,
      pid,
      tokenRequests: tokens?.requests ?? [],
      blobDataPath(digest: string) {
        const hex = digest.replace(/^sha256:/, "");
        return path.join(storageDir, "docker/registry/v2/blobs/sha256", hex.slice(0, 2), hex, "data");
      },
      async stop() {
        if (!exited) {
          process.kill(pid, "SIGTERM");
          const t = setTimeout(() => {
            if (!exited) process.kill(pid, "SIGKILL");
          }, 5000);
          await exitedP;
          clearTimeout(t);
        }
        await tokens?.close();
        await fsp.rm(dir, { recursive: true, force: true });
      },
    };
  }
}
