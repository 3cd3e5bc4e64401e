// Starts Debian's docker-registry (distribution 2.8) on a free loopback port
// with filesystem storage in a temp dir. Stop it with stop() (by pid).

import { spawn, type ChildProcess } from "node:child_process";
import * as fsp from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export interface TestRegistry {
  url: string; // "http://127.0.0.1:<port>"
  host: string; // "127.0.0.1:<port>"
  /** Filesystem storage root (blobs under docker/registry/v2/blobs/sha256/<xx>/<hex>/data). */
  storageDir: string;
  pid: number;
  /** Path of the data file of a blob in the registry storage (for tampering in tests). */
  blobDataPath(digest: string): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startRegistry(opts: { auth?: { username: string; password: string } } = {}): Promise<TestRegistry> {
  if (opts.auth) throw new Error("startRegistry: auth is not implemented yet (needs a bcrypt htpasswd file)");
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), "sbx-registry-"));
  const storageDir = path.join(dir, "storage");
  await fsp.mkdir(storageDir);
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
      await fsp.rm(dir, { recursive: true, force: true });
      throw new Error(`docker-registry did not start: ${stderr.trim()}`);
    }
    const pid = child.pid!;
    return {
      url,
      host: `127.0.0.1:${port}`,
      storageDir,
      pid,
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
        await fsp.rm(dir, { recursive: true, force: true });
      },
    };
  }
}
