// The public surface of the sbx SDK. Every export is named here; a test pins the list.
export { SbxClient, DEFAULT_SERVER_URL } from "./client.js";
export type { SbxClientOptions } from "./client.js";
export { App, AppService } from "./apps.js";
export type { AppFromNameParams } from "./apps.js";
export { Image, ImageService } from "./images.js";
export type { DebianSlimParams, DockerfileCommandsParams, ImageBuildParams, ImagePruneParams } from "./images.js";
export { Secret, SecretService } from "./secrets.js";
export type { SecretFromNameParams, SecretCreateParams, SecretDeleteParams } from "./secrets.js";
export { Probe } from "./probe.js";
export type { ProbeConfig, ProbeParams } from "./probe.js";
export { Sandbox } from "./sandbox.js";
export type { ExecParams, TerminateParams } from "./sandbox.js";
export { SandboxService } from "./sandboxes.js";
export type { SandboxCreateParams, SandboxListParams } from "./sandboxes.js";
export { Volume, VolumeService } from "./volumes.js";
export { WorkspaceService } from "./workspaces.js";
export type { VolumeMountOptions, VolumeFromNameParams, VolumeDeleteParams } from "./volumes.js";
export { ContainerProcess } from "./process.js";
export type { CallOptions } from "./process.js";
export { SbxReadableStream, SbxWritableStream } from "./streams.js";
export type { StreamMode } from "./streams.js";
export {
  SbxError,
  NotFoundError,
  AlreadyExistsError,
  InvalidError,
  ConflictError,
  TimeoutError,
  SandboxTimeoutError,
  AuthError,
  ResourceExhaustedError,
  ClientClosedError,
} from "./errors.js";
export type { SbxErrorCode } from "./errors.js";
export type {
  ErrorCode,
  FinishReason,
  SandboxState,
  SandboxEvent,
  EventType,
  ImageSpec,
  ImageBuild,
  ImageInfo,
  ImageRemoveResult,
  SecretRef,
  SecretInfo,
  Workspace,
  WorkspaceCreated,
} from "./wire.js";
