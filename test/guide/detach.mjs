import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const app = await modal.apps.fromName("my-app", { createIfMissing: true }); // preamble
const image = modal.images.fromRegistry("python:3.13-slim"); // preamble

const sb = await modal.sandboxes.create(app, image);
sb.detach();
