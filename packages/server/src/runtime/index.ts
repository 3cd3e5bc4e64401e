// runtime/: the local OCI backend (core's `Backend`), everything it needs to
// run a sandbox on this host — the hardened OCI config (oci-spec.ts,
// seccomp.ts), the runc/crun driver (runc.ts), the per-sandbox rootfs and uid
// range (rootfs.ts), the sbx-agent connection (agent-client.ts,
// agent/proto.ts) — and the reader of process output files (output-reader.ts).
// It knows nothing of HTTP or the store.
//
// A sandbox on disk, <dataDir>/sandboxes/<id>/:
//   create   state.json (uid slot, address) → disk.img (the writable disk: a
//            sparse ext4 image of the disk limit, mounted at disk/; made
//            while the layers are idmapped) → lower/<n> idmapped layer binds →
//            rootfs/ overlay (disk/upper, disk/work) → resolv.conf, hosts, hostname,
//            bundle/config.json → `runc create` (namespaces, cgroup /sbx/<id>)
//            → netns named sbx-<id> and wired (net/) → `runc start` → the
//            agent answers HELLO on run/agent.sock.
//   running  the agent (PID 1) writes run/procs/<execId>/{stdout,stderr,exit};
//            no server process is attached, so it survives a server restart.
//   adopt    state.json + `runc state` → reconnect to the agent; exits that
//            happened meanwhile are replayed from the exit files.
//   destroy  runc kill/delete → cgroup dirs → veth + netns → unmount overlay
//            and lowers → outputs copied out of the disk into a plain run/
//            (bounded) → unmount and remove the disk → remove rootfs/,
//            lower/, bundle/; state.json is marked destroyed (slot and
//            address free again); run/ (outputs) is kept.
//   orphans  cleanupOrphans(knownRunning), at start-up: whatever a crash left
//            of sandboxes not running (a create cut short, a destroy not
//            finished) is destroyed as above.
// Runtime state lives under <dataDir>/runc (`--root`).

export { parseExit } from "./exit-file.js";
export { FileOutputReader } from "./output-reader.js";
export { LocalVolumeStorage } from "./volume-store.js";
export { createLocalBackend, CREATE_STEPS, type LocalBackendOptions, type CreateTimings, type LocalSandbox } from "./local-backend.js";
export { DEFAULT_DISK, type DiskOptions } from "./disk.js";
export { toOciSpec, IN_SANDBOX, type OciSpecInput, type OciHostInfo, type OciSpec } from "./oci-spec.js";
export { seccompProfile, type SeccompProfile } from "./seccomp.js";
export { OciRuntime, RuntimeError, chooseRuntime, type RuntimeName, type ContainerState } from "./runc.js";
export { AgentClient, AgentError, type AgentExec } from "./agent-client.js";
export { ProtocolError } from "./agent/proto.js";
export { sandboxPaths, readFileNoFollow, UID_BASE_START, UID_RANGE, type SandboxPaths, type SandboxState } from "./rootfs.js";
