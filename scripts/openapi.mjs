// Writes docs/openapi.json from the server's route table (run after the build).
// test/unit/openapi.test.ts fails when the committed file is stale.
import { writeFileSync } from "node:fs";
import { buildOpenApi, VERSION } from "@sbx/server";

writeFileSync(new URL("../docs/openapi.json", import.meta.url), JSON.stringify(buildOpenApi(VERSION), null, 2) + "\n");
