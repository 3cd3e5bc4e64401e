// The server's configuration: what `sbx serve` parsed from its flags. Only
// compose.ts reads it; nothing below api/ sees config or the environment.
export interface ServerConfig {
  dataDir: string;
  listen: { host: string; port: number };
  /** registry host → mirror base URL, e.g. { "docker.io": "http://127.0.0.1:5000" }. */
  registryMirrors: Record<string, string>;
  /** Registry hosts that may be reached over plain http (loopback always may). */
  insecureRegistries: string[];
  /** Forces the OCI runtime; default: crun on pure cgroup v2 hosts, runc otherwise. */
  runtime?: "runc" | "crun";
  /** Where the admin token and URL are written for local clients; null: nowhere. */
  clientConfigPath: string | null;
  /** Directory holding sbx-agent and sbx-idmap; default: the repository's agent/build. */
  agentDir?: string;
  /** Host-wide cache of the Debian base rootfs, shared by data dirs. */
  baseCacheDir?: string;
  logger?: boolean;
  /** What sandboxes may reserve in total; defaults from the host (see compose.ts). */
  capacity?: { cpu?: number; memoryMiB?: number; queueLimit?: number };
  /** Sandboxes kept started per app and shape, ready to be claimed (0: no pools). Apps may override it. */
  warmPoolSize?: number;
  /** Resolvers the sandboxes' DNS forwarder asks ("IP" or "IP:PORT"); default: the host's resolv.conf. */
  dnsUpstreams?: string[];
  /** Tests only (from SBX_TEST_KILL_AT_STEP in `sbx serve`): die at a create step. */
  faultInjection?: { killAtStep?: string };
}

export const DEFAULT_PORT = 7423;
