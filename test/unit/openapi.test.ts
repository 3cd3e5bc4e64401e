// The OpenAPI document is generated from the route table and committed:
// this fails when docs/openapi.json is stale (regenerate: node scripts/openapi.mjs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { buildOpenApi, VERSION } from "../../packages/server/src/index.js";

test("docs/openapi.json matches the routes", () => {
  const committed = JSON.parse(readFileSync(new URL("../../docs/openapi.json", import.meta.url), "utf8")) as unknown;
  assert.deepEqual(committed, JSON.parse(JSON.stringify(buildOpenApi(VERSION))));
});
