import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const image = modal.images.fromRegistry("python:3.13-slim"); // preamble

const app = await modal.apps.fromName("my-app", { createIfMissing: true });
const sb1 = await modal.sandboxes.create(app, image, { name: "my-name" });

// returns the currently running Sandbox with the name "my-name" from the
// deployed app named "my-app".
const sb2 = await modal.sandboxes.fromName("my-app", "my-name");
console.assert(sb1.sandboxId === sb2.sandboxId); // sb1 and sb2 refer to the same Sandbox

sb1.detach();
sb2.detach();
