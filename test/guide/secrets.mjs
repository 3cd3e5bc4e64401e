import { SbxClient } from "sbx";

const modal = new SbxClient(); // preamble
const app = await modal.apps.fromName("my-app", { createIfMissing: true }); // preamble

const secret = modal.secrets.fromObject({ MY_SECRET: "hello" });
const image = modal.images.fromRegistry("python:3.13-slim");

const sb = await modal.sandboxes.create(app, image, {
  secrets: [secret],
});

const p = await sb.exec(["bash", "-c", "echo $MY_SECRET"]);
console.log(await p.stdout.readText());

sb.detach();
