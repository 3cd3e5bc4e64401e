// The server's side of the sbx-agent protocol (agent/PROTOCOL.md): one
// AgentClient per sandbox, over the unix socket in the sandbox's run dir.
// Requests are matched to replies by REQ; EXIT events go to listeners.
// `start` retries until the agent answers HELLO; a dropped connection is
// re-established in the background (listeners hear `reconnected` so they can
// replay exit files for events missed meanwhile).

import { connect, type Socket } from "node:net";
import { closeSync, fstatSync, openSync, constants as fsc } from "node:fs";

/** Linux O_PATH (not in Node's constants): a handle on a path entry, not its content. */
const O_PATH = 0o10000000;
import { basename, dirname } from "node:path";
import {
  encodeFrameParts,
  FrameDecoder,
  getNumber,
  getString,
  MsgType,
  PROTOCOL_VERSION,
  Tag,
  type Field,
  type Frame,
  Flags,
  EXEC_ID_RE,
  REASONS,
} from "./agent/proto.js";
import type { ExitStatus } from "../core/ports.js";

export class AgentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AgentError";
  }
}

export interface AgentExec {
  id: string;
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Run as this uid:gid (supplementary groups: gid only); default: the agent's --user, else root. */
  user?: { uid: number; gid: number };
  timeoutMs?: number;
  stdoutNull?: boolean;
  stderrNull?: boolean;
}

interface Pending {
  resolve: (f: Frame) => void;
  reject: (e: Error) => void;
}


/** One socket, one HELLO. */
class AgentConnection {
  private nextReq = 1;
  private pending = new Map<number, Pending>();
  private decoder = new FrameDecoder();
  closed = false;

  private constructor(
    private readonly sock: Socket,
    private readonly onExit: (id: string, st: ExitStatus) => void,
    private readonly onClose: (err?: Error) => void,
  ) {
    sock.on("data", (d: Buffer) => {
      let frames: Frame[];
      try {
        frames = this.decoder.push(d);
      } catch (e) {
        this.destroy(e as Error);
        return;
      }
      for (const f of frames) this.dispatch(f);
    });
    sock.on("error", (e) => this.destroy(e));
    sock.on("close", () => this.destroy());
  }

  static open(
    path: string,
    onExit: (id: string, st: ExitStatus) => void,
    onClose: (err?: Error) => void,
  ): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      // The run dir is writable by the sandbox, which could swap agent.sock for
      // a symlink to a host socket between a check and the connect. So take an
      // O_PATH handle on the entry itself (never following it), check that it is
      // a socket, and connect through that very handle.
      let fd = -1;
      try {
        const dirFd = openSync(dirname(path), fsc.O_RDONLY | fsc.O_DIRECTORY);
        try {
          fd = openSync(`/proc/self/fd/${dirFd}/${basename(path)}`, O_PATH | fsc.O_NOFOLLOW);
        } finally {
          closeSync(dirFd);
        }
        if (!fstatSync(fd).isSocket()) throw new AgentError(`${path} is not a socket`);
      } catch (e) {
        if (fd >= 0) closeSync(fd);
        return reject(e as Error);
      }
      let dirFd = fd;
      const target = `/proc/self/fd/${fd}`;
      const sock = connect({ path: target });
      const done = (e?: Error) => {
        if (dirFd >= 0) closeSync(dirFd);
        dirFd = -1;
        sock.off("error", done);
        if (e) {
          sock.destroy();
          reject(e);
        } else resolve(new AgentConnection(sock, onExit, onClose));
      };
      sock.once("error", done);
      sock.once("connect", () => done());
    });
  }

  private dispatch(f: Frame): void {
    try {
      if (f.type === MsgType.EXIT) {
        const id = getString(f, Tag.ID);
        const code = getNumber(f, Tag.CODE);
        const reason = getString(f, Tag.REASON);
        if (!id || !EXEC_ID_RE.test(id) || code === undefined || !REASONS.includes(reason as ExitStatus["reason"])) {
          throw new AgentError("malformed EXIT event");
        }
        this.onExit(id, { code, reason: reason as ExitStatus["reason"] });
        return;
      }
      const req = getNumber(f, Tag.REQ);
      const p = req === undefined ? undefined : this.pending.get(req);
      if (!p || req === undefined) throw new AgentError(`reply to unknown request ${req}`);
      this.pending.delete(req);
      if (f.type === MsgType.OK) p.resolve(f);
      else p.reject(new AgentError(getString(f, Tag.MSG) ?? "agent error"));
    } catch (e) {
      this.destroy(e as Error);
    }
  }

  request(type: number, fields: Field[]): Promise<Frame> {
    if (this.closed) return Promise.reject(new AgentError("agent connection closed"));
    const req = this.nextReq++;
    const parts = encodeFrameParts(type, [[Tag.REQ, req], ...fields]);
    return new Promise((resolve, reject) => {
      this.pending.set(req, { resolve, reject });
      // Small parts are coalesced by cork; a large DATA part goes out from the caller's buffer.
      this.sock.cork();
      for (const p of parts) this.sock.write(p);
      this.sock.uncork();
    });
  }

  /** Whether this socket keeps the process alive. */
  setRef(ref: boolean): void {
    if (ref) this.sock.ref();
    else this.sock.unref();
  }

  destroy(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    const e = new AgentError(`agent connection lost${err ? `: ${err.message}` : ""}`);
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.onClose(err);
  }
}

