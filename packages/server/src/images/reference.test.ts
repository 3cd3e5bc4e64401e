import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageRefError } from "./errors.js";
import { formatImageRef, isLoopbackHost, parseImageRef, registryEndpoint } from "./reference.js";

const D = "sha256:" + "a".repeat(64);

test("docker hub short names", () => {
  assert.deepEqual(parseImageRef("python:3.13-slim"), { registry: "docker.io", repository: "library/python", tag: "3.13-slim" });
  assert.deepEqual(parseImageRef("python"), { registry: "docker.io", repository: "library/python", tag: "latest" });
  assert.deepEqual(parseImageRef("user/img"), { registry: "docker.io", repository: "user/img", tag: "latest" });
  assert.deepEqual(parseImageRef("docker.io/python"), { registry: "docker.io", repository: "library/python", tag: "latest" });
  assert.deepEqual(parseImageRef("index.docker.io/user/img:1"), { registry: "docker.io", repository: "user/img", tag: "1" });
  assert.deepEqual(parseImageRef("a/b/c"), { registry: "docker.io", repository: "a/b/c", tag: "latest" });
});

test("explicit hosts", () => {
  assert.deepEqual(parseImageRef(`host:5000/a/b@${D}`), { registry: "host:5000", repository: "a/b", digest: D });
  assert.deepEqual(parseImageRef("localhost/x"), { registry: "localhost", repository: "x", tag: "latest" });
  assert.deepEqual(parseImageRef("localhost:5000/x:t"), { registry: "localhost:5000", repository: "x", tag: "t" });
  assert.deepEqual(parseImageRef("ghcr.io/o/r:v1.2"), { registry: "ghcr.io", repository: "o/r", tag: "v1.2" });
  assert.deepEqual(parseImageRef("127.0.0.1:5000/library/python:3.13-slim"), {
    registry: "127.0.0.1:5000",
    repository: "library/python",
    tag: "3.13-slim",
  });
  assert.deepEqual(parseImageRef("[::1]:5000/x"), { registry: "[::1]:5000", repository: "x", tag: "latest" });
  // An uppercase first component is a host (Docker's rule), e.g. a hostname.
  assert.deepEqual(parseImageRef("Example/x"), { registry: "Example", repository: "x", tag: "latest" });
});

test("tag and digest together keep both; digest wins when pulling", () => {
  assert.deepEqual(parseImageRef(`python:3@${D}`), { registry: "docker.io", repository: "library/python", tag: "3", digest: D });
  assert.equal(formatImageRef(parseImageRef(`python:3@${D}`)), `docker.io/library/python:3@${D}`);
  assert.equal(formatImageRef(parseImageRef("python")), "docker.io/library/python:latest");
});

test("invalid references", () => {
  const bad = [
    "",
    "Python",
    "user/Img",
    "python:",
    "python:-x",
    "python:a b",
    " python",
    "a".repeat(64),
    "python@sha256:abc",
    "python@sha256:" + "A".repeat(64),
    "python@md5:" + "a".repeat(32),
    "a//b",
    "a/",
    "/a",
    "a_-b",
    "host:port/x",
    "-host/x",
    "x:" + "t".repeat(129),
    "docker.io/" + "a".repeat(250),
  ];
  for (const r of bad) {
    assert.throws(() => parseImageRef(r), (e: unknown) => e instanceof ImageRefError && e.message.includes(JSON.stringify(r)), r);
  }
});

test("endpoints", () => {
  assert.equal(registryEndpoint("docker.io").baseUrl, "https://registry-1.docker.io");
  assert.equal(registryEndpoint("docker.io", { "docker.io": "http://127.0.0.1:5000/" }).baseUrl, "http://127.0.0.1:5000");
  assert.equal(registryEndpoint("docker.io", { "docker.io": "http://127.0.0.1:5000/" }).isMirror, true);
  assert.equal(registryEndpoint("ghcr.io").baseUrl, "https://ghcr.io");
  assert.equal(registryEndpoint("127.0.0.1:5000").baseUrl, "http://127.0.0.1:5000");
  assert.equal(registryEndpoint("localhost:5000").baseUrl, "http://localhost:5000");
  assert.equal(registryEndpoint("reg.lan:5000", {}, ["reg.lan:5000"]).baseUrl, "http://reg.lan:5000");
  assert.equal(registryEndpoint("reg.lan:5000", {}, ["reg.lan"]).baseUrl, "http://reg.lan:5000");
  assert.equal(registryEndpoint("reg.lan:5000").baseUrl, "https://reg.lan:5000");
  assert.ok(isLoopbackHost("127.1.2.3:80"));
  assert.ok(isLoopbackHost("[::1]:80"));
  assert.ok(!isLoopbackHost("128.0.0.1"));
  assert.throws(() => registryEndpoint("docker.io", { "docker.io": "ftp://x" }), ImageRefError);
});
