// The "Custom Images" example with a RUN command that needs no internet
// (the only change besides the import line and the class name).
import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const app = await modal.apps.fromName("my-app", { createIfMissing: true }); // preamble

const image = modal.images
.fromRegistry("python:3.13-slim")
.dockerfileCommands(["RUN pip --version > /pip-version && python -c 'import json; print(json.dumps({\"offline\": True}))' > /built.json"]);
const sb = await modal.sandboxes.create(app, image);
sb.detach();
