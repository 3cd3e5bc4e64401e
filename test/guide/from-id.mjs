import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const app = await modal.apps.fromName("my-app", { createIfMissing: true }); // preamble
const image = modal.images.fromRegistry("python:3.13-slim"); // preamble

const sb = await modal.sandboxes.create(app, image);
const sbId = sb.sandboxId;
await sb.detach();

// ... later in the program ...

const sb2 = await modal.sandboxes.fromId(sbId);

const p = await sb2.exec(["echo", "hello"]);
console.log(await p.stdout.readText());

await sb2.terminate();
