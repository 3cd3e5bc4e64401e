// Pins the SDK's public export list: adding or removing an export is a decision.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "../../packages/sdk/src/index.js";

test("the SDK exports exactly these values", () => {
  assert.deepEqual(Object.keys(sdk).sort(), [
    "AlreadyExistsError",
    "App",
    "AppService",
    "AuthError",
    "ClientClosedError",
    "ConflictError",
    "ContainerProcess",
    "DEFAULT_SERVER_URL",
    "Image",
    "ImageService",
    "InvalidError",
    "NotFoundError",
    "Probe",
    "ResourceExhaustedError",
    "Sandbox",
    "SandboxService",
    "SandboxTimeoutError",
    "SbxClient",
    "SbxError",
    "SbxReadableStream",
    "SbxWritableStream",
    "Secret",
    "SecretService",
    "TimeoutError",
    "Volume",
    "VolumeService",
    "WorkspaceService",
  ]);
});

test("every error class extends SbxError and carries a code", () => {
  const classes = [
    sdk.NotFoundError,
    sdk.AlreadyExistsError,
    sdk.InvalidError,
    sdk.ConflictError,
    sdk.TimeoutError,
    sdk.SandboxTimeoutError,
    sdk.AuthError,
    sdk.ResourceExhaustedError,
    sdk.ClientClosedError,
  ];
  for (const cls of classes) {
    const err = new cls("boom");
    assert.ok(err instanceof sdk.SbxError, cls.name);
    assert.ok(err instanceof Error);
    assert.equal(err.name, cls.name);
    assert.equal(err.message, "boom");
    assert.equal(typeof err.code, "string");
  }
  assert.ok(new sdk.SandboxTimeoutError("x") instanceof sdk.TimeoutError);
});
