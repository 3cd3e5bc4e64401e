// Sandboxes resolve names through sbx's DNS forwarder on the bridge's gateway
// (DESIGN.md): the forwarder asks the configured upstream — here a tiny
// resolver on loopback that answers every A query with 10.1.2.3 — and the
// sandbox never talks to the upstream itself.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import type { App, SbxClient } from "sbx";
import { startTestServer, type TestServer } from "../support/server.js";

let upstream: Socket;
let queries = 0;
let server: TestServer;
let client: SbxClient;
let app: App;

/** An answer to `query` (one question) with one A record. */
function answerA(query: Buffer, ip: number[]): Buffer {
  let end = 12;
  while (query[end] !== 0) end += query[end]! + 1; // the question's name
  end += 5; // zero byte, type, class
  const header = Buffer.from(query.subarray(0, 12));
  header.writeUInt16BE(0x8180, 2); // response, recursion available, no error
  header.writeUInt16BE(1, 6); // one answer
  header.writeUInt16BE(0, 8);
  header.writeUInt16BE(0, 10);
  const record = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ip]);
  return Buffer.concat([header, query.subarray(12, end), record]);
}

before(async () => {
  upstream = createSocket("udp4");
  upstream.on("message", (q, from) => {
    queries++;
    const type = q.readUInt16BE(q.length - 4);
    const reply = type === 1 ? answerA(q, [10, 1, 2, 3]) : Buffer.concat([q.subarray(0, 2), Buffer.from([0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]), q.subarray(12)]);
    upstream.send(reply, from.port, from.address);
  });
  await new Promise<void>((r) => upstream.bind(0, "127.0.0.1", r));
  const port = (upstream.address() as { port: number }).port;
  server = await startTestServer({ extraArgs: ["--dns-upstream", `127.0.0.1:${port}`] });
  client = server.client();
  app = await client.apps.fromName("it-dns", { createIfMissing: true });
});

after(async () => {
  await server?.stop();
  upstream?.close();
});

test("a sandbox resolves names through the gateway's forwarder", async () => {
  const sb = await client.sandboxes.create(app);
  try {
    const p = await sb.exec(["python3", "-c", "import socket; print(socket.gethostbyname('example.test'))"]);
    const [out, err] = await Promise.all([p.stdout.readText(), p.stderr.readText()]);
    assert.equal(out, "10.1.2.3\n", err);
    assert.ok(queries > 0, "the upstream saw no query");
    const conf = await sb.exec(["cat", "/etc/resolv.conf"]);
    assert.match(await conf.stdout.readText(), /^nameserver 10\.88\.0\.1$/m);
  } finally {
    await sb.terminate();
  }
});

test("a blockNetwork sandbox resolves nothing", async () => {
  const sb = await client.sandboxes.create(app, undefined, { blockNetwork: true });
  try {
    const before = queries;
    const p = await sb.exec(["python3", "-c", "import socket\ntry:\n  socket.gethostbyname('example.test'); print('resolved')\nexcept OSError:\n  print('no')"]);
    assert.equal(await p.stdout.readText(), "no\n");
    assert.equal(queries, before);
  } finally {
    await sb.terminate();
  }
});
