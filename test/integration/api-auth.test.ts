// Every route the router holds, called without a token and with a bad one:
// 401 everywhere but the public allowlist. A new route is covered the moment
// it is registered; one marked public without being on the list fails here.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compose, PUBLIC_ROUTES, registeredRoutes } from "../../packages/server/src/index.js";
import { ROUTES } from "../../packages/server/src/api/routes.js";

let composed: Awaited<ReturnType<typeof compose>>;
let dataDir: string;

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "sbx-auth-"));
  composed = await compose({
    dataDir,
    listen: { host: "127.0.0.1", port: 0 },
    registryMirrors: {},
    insecureRegistries: [],
    clientConfigPath: null,
  });
  await composed.api.ready();
});

after(async () => {
  await composed?.close();
  await rm(dataDir, { recursive: true, force: true });
});

const fill = (url: string) => url.replace(/:([A-Za-z]+)/g, (_, name: string) => `x-${name}`);

test("every route but the public ones answers 401 without a token and with a bad one", async () => {
  const routes = registeredRoutes(composed.api);
  assert.ok(routes.length >= ROUTES.length, "the router lists fewer routes than the table");
  const badTokens = [undefined, "Bearer nope", "Bearer sbx_aaaaaaaaaaaaaaaaaaaa_" + "A".repeat(43), "Basic YWRtaW46YWRtaW4="];
  for (const { method, url } of routes) {
    const key = `${method} ${url}`;
    for (const authorization of badTokens) {
      const res = await composed.api.inject({
        method: method as "GET",
        url: fill(url),
        headers: authorization ? { authorization } : {},
      });
      if (PUBLIC_ROUTES.has(key)) {
        assert.notEqual(res.statusCode, 401, `${key} is public but answered 401`);
      } else {
        assert.equal(res.statusCode, 401, `${key} with ${authorization ?? "no token"} answered ${res.statusCode}`);
        if (method !== "HEAD") assert.equal(res.json().error.code, "unauthenticated");
      }
    }
  }
  // An unknown path is no oracle either: 401 before 404.
  const unknown = await composed.api.inject({ method: "GET", url: "/v1/no-such-route" });
  assert.equal(unknown.statusCode, 401);
});

test("the route table's public flags match the allowlist", () => {
  for (const r of ROUTES) {
    assert.equal(!r.auth, PUBLIC_ROUTES.has(`${r.method} ${r.url}`), `${r.method} ${r.url}`);
  }
});

test("the admin token works; it is stored only as a hash", async () => {
  const token = composed.newAdminToken!;
  const ok = await composed.api.inject({ method: "GET", url: "/v1/secrets", headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.statusCode, 200);
  const { readFile } = await import("node:fs/promises");
  const db = await readFile(join(dataDir, "sbx.db"));
  assert.equal(db.includes(Buffer.from(token)), false);
  assert.equal(db.includes(Buffer.from(token.split("_").at(-1)!)), false);
});

test("a known token's id with another secret is refused, however often the real one was used", async () => {
  const token = composed.newAdminToken!;
  const headers = (t: string) => ({ authorization: `Bearer ${t}` });
  for (let i = 0; i < 3; i++) {
    assert.equal((await composed.api.inject({ method: "GET", url: "/v1/secrets", headers: headers(token) })).statusCode, 200);
  }
  const secret = token.split("_").at(-1)!;
  const flipped = (secret[0] === "A" ? "B" : "A") + secret.slice(1);
  const forged = token.slice(0, token.length - secret.length) + flipped;
  const res = await composed.api.inject({ method: "GET", url: "/v1/secrets", headers: headers(forged) });
  assert.equal(res.statusCode, 401);
  assert.equal(res.json().error.code, "unauthenticated");
});