export interface AgentClientOptions {
  log?: (m: string) => void;
  /** Called after a dropped connection was re-established (replay missed exits). */
  onReconnect?: () => void;
  /** Whether the sandbox still runs; no reconnect attempts once it says false. */
  alive?: () => boolean;
}

export class AgentClient {
  private conn: AgentConnection | null = null;
  private connecting: Promise<AgentConnection> | null = null;
  private exitListeners: ((id: string, st: ExitStatus) => void)[] = [];
  private dropListeners: (() => void)[] = [];
  private closed = false;
  private refd = true;
  features: string[] = [];

  constructor(
    readonly socketPath: string,
    private opts: AgentClientOptions = {},
  ) {}

  setOnReconnect(fn: () => void): void {
    this.opts.onReconnect = fn;
  }

  onExit(l: (id: string, st: ExitStatus) => void): void {
    this.exitListeners.push(l);
  }

  /** `l` is called each time the connection drops (before any reconnect): the agent may have died. */
  onDrop(l: () => void): void {
    this.dropListeners.push(l);
  }

  /** Whether the connection keeps the process alive (a helper's idle connection should not). */
  setRef(ref: boolean): void {
    this.refd = ref;
    this.conn?.setRef(ref);
  }

  /**
   * Connects, retrying until the agent answers HELLO or `timeoutMs` passes,
   * `signal` aborts, or `alive()` says the sandbox is gone.
   */
  async start(opts: { timeoutMs: number; signal?: AbortSignal; alive?: () => Promise<boolean> | boolean }): Promise<void> {
    const deadline = Date.now() + opts.timeoutMs;
    let delay = 2;
    let lastErr: unknown;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new AgentError("client closed");
      opts.signal?.throwIfAborted();
      try {
        this.conn = await this.openOnce();
        return;
      } catch (e) {
        lastErr = e;
      }
      if (Date.now() > deadline) {
        throw new AgentError(`agent did not answer within ${opts.timeoutMs} ms: ${(lastErr as Error)?.message ?? lastErr}`);
      }
      if (opts.alive && attempt % 5 === 4 && !(await opts.alive())) {
        throw new AgentError(`sandbox exited before its agent answered: ${(lastErr as Error)?.message ?? lastErr}`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 50);
    }
  }

