import { SbxClient, Probe } from "sbx";

const modal = new SbxClient();
const app = await modal.apps.fromName("my-app", { createIfMissing: true });
const image = modal.images.fromRegistry("python:3.13-slim");

const sb = await modal.sandboxes.create(app, image, {
  entrypoint: ["python3", "-m", "http.server", "8080"],
  readinessProbe: Probe.withTcp(8080),
});

// Blocks until port 8080 is accepting connections
await sb.waitUntilReady();

// The server is now ready — interact with it via tunnels, exec, etc.

await sb.terminate();
