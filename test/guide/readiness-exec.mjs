import { SbxClient, Probe } from "sbx";

const modal = new SbxClient();
const app = await modal.apps.fromName("my-app", { createIfMissing: true });
const image = modal.images.fromRegistry("python:3.13-slim");

const sb = await modal.sandboxes.create(app, image, {
  entrypoint: ["bash", "-c", "sleep 5 && touch /tmp/ready && sleep 3600"],
  readinessProbe: Probe.withExec(["sh", "-c", "test -f /tmp/ready"], {
    intervalMs: 250,
  }),
});

// Blocks until "test -f /tmp/ready" exits with code 0
await sb.waitUntilReady();

// The sandbox is now ready

await sb.terminate();
