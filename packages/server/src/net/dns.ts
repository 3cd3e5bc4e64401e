// The DNS forwarder on the bridge's gateway address (DESIGN.md: the host's
// resolver may sit on an address a sandbox must not reach, so sandboxes ask
// sbx, and sbx asks the host's resolvers). UDP only; each query is relayed
// to the upstreams in turn from a fresh socket, and the first answer goes
// back. Bounded: queries in flight, their size, and how long each may take.
import { createSocket, type Socket } from "node:dgram";
import { readFileSync } from "node:fs";

const MAX_QUERY_BYTES = 4096;
const MAX_IN_FLIGHT = 256;
const QUERY_TIMEOUT_MS = 3000;

export interface Upstream {
  host: string;
  port: number;
}

/** The host's resolvers, from /etc/resolv.conf (what the server itself uses). */
export function hostResolvers(path = "/etc/resolv.conf"): Upstream[] {
  try {
    return readFileSync(path, "utf8")
      .split("\n")
      .map((l) => /^\s*nameserver\s+([0-9.]+)\s*$/.exec(l)?.[1])
      .filter((ip): ip is string => ip !== undefined)
      .map((host) => ({ host, port: 53 }));
  } catch {
    return [];
  }
}

/** "10.0.0.1" or "127.0.0.1:5353". */
export function parseUpstream(value: string): Upstream {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d{1,5}))?$/.exec(value);
  const port = m?.[2] ? Number(m[2]) : 53;
  if (!m || port < 1 || port > 65535) throw new Error(`a DNS upstream is IPv4[:port], e.g. 10.0.0.2 or 127.0.0.1:5353 (got "${value}")`);
  return { host: m[1]!, port };
}

export class DnsForwarder {
  private socket: Socket | null = null;
  private inFlight = 0;

  constructor(
    private readonly upstreams: Upstream[],
    private readonly log: (msg: string) => void,
  ) {}

  /** Listens on address:53. Another sbx server on this host may hold it already: then that one answers. */
  async start(address: string): Promise<void> {
    if (this.socket || this.upstreams.length === 0) return;
    const socket = createSocket({ type: "udp4", reuseAddr: true });
    socket.on("message", (msg, from) => this.relay(socket, msg, from.address, from.port));
    socket.on("error", (err) => this.log(`dns forwarder: ${err.message}`));
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(53, address, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    socket.unref();
    this.socket = socket;
  }

  private relay(server: Socket, query: Buffer, host: string, port: number): void {
    if (query.length < 12 || query.length > MAX_QUERY_BYTES || this.inFlight >= MAX_IN_FLIGHT) return;
    this.inFlight++;
    const upstream = createSocket("udp4");
    let i = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      upstream.close();
      this.inFlight--;
    };
    const ask = () => {
      const u = this.upstreams[i++ % this.upstreams.length]!;
      upstream.send(query, u.port, u.host, (err) => {
        if (err && i < this.upstreams.length) ask();
      });
    };
    const timer = setTimeout(finish, QUERY_TIMEOUT_MS);
    upstream.on("message", (answer) => {
      // The answer must be to this query (same id), or it is dropped.
      if (answer.length >= 12 && answer.readUInt16BE(0) === query.readUInt16BE(0)) server.send(answer, port, host);
      finish();
    });
    upstream.on("error", finish);
    ask();
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
  }
}
