import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const app = await modal.apps.fromName("my-app", { createIfMissing: true }); // preamble
const image = modal.images.fromRegistry("python:3.13-slim"); // preamble

const sb1 = await modal.sandboxes.create(app, image, { name: "my-name" });

// this will raise an AlreadyExistsError
const sb2 = await modal.sandboxes.create(app, image, { name: "my-name" });
