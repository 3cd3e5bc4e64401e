import { test } from "node:test";
import assert from "node:assert/strict";
import { parseDockerfile, substitute } from "./dockerfile.js";
import { InvalidArgumentError } from "./errors.js";

test("RUN in shell and exec form, continuations and comments", () => {
  const got = parseDockerfile(["# a comment", "RUN apt-get update && \\\n    apt-get install -y curl", 'RUN ["python3", "-c", "print(1)"]', "run echo lower"]);
  assert.deepEqual(
    got.map((i) => (i.op === "RUN" ? (i.exec ?? i.shell) : null)),
    ["apt-get update &&      apt-get install -y curl", ["python3", "-c", "print(1)"], "echo lower"],
  );
  // A malformed JSON array is shell form, as in Docker.
  const [bad] = parseDockerfile(["RUN [not json"]);
  assert.equal(bad!.op === "RUN" && bad!.shell, "[not json");
});

test("ENV, ARG, WORKDIR, USER, SHELL, CMD, ENTRYPOINT, COPY --from", () => {
  const got = parseDockerfile([
    'ENV A=1 B="two words" C=x\\ y',
    "ENV LEGACY value with spaces",
    "ARG V=3",
    "WORKDIR /srv/app",
    "USER app:staff",
    'SHELL ["/bin/bash", "-c"]',
    "CMD python app.py",
    'ENTRYPOINT ["tini", "--"]',
    "COPY --from=python:3.13-slim /usr/lib/x /opt/",
  ]);
  assert.deepEqual(got[0], { op: "ENV", text: got[0]!.text, pairs: [["A", "1"], ["B", "two words"], ["C", "x y"]] });
  assert.deepEqual(got[1]!.op === "ENV" && got[1]!.pairs, [["LEGACY", "value with spaces"]]);
  assert.deepEqual(got[2], { op: "ARG", text: "ARG V=3", name: "V", value: "3" });
  assert.deepEqual(got[3], { op: "WORKDIR", text: "WORKDIR /srv/app", path: "/srv/app" });
  assert.deepEqual(got[4], { op: "USER", text: "USER app:staff", user: "app:staff" });
  assert.deepEqual(got[5]!.op === "SHELL" && got[5]!.argv, ["/bin/bash", "-c"]);
  assert.equal(got[6]!.op === "CMD" && got[6]!.shell, "python app.py");
  assert.deepEqual(got[7]!.op === "ENTRYPOINT" && got[7]!.exec, ["tini", "--"]);
  assert.deepEqual(got[8], { op: "COPY", text: got[8]!.text, from: "python:3.13-slim", sources: ["/usr/lib/x"], dest: "/opt/" });
});

test("unsupported instructions are refused with the instruction and the reason", () => {
  const cases: [string, RegExp][] = [
    ["ADD https://x/y.tgz /y", /ADD is not supported/],
    ["COPY . /app", /COPY without --from is not supported/],
    ["COPY --chown=1:1 --from=x /a /b", /COPY --chown is not supported/],
    ["FROM debian", /FROM is not supported/],
    ["HEALTHCHECK CMD true", /HEALTHCHECK is not supported/],
    ["RUN --network=none true", /RUN --network=none is not supported/],
    ['SHELL /bin/bash -c', /SHELL needs the JSON form/],
    ["USER a b", /expected USER/],
    ["ENV 1BAD=x", /not a valid variable name/],
    ['RUN ["a", 1]', /JSON array of strings/],
    ["BOGUS x", /unknown instruction BOGUS/],
    ["RUN", /RUN needs arguments/],
  ];
  for (const [text, reason] of cases) {
    assert.throws(
      () => parseDockerfile(["RUN true", text]),
      (e: unknown) => e instanceof InvalidArgumentError && e.message.includes(JSON.stringify(text)) && reason.test(e.message) && e.details?.instruction === text,
      text,
    );
  }
});

test("variable substitution", () => {
  const env = { A: "1", EMPTY: "" };
  assert.equal(substitute("$A-${A}-${B:-def}-${A:+alt}-${EMPTY:-e}-\\$A-$B", env), "1-1-def-alt-e-$A-");
});