  private async openOnce(): Promise<AgentConnection> {
    const conn = await AgentConnection.open(
      this.socketPath,
      (id, st) => {
        for (const l of this.exitListeners) {
          try {
            l(id, st);
          } catch (e) {
            this.opts.log?.(`exit listener failed: ${(e as Error).message}`);
          }
        }
      },
      (err) => this.dropped(conn0, err),
    );
    const conn0 = conn;
    try {
      const ok = await withTimeout(conn.request(MsgType.HELLO, []), 5000, "HELLO");
      const v = getNumber(ok, Tag.VERSION);
      if (v !== PROTOCOL_VERSION) throw new AgentError(`agent speaks protocol ${v}, want ${PROTOCOL_VERSION}`);
      this.features = (getString(ok, Tag.FEATURES) ?? "").split(",").filter(Boolean);
      conn.setRef(this.refd);
    } catch (e) {
      conn.destroy();
      throw e;
    }
    return conn;
  }

  private dropped(which: AgentConnection | undefined, err?: Error): void {
    if (this.closed || (which && this.conn !== which)) return;
    this.conn = null;
    for (const l of this.dropListeners) l();
    if (this.opts.alive && !this.opts.alive()) return;
    this.opts.log?.(`agent connection ${this.socketPath} dropped${err ? `: ${err.message}` : ""}`);
    void this.ensure().then(
      () => this.opts.onReconnect?.(),
      () => undefined,
    );
  }

  /** The live connection, reconnecting (a few tries) if it dropped. */
  private ensure(): Promise<AgentConnection> {
    if (this.conn && !this.conn.closed) return Promise.resolve(this.conn);
    if (this.closed) return Promise.reject(new AgentError("client closed"));
    if (!this.connecting) {
      this.connecting = (async () => {
        let delay = 20;
        let last: unknown;
        for (let i = 0; i < 8 && !this.closed && (this.opts.alive?.() ?? true); i++) {
          try {
            const c = await this.openOnce();
            this.conn = c;
            return c;
          } catch (e) {
            last = e;
            await new Promise((r) => setTimeout(r, delay));
            delay = Math.min(delay * 2, 1000);
          }
        }
        throw new AgentError(`cannot reach agent: ${(last as Error)?.message ?? last}`);
      })().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async request(type: number, fields: Field[]): Promise<Frame> {
    const c = await this.ensure();
    return c.request(type, fields);
  }

  async exec(e: AgentExec): Promise<number> {
    if (!EXEC_ID_RE.test(e.id)) throw new AgentError(`bad exec id ${JSON.stringify(e.id)}`);
    if (e.argv.length === 0) throw new AgentError("empty argv");
    const fields: Field[] = [[Tag.ID, e.id], ...e.argv.map((a): Field => [Tag.ARG, a])];
    for (const [k, v] of Object.entries(e.env)) fields.push([Tag.ENV, `${k}=${v}`]);
    if (e.cwd) fields.push([Tag.CWD, e.cwd]);
    if (e.timeoutMs) fields.push([Tag.TIMEOUT_MS, e.timeoutMs]);
    if (e.user) fields.push([Tag.UID, e.user.uid], [Tag.GID, e.user.gid]);
    const flags = (e.stdoutNull ? Flags.STDOUT_NULL : 0) | (e.stderrNull ? Flags.STDERR_NULL : 0);
    if (flags) fields.push([Tag.FLAGS, flags]);
    const ok = await this.request(MsgType.EXEC, fields);
    return getNumber(ok, Tag.PID) ?? 0;
  }

  async stdin(id: string, offset: number, data: Uint8Array): Promise<number> {
    const ok = await this.request(MsgType.STDIN, [
      [Tag.ID, id],
      [Tag.OFFSET, offset],
      [Tag.DATA, data],
    ]);
    const n = getNumber(ok, Tag.OFFSET);
    if (n === undefined) throw new AgentError("STDIN reply without OFFSET");
    return n;
  }

  async stdinClose(id: string): Promise<void> {
    await this.request(MsgType.STDIN_CLOSE, [[Tag.ID, id]]);
  }

  async signal(id: string, signal: number): Promise<void> {
    await this.request(MsgType.SIGNAL, [
      [Tag.ID, id],
      [Tag.SIGNAL, signal],
    ]);
  }

  close(): void {
    this.closed = true;
    this.conn?.destroy();
    this.conn = null;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new AgentError(`${what} timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
