// core/: the domain. Apps, sandboxes (state machine, timers, names, tags),
// their processes and events, API tokens. It depends only on the interfaces
// in ports.ts (Store, Backend, ImageService, OutputReader) and never spawns a
// process or touches the filesystem itself.
//
// A sandbox's life: Created (stored) → Scheduled (admitted) → Started (the
// runtime runs it; the image was resolved first) → Finished (entrypoint
// exited, terminated, timed out, OOM, or failed to start), each step a stored
// event. A server restart re-adopts every Started sandbox (recover()).
export { AppService } from "./apps.js";
export { BuildService, BUILD_LIMITS, type BuildJob, type BuildServiceDeps, type ImageGrants } from "./builds.js";
export { imageIdsIn, toImageSource } from "./image-source.js";
export { SandboxService, SANDBOX_DEFAULTS, ENTRY_EXEC_ID, type SandboxServiceDeps } from "./sandboxes.js";
export { TokenService, hashToken, DEFAULT_WORKSPACE_ID } from "./tokens.js";
export { WorkspaceService } from "./workspaces.js";
export { SecretService, type SecretInfo } from "./secrets.js";
export { VolumeService } from "./volumes.js";
export { Admission, type Capacity, type Reservation } from "./admission.js";
export { WarmPools, type PoolShape } from "./pools.js";
export { TRANSITIONS, canTransition } from "./lifecycle.js";
export {
  SbxServerError,
  InvalidArgumentError,
  UnauthenticatedError,
  NotFoundError,
  AlreadyExistsError,
  FailedPreconditionError,
  DeadlineExceededError,
  ResourceExhaustedError,
  UnavailableError,
  InternalError,
} from "./errors.js";
export type * from "./ports.js";
