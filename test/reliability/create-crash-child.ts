// Child of create-crash.test.ts: creates one sandbox with a backend told to
// SIGKILL this process at a named create step.
//   node --import tsx create-crash-child.ts DATA_DIR AGENT_DIR LAYER_DIR SANDBOX_ID STEP
import { createLocalBackend } from "../../packages/server/src/runtime/index.js";

const [dataDir, agentDir, layer, sandboxId, step] = process.argv.slice(2) as [string, string, string, string, string];
const backend = createLocalBackend({ dataDir, agentDir, faultInjection: { killAtStep: step }, log: () => undefined });
await backend.create({
  sandboxId,
  image: { imageId: "sha256:crash", layers: [layer], config: { env: [] } },
  env: {},
  memoryLimitBytes: 256 << 20,
  pidsLimit: 128,
  blockNetwork: false,
});
// Reaching here means the step was never hit.
console.log("created");
process.exit(3);
