// A server whose log reader goes away (`sbx serve | head`, a log shipper that
// exited) keeps serving: its log lines fail with EPIPE and are dropped.
// Before, the first such line ended the server mid-request, and a SIGTERM
// that found it so left its spare disks mounted.
//
//   node --import tsx --test test/reliability/log-reader-gone.test.ts
import { test } from "node:test";
import assert from "node:assert/strict";
import { mountsUnder } from "../support/leaks.js";
import { startTestServer } from "../support/server.js";

test("a server whose log pipes were closed keeps creating sandboxes, and a SIGTERM still stops it cleanly", async () => {
  const server = await startTestServer();
  try {
    const client = server.client();
    const app = await client.apps.fromName("log-reader-gone", { createIfMissing: true });
    server.closeLogPipes();
    // Each create and terminate writes a log line.
    for (let i = 0; i < 3; i++) {
      const sb = await client.sandboxes.create(app);
      const p = await sb.exec(["echo", `hi ${i}`]);
      assert.equal(await p.stdout.readText(), `hi ${i}\n`);
      await sb.terminate();
    }
    assert.notEqual(server.pid(), undefined, "the server is still running");
    // Let the last destroy finish, as the test server's stop() does.
    for (let i = 0; i < 150 && mountsUnder(`${server.dataDir}/sandboxes`).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await server.signal("SIGTERM"), 0, "a clean stop, its last log line dropped too");
    assert.deepEqual(mountsUnder(server.dataDir), [], "nothing left mounted: the spare disks were released");
  } finally {
    await server.stop();
  }
});
