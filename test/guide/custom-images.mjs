import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const app = await modal.apps.fromName("my-app", { createIfMissing: true }); // preamble

const image = modal.images
.fromRegistry("python:3.13-slim")
.dockerfileCommands(["RUN pip install pandas numpy"]);
const sb = await modal.sandboxes.create(app, image);
sb.detach();
